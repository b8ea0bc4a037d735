"""Helpers the Lightning tests share: a tiny foreign LightningModule and its 8×8 images, data
loaders, an InversionCallback and a Trainer sized for the tests, and readers of the TensorBoard
event files. The DDP test's subprocess imports this module too (as ``tests.lightning.helpers``)."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lbinv.lightning.callback import InversionCallback
from tests.helpers import generator

#: the warnings Lightning gives for the tests' tiny runs on the CPU
QUIET_LIGHTNING = [
    pytest.mark.filterwarnings("ignore:.*does not have many workers.*"),
    pytest.mark.filterwarnings("ignore:.*number of training batches.*"),
    pytest.mark.filterwarnings("ignore:.*GPU available but not used.*"),
]

SIZE = 8
LEVELS = (0.0, 0.1)


# ---------------------------------------------------------------------- a foreign module
def images(n: int, seed: int) -> torch.Tensor:
    """Piecewise-constant 8×8 images in [0, 1]: a bright rectangle on a dim background."""
    g = generator(seed)
    x = torch.full((n, 1, SIZE, SIZE), 0.1)
    for i in range(n):
        r0, c0 = torch.randint(0, SIZE // 2, (2,), generator=g).tolist()
        h, w = torch.randint(2, SIZE // 2 + 1, (2,), generator=g).tolist()
        x[i, 0, r0 : r0 + h, c0 : c0 + w] = 0.6 + 0.4 * torch.rand((), generator=g)
    return x


class PlainImages(Dataset):
    """A dataset whose items are bare tensors (batches are tensors, not tuples)."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


class Foreign(L.LightningModule):
    """Not an lbinv model: its own names, LeakyReLU, pooling (AvgPool2d unless given) and BatchNorm in the encoder."""

    def __init__(self, pool: nn.Module | None = None) -> None:
        super().__init__()
        pool = nn.AvgPool2d(2) if pool is None else pool
        self.enc = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.LeakyReLU(0.1),
            pool,
            nn.Flatten(),
            nn.Linear(4 * (SIZE // 2) ** 2, 12),
            nn.ReLU(),
        )
        self.dec = nn.Sequential(nn.Linear(12, SIZE * SIZE), nn.Sigmoid(), nn.Unflatten(1, (1, SIZE, SIZE)))
        self.trained_steps = 0

    @staticmethod
    def _x(batch):
        return batch[0] if isinstance(batch, (tuple, list)) else batch

    def training_step(self, batch, batch_idx):
        self.trained_steps += 1
        x = self._x(batch)
        return F.mse_loss(self.dec(self.enc(x)), x)

    def validation_step(self, batch, batch_idx):
        x = self._x(batch)
        self.log("val_loss", F.mse_loss(self.dec(self.enc(x)), x))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


TRAIN_X = images(32, seed=1)
VAL_X = images(24, seed=2)


def train_loader() -> DataLoader:
    return DataLoader(TensorDataset(TRAIN_X, torch.zeros(len(TRAIN_X))), batch_size=8)


def val_loader(x: torch.Tensor = VAL_X, batch_size: int = 4, tuples: bool = False) -> DataLoader:
    data = TensorDataset(x, torch.zeros(len(x))) if tuples else PlainImages(x)
    return DataLoader(data, batch_size=batch_size)


def make_callback(**kwargs) -> InversionCallback:
    options = dict(
        noise_levels=LEVELS,
        alpha=1e-2,
        num_samples=4,
        max_iter=30,
        encoder="enc",
        decoder="dec",
        solver_options={"bounds": (0.0, 1.0), "check_every": 10},
        # the settings of the tests written before these were the defaults (the new defaults: test_monitor.py)
        data_range=(0.0, 1.0),
        time_share=None,
        warm_start=False,
        start="zeros",
        final_seconds=0,
    )
    options.update(kwargs)
    return InversionCallback(**options)


def make_trainer(tmp_path: Path, callbacks: list, max_epochs: int = 1, logger="tb", **kwargs) -> L.Trainer:
    if logger == "tb":
        logger = TensorBoardLogger(str(tmp_path), name="tb", version=0)
    options = dict(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        limit_train_batches=2,
        limit_val_batches=2,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
        default_root_dir=str(tmp_path),
    )
    options.update(kwargs)
    return L.Trainer(**options)


def events(tmp_path: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def csv_rows(tmp_path: Path) -> list[tuple[int, dict[str, float]]]:
    """The rows of a ``CSVLogger(str(tmp_path))``'s metrics file: (step, the values the row holds)."""
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", newline="") as f:
        return [(int(row["step"]), {k: float(v) for k, v in row.items() if v and k != "step"}) for row in csv.DictReader(f)]


def console(caplog: pytest.LogCaptureFixture) -> str:
    """The callback's console lines so far (the records of its logger), one a line."""
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "lbinv.lightning.callback")


def inversion_tags(decoder: bool = True) -> list[str]:
    names = ["psnr_inverted", "delta2", "delta2_bregman", "alpha", "iterations", "converged_fraction"] + (["psnr_decoded"] if decoder else [])
    return [f"inversion/{name}/sigma_{s:g}" for s in LEVELS for name in names] + ["inversion/seconds"]


def scalar_steps(acc: EventAccumulator, tag: str) -> list[int]:
    return [e.step for e in acc.Scalars(tag)]


class OneLayer(Foreign):
    """A dense one-layer encoder Flatten → Linear(64, 12) → ReLU, like the paper's dense autoencoder."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 12), nn.ReLU())


# ---------------------------------------------------------------------- users' own networks
CODE = 12


def batch_images(batch):
    """The images of a batch that is a tensor or an (x, y, …) tuple."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class TrainSteps:
    """A user's training loop, for LightningModules of either namespace that define ``_loss(batch)``."""

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class Encoder(nn.Module):
    """A hand-written forward: F.relu, x.view(x.size(0), -1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.fc = nn.Linear(4 * (SIZE // 2) ** 2, CODE)

    def forward(self, x):
        h = F.relu(self.conv(x))
        return F.relu(self.fc(h.view(h.size(0), -1)))


class Decoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(CODE, SIZE * SIZE)

    def forward(self, z):
        return torch.sigmoid(self.fc(z)).view(-1, 1, SIZE, SIZE)


class VAE(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = Encoder()
        self.fc_mu, self.fc_var = nn.Linear(CODE, CODE), nn.Linear(CODE, CODE)
        self.decoder = Decoder()

    def encode(self, x):
        h = self.body(x)
        return [self.fc_mu(h), self.fc_var(h)]

    def decode(self, z):
        return self.decoder(z)


def vae_loss(vae: VAE, x: torch.Tensor) -> torch.Tensor:
    """Reconstruction from a sampled code plus a small KL term, as VAE projects train."""
    mu, logvar = vae.encode(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    return F.mse_loss(vae.decode(z), x) - 1e-3 * torch.mean(1 + logvar - mu**2 - logvar.exp())
