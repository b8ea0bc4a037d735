"""1. Lightning's README LitAutoEncoder."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn


# Source: Lightning-AI/pytorch-lightning, README.md ("Step 1: Define a LightningModule"; read at
# 7f0c3436) and docs/source-pytorch/starter/introduction.rst ("Lightning in 15 minutes").
# Deviations:
# - hidden width 64 (the brief's and introduction.rst's `nn.Linear(28 * 28, 64), nn.ReLU(),
#   nn.Linear(64, 3)`); the README at HEAD writes 128. `hidden=128` gives the README's network.
# - validation_step added (the example has none): the training loss, logged as "val_loss".
# Kept: the encoder takes flattened images (the step does `x.view(x.size(0), -1)`), so the
# validation batches (B, 1, 28, 28) are not what the encoder takes.


class LitAutoEncoder(L.LightningModule):
    def __init__(self, hidden: int = 64):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, 3))
        self.decoder = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 28 * 28))

    def forward(self, x):
        # in lightning, forward defines the prediction/inference actions
        embedding = self.encoder(x)
        return embedding

    def training_step(self, batch, batch_idx):
        # training_step defines the train loop. It is independent of forward
        x, _ = batch
        x = x.view(x.size(0), -1)
        z = self.encoder(x)
        x_hat = self.decoder(z)
        loss = F.mse_loss(x_hat, x)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):  # added: the same loss on validation batches
        x, _ = batch
        x = x.view(x.size(0), -1)
        z = self.encoder(x)
        x_hat = self.decoder(z)
        loss = F.mse_loss(x_hat, x)
        self.log("val_loss", loss)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
        return optimizer
