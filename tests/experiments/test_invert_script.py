"""experiments/invert.py: every sample written exactly once (also by 2 DDP processes), atomic result
files, resuming an interrupted run without redoing or losing batches, refusing mixed settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from lbinv.checkpoints import load_checkpoint
from lbinv.lightning.data import MNISTDataModule
from lbinv.lightning.models import AutoencoderModule
from tests.experiments.helpers import EXPERIMENTS, load_experiment
from tests.helpers import REPO

SCRIPT = EXPERIMENTS / "invert.py"
# small and fast: 2 noise levels x 1 alpha, 10 sweeps, CPU
FAST = ["--noise-levels", "0", "0.1", "--alpha", "1e-2", "--max-iter", "10", "--trainer.accelerator", "cpu",
        "--trainer.enable_progress_bar", "false"]


invert_script = load_experiment("invert", "invert_script")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A conv-autoencoder checkpoint after one SGD step on the synthetic shapes (with datamodule hparams)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "conv.ckpt"
    module = AutoencoderModule(net="conv", lr=0.05)
    data = MNISTDataModule(dataset="shapes", num_shapes=100, batch_size=16)
    trainer = Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(path)
    return path


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob("part-*.pt"))


def _indices(out: Path) -> list[int]:
    return sorted(i for path in _parts(out) for i in load_checkpoint(path)["index"].tolist())


class FailAfter(Callback):
    """Raises after ``k`` predicted (and written) batches: a killed run."""

    def __init__(self, k: int) -> None:
        self.k, self.seen = k, 0

    def on_predict_batch_end(self, *args, **kwargs) -> None:
        self.seen += 1
        if self.seen >= self.k:
            raise RuntimeError("interrupted")


def test_interrupted_run_resumes_without_redoing_or_losing_batches(ckpt, tmp_path):
    out = tmp_path / "run"
    args = ["--ckpt", str(ckpt), "--out", str(out), "--limit", "10", "--batch-size", "3", *FAST]
    with pytest.raises(RuntimeError, match="interrupted"):
        invert_script.main(args, callbacks=[FailAfter(2)])
    first = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in _parts(out)}
    assert len(first) == 2 and _indices(out) == list(range(6))
    assert not list(out.glob(".*.tmp"))  # no half-written file left behind

    # resume with another batch size: only the 4 remaining samples are solved
    summary = invert_script.main(["--ckpt", str(ckpt), "--out", str(out), "--limit", "10", "--batch-size", "4", *FAST])
    assert summary["skipped"] == 6 and summary["remaining"] == 4 and summary["written"] == 1
    assert _indices(out) == list(range(10))  # every sample exactly once
    for name, (mtime, content) in first.items():  # the finished batches were not redone
        assert (out / name).stat().st_mtime_ns == mtime and (out / name).read_bytes() == content

    # a third run has nothing left to do
    assert invert_script.main(args)["written"] == 0

    # results do not depend on the batching: one uninterrupted run with batches of 5 agrees
    ref = tmp_path / "ref"
    invert_script.main(["--ckpt", str(ckpt), "--out", str(ref), "--limit", "10", "--batch-size", "5", *FAST])

    def by_index(d: Path) -> dict[int, torch.Tensor]:
        got = {}
        for path in _parts(d):
            part = load_checkpoint(path)
            got.update(zip(part["index"].tolist(), part["x_inv"]))
        return got

    resumed, reference = by_index(out), by_index(ref)
    for i in range(10):
        torch.testing.assert_close(resumed[i], reference[i], rtol=1e-4, atol=1e-5)


def test_result_files_hold_what_the_docstring_says(ckpt, tmp_path):
    out = tmp_path / "run"
    invert_script.main(["--ckpt", str(ckpt), "--out", str(out), "--limit", "2", "--batch-size", "2",
                        "--noise-levels", "0", "0.1", "0.2", "--alpha", "1e-2", "3e-2", "--max-iter", "10",
                        "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false"])
    (path,) = _parts(out)
    assert path.name == "part-0000000-r0-b0.pt"
    part = load_checkpoint(path)
    assert part["x_inv"].shape == (2, 3, 2, 1, 28, 28)
    for key in ("iterations", "converged", "objective", "psnr_inverted"):
        assert part[key].shape == (2, 3, 2), key
    assert part["delta"].shape == part["psnr_decoded"].shape == (2, 3)
    assert torch.all(part["delta"][:, 0] == 0) and torch.all(part["delta"][:, 1:] > 0)
    assert (part["iterations"] == 10).all()
    assert part["x_inv"].min() >= 0 and part["x_inv"].max() <= 1  # --bounds 0 1 by default


def test_rerun_with_other_settings_is_refused(ckpt, tmp_path):
    out = tmp_path / "run"
    invert_script.main(["--ckpt", str(ckpt), "--out", str(out), "--limit", "2", "--batch-size", "2", *FAST])
    with pytest.raises(SystemExit, match="other settings"):
        invert_script.main(["--ckpt", str(ckpt), "--out", str(out), "--limit", "2", "--batch-size", "2",
                            *FAST[:4], "3e-2", *FAST[5:]])


def test_trainer_arguments_pass_through_and_are_checked():
    args, trainer = invert_script.parse(["--ckpt", "c", "--out", "o", "--trainer.devices", "2",
                                         "--trainer.strategy=ddp", "--trainer.num_nodes", "1"])
    assert trainer == {"devices": 2, "strategy": "ddp", "num_nodes": 1}
    with pytest.raises(SystemExit):
        invert_script.parse(["--ckpt", "c", "--out", "o", "--bogus", "1"])


def test_two_ddp_processes_write_every_sample_exactly_once(ckpt, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, str(SCRIPT), "--ckpt", str(ckpt), "--out", str(out), "--limit", "9", "--batch-size", "2",
           *FAST, "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=420, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _indices(out) == list(range(9))  # every sample once: no repeats from sampler padding
    ranks = {int(invert_script.PART.match(p.name).group(2)) for p in _parts(out)}
    assert ranks == {0, 1}
