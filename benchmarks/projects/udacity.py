"""5. A Conv–ReLU–MaxPool autoencoder (Udacity's deep-learning course)."""

from __future__ import annotations

from typing import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn


# Source: udacity/deep-learning-v2-pytorch,
# autoencoder/convolutional-autoencoder/Convolutional_Autoencoder_Solution.ipynb (read at
# 51cc7b89): `ConvAutoencoder` (conv1 = Conv2d(1, 16, 3, padding=1), conv2 = Conv2d(16, 4, 3,
# padding=1), one `pool = MaxPool2d(2, 2)` used twice, t_conv1 = ConvTranspose2d(4, 16, 2,
# stride=2), t_conv2 = ConvTranspose2d(16, 1, 2, stride=2), F.relu / F.sigmoid in forward),
# MNIST with `transforms.ToTensor()` (28×28 in [0, 1]), `nn.MSELoss()`, Adam lr=0.001. The most
# forked public PyTorch course's conv autoencoder (55 forks in the code index); the Lightning
# projects found with Conv–ReLU–MaxPool encoders were one-off repositories.
# Deviations:
# - the notebook trains with a plain PyTorch loop; here a LightningModule `ConvAutoencoderModule`
#   holds `self.model = ConvAutoencoder()` (the nn.Module verbatim) and runs the notebook's loss in
#   training_step/validation_step with the notebook's optimizer.
# - F.sigmoid written torch.sigmoid (F.sigmoid is deprecated; same function).
# The model has no encoder attribute (encode and decode are one forward), so a user hands the
# callback the two halves built from its layers (`udacity_encoder`, `udacity_decoder` below).


class ConvAutoencoder(nn.Module):
    def __init__(self):
        super(ConvAutoencoder, self).__init__()
        ## encoder layers ##
        # conv layer (depth from 1 --> 16), 3x3 kernels
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        # conv layer (depth from 16 --> 4), 3x3 kernels
        self.conv2 = nn.Conv2d(16, 4, 3, padding=1)
        # pooling layer to reduce x-y dims by two; kernel and stride of 2
        self.pool = nn.MaxPool2d(2, 2)

        ## decoder layers ##
        ## a kernel of 2 and a stride of 2 will increase the spatial dims by 2
        self.t_conv1 = nn.ConvTranspose2d(4, 16, 2, stride=2)
        self.t_conv2 = nn.ConvTranspose2d(16, 1, 2, stride=2)


    def forward(self, x):
        ## encode ##
        # add hidden layers with relu activation function
        # and maxpooling after
        x = F.relu(self.conv1(x))
        x = self.pool(x)
        # add second hidden layer
        x = F.relu(self.conv2(x))
        x = self.pool(x)  # compressed representation

        ## decode ##
        # add transpose conv layers, with relu activation function
        x = F.relu(self.t_conv1(x))
        # output layer (with sigmoid for scaling from 0 to 1)
        x = torch.sigmoid(self.t_conv2(x))

        return x


class ConvAutoencoderModule(L.LightningModule):
    """The Udacity ConvAutoencoder trained by Lightning with the notebook's loss and optimizer."""

    def __init__(self) -> None:
        super().__init__()
        self.model = ConvAutoencoder()
        self.criterion = nn.MSELoss()

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        images, _ = batch
        outputs = self.model(images)
        loss = self.criterion(outputs, images)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        images, _ = batch
        loss = self.criterion(self.model(images), images)
        self.log("val_loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=0.001)


def udacity_encoder(pl_module: ConvAutoencoderModule) -> nn.Module:
    """The encode half of ConvAutoencoder.forward, from its layers: relu(conv1) → pool → relu(conv2) → pool."""
    m = pl_module.model
    return nn.Sequential(m.conv1, nn.ReLU(), m.pool, m.conv2, nn.ReLU(), m.pool)


def udacity_decoder(pl_module: ConvAutoencoderModule) -> Callable[[Tensor], Tensor]:
    """The decode half of ConvAutoencoder.forward: sigmoid(t_conv2(relu(t_conv1(z))))."""
    m = pl_module.model
    return lambda z: torch.sigmoid(m.t_conv2(F.relu(m.t_conv1(z))))
