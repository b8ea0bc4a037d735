"""The four shapes of encoder docs/monitor.md shows under "Use it in your own Lightning project", as
real projects write them, each trained for one epoch with the callback and nothing changed in the
user's code: a custom module with a hand-written forward, a VAE's mean head through its encode
method, a residual encoder with max pooling, and networks under ``self.model``."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.lightning.helpers import (
    CODE,
    QUIET_LIGHTNING,
    SIZE,
    VAE,
    Decoder,
    Encoder,
    TrainSteps,
    batch_images,
    console,
    events,
    inversion_tags,
    make_callback,
    make_trainer,
    train_loader,
    val_loader,
    vae_loss,
)

pytestmark = QUIET_LIGHTNING


class ResidualEncoder(nn.Module):
    """A stem, max pooling, a residual block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.conv1, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * (SIZE // 2) ** 2, CODE)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.stem(x)), 2)
        h = F.relu(h + self.conv2(F.relu(self.conv1(h))))
        return self.fc(torch.flatten(h, 1))


class AE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder, self.decoder = Encoder(), Decoder()


class Project(TrainSteps, L.LightningModule):
    """A user's module: ``shape`` says how it holds its networks."""

    def __init__(self, shape: str) -> None:
        super().__init__()
        self.shape = shape
        if shape == "vae":
            self.model = VAE()
        elif shape == "self.model":
            self.model = AE()
        elif shape == "flat":  # Lightning's README LitAutoEncoder: Linear first, the step flattens the batch
            self.encoder = nn.Sequential(nn.Linear(SIZE * SIZE, 16), nn.ReLU(), nn.Linear(16, CODE))
            self.decoder = nn.Sequential(nn.Linear(CODE, 16), nn.ReLU(), nn.Linear(16, SIZE * SIZE))
        else:
            self.encoder = Encoder() if shape == "custom" else ResidualEncoder()
            self.decoder = Decoder()

    def _loss(self, batch):
        x = batch_images(batch)
        if self.shape == "vae":
            return vae_loss(self.model, x)
        if self.shape == "flat":
            x = x.view(x.size(0), -1)
        nets = self.model if self.shape == "self.model" else self
        return F.mse_loss(nets.decoder(nets.encoder(x)), x)


# the README's four lines, one per shape
SHAPES = {
    "custom": {"encoder": "encoder", "decoder": "decoder"},
    "vae": {"encoder": "model.encode", "encoder_output": 0, "decoder": "model.decode"},
    "residual": {"encoder": "encoder", "decoder": "decoder"},
    "self.model": {"encoder": "model.encoder", "decoder": "model.decoder"},
    "flat": {"encoder": "encoder", "decoder": "decoder"},  # flattened for the encoder, said once
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_each_shape_trains_an_epoch_with_the_callback(tmp_path, caplog, shape):
    cb = make_callback(log_images=False, input_shape=(1, SIZE, SIZE), **SHAPES[shape])
    make_trainer(tmp_path, [cb]).fit(Project(shape), train_loader(), val_loader())
    flattened = "InversionCallback: the encoder 'encoder' starts with Linear(in_features=64, out_features=16, bias=True) "
    assert (flattened + "and the validation inputs are (1, 8, 8): they are flattened for it" in console(caplog)) == (shape == "flat")
    acc = events(tmp_path)
    for tag in inversion_tags():
        assert [e.step for e in acc.Scalars(tag)] == [0], tag
    # B_Ψ(y, a_L(x)) of the clean code: 0 only if the lifted network reproduces the encoder's code on the probe
    assert acc.Scalars("inversion/delta2_bregman/sigma_0")[0].value < 1e-8
