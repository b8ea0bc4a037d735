"""Fault injection in lbinv.lightning.callback (issue 9), with a tiny foreign LightningModule.

- A solver that raises, or returns NaN/inf, inside InversionCallback: the training goes on, an
  InversionWarning says what happened, and the next epoch inverts again and is logged.
- A run killed mid-epoch (Ctrl+C, or an exception from a callback) after a checkpoint was saved:
  resuming from that checkpoint keeps the probe and logs the same tags, at the same epochs and
  with the same values, as a run that was never interrupted.

The solver is replaced through ``lbinv.lightning.callback.callback.invert`` (the name the callback calls).
"""

from __future__ import annotations

import signal
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lbinv.lightning.callback.inverter as inverter_module
from lbinv.lightning.callback import InversionCallback, InversionWarning
from tests.lightning.helpers import QUIET_LIGHTNING, SIZE, images

pytestmark = [
    *QUIET_LIGHTNING,
    pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec.*"),
    pytest.mark.filterwarnings("ignore:Checkpoint directory .* exists and is not empty"),
]

LEVELS = (0.0, 0.2)
PSNR = "inversion/psnr_inverted/sigma_0.2"


class Tiny(L.LightningModule):
    """Not an lbinv model: a 2-layer conv/dense encoder under its own attribute names."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(2 * SIZE * SIZE, 6), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(6, SIZE * SIZE), nn.Sigmoid(), nn.Unflatten(1, (1, SIZE, SIZE)))
        self.steps = 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        (x,) = batch
        return F.mse_loss(self.head(self.features(x)), x)

    def validation_step(self, batch, batch_idx):
        (x,) = batch
        self.log("val_loss", F.mse_loss(self.head(self.features(x)), x))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loader(x: torch.Tensor) -> DataLoader:
    return DataLoader(TensorDataset(x), batch_size=4)


TRAIN, VAL = images(16, seed=1), images(8, seed=2)


def callback() -> InversionCallback:
    return InversionCallback(
        noise_levels=LEVELS, alpha=1e-2, num_samples=3, max_iter=20, encoder="features", decoder="head",
        solver_options={"bounds": (0.0, 1.0), "check_every": 5}, log_images=False,
        time_share=None, final_seconds=0,  # the same numbers on every run: no wall-clock budget
    )


def trainer(root: Path, callbacks: list, epochs: int, **kwargs) -> L.Trainer:
    return L.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, logger=TensorBoardLogger(str(root), name="tb", version=0),
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False, limit_train_batches=3,
        limit_val_batches=2, num_sanity_val_steps=0, log_every_n_steps=1, default_root_dir=str(root), **kwargs,
    )


def scalars(root: Path) -> dict[str, dict[int, float]]:
    """Every ``inversion/*`` scalar of the run directory (all its event files): tag -> {epoch: value}."""
    acc = EventAccumulator(str(root / "tb" / "version_0"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"] if tag.startswith("inversion/")}


# ------------------------------------------------------------------------ a failing solver
def failing_once(kind: str):
    """An ``invert`` that fails in the way ``kind`` says at its first call only, then solves."""
    real = inverter_module.invert
    calls = []

    def invert(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            return real(*args, **kwargs)
        if kind == "raise":
            raise RuntimeError("solver exploded")
        if kind == "out-of-memory":
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        result = real(*args, **kwargs)
        if kind == "nan":
            result.x = torch.full_like(result.x, float("nan"))
        elif kind == "inf":
            result.x = result.x.clone()
            result.x[::2] = float("inf")
        elif kind == "wrong-shape":
            result.x = result.x[:1]
        return result

    return invert, calls


@pytest.mark.parametrize(
    "kind, match",
    [
        ("raise", "failed at epoch 0.*RuntimeError: solver exploded.*training continues"),
        ("out-of-memory", "failed at epoch 0.*OutOfMemoryError"),
        ("nan", "non-finite values at epoch 0"),
        ("inf", "non-finite values at epoch 0"),
        ("wrong-shape", "failed at epoch 0"),
    ],
)
def test_a_failing_solver_leaves_training_alive_and_the_next_epoch_is_logged(tmp_path, monkeypatch, kind, match):
    fake, calls = failing_once(kind)
    monkeypatch.setattr(inverter_module, "invert", fake)
    model = Tiny()
    with pytest.warns(InversionWarning, match=match):
        trainer(tmp_path, [callback()], epochs=2).fit(model, loader(TRAIN), loader(VAL))
    assert model.steps == 6 and len(calls) == 2  # both epochs trained, and inverted again at epoch 1
    logged = scalars(tmp_path)
    # nothing usable at epoch 0 (for "inf", the finite half is), retried and logged at epoch 1
    assert set(logged[PSNR]) == ({0, 1} if kind == "inf" else {1}), logged.get(PSNR)
    assert all(v == v and abs(v) != float("inf") for v in logged[PSNR].values())  # no NaN/inf written
    if kind in ("nan", "inf"):  # what did not depend on the solver was still logged at epoch 0
        assert set(logged["inversion/delta2/sigma_0.2"]) == {0, 1}


# ------------------------------------------------------------------------ killed and resumed
class Kill(Callback):
    """Stops the run at a training batch of a later epoch, the way ``how`` says."""

    def __init__(self, epoch: int, batch: int, how: str) -> None:
        self.epoch, self.batch, self.how = epoch, batch, how

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise KeyboardInterrupt if self.how == "ctrl-c" else RuntimeError("node lost")


@pytest.fixture
def restore_sigint():
    """Lightning ignores SIGINT after a KeyboardInterrupt; give pytest its handler back."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


@pytest.mark.parametrize("how", ["ctrl-c", "exception"])
def test_a_run_killed_mid_epoch_resumes_with_the_same_probe_and_tags(tmp_path, how, restore_sigint):
    epochs = 3
    # the run that is never interrupted
    reference_cb = callback()
    trainer(tmp_path / "reference", [reference_cb], epochs).fit(Tiny(), loader(TRAIN), loader(VAL))
    expected = scalars(tmp_path / "reference")

    # killed at the second training batch of epoch 1, after the checkpoint of epoch 0
    root, ckpt = tmp_path / "killed", tmp_path / "killed" / "ckpt"
    first = callback()
    run = trainer(root, [first, ModelCheckpoint(dirpath=str(ckpt), save_last=True), Kill(1, 1, how)], epochs)
    with pytest.raises(SystemExit if how == "ctrl-c" else RuntimeError):
        run.fit(Tiny(), loader(TRAIN), loader(VAL))
    assert run.interrupted and (ckpt / "last.ckpt").exists()
    assert set(scalars(root)[PSNR]) == {0}

    # resumed: another validation set, so the probe can only come from the checkpoint
    second = callback()
    resumed = trainer(root, [second, ModelCheckpoint(dirpath=str(ckpt), save_last=True)], epochs)
    resumed.fit(Tiny(), loader(TRAIN), loader(images(8, seed=99)), ckpt_path=str(ckpt / "last.ckpt"), weights_only=True)
    assert resumed.current_epoch == epochs
    torch.testing.assert_close(second.probe, reference_cb.probe)
    torch.testing.assert_close(second.probe, VAL[:3])

    got = scalars(root)
    assert set(got) == set(expected)  # the same tags
    for tag, values in expected.items():
        assert set(got[tag]) == set(values) == set(range(epochs)), tag  # each epoch logged once
        if tag != "inversion/seconds":  # same weights, same probe, same noise: same numbers
            for step, value in values.items():
                assert got[tag][step] == pytest.approx(value, rel=1e-5, abs=1e-6), (tag, step)
