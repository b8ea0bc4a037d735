"""experiments/noise_sweep.py end to end on the synthetic shapes with tiny models and budgets:
training, checkpoint loading, batched sweeps, α rules, CSV and figures."""

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from lbinv.probe import ProbeResult
from tests.experiments.helpers import load_experiment

noise_sweep = load_experiment("noise_sweep", "noise_sweep", register=True)  # dataclasses look their module up there

TINY = ["--dataset", "shapes", "--sigmas", "0.2,0.1,0", "--alphas", "3", "--n-train", "2", "--n-val", "2",
        "--max-iter", "20"]
NUMBERS = ("sigma", "delta2", "delta2_bregman", "alpha", "psnr_decoded", "psnr_inverted", "ssim_inverted",
           "ssim_decoded", "iterations", "seconds")
FIGURES = ("noise_sweep_dense_images.png", "noise_sweep_dense_levels.png", "noise_sweep_conv_images.png",
           "noise_sweep_conv_levels.png", "noise_sweep_psnr.png")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Train both nets for 3 batches, sweep 3 levels × 3 α × 4 images with 20 iterations."""
    out = tmp_path_factory.mktemp("sweep")
    train = ["--epochs", "1", "--train-arg=--trainer.limit_train_batches=3",
             "--train-arg=--trainer.limit_val_batches=1",
             "--train-arg=--data.num_shapes=64"]
    noise_sweep.main([*TINY, *train, "--out", str(out)])
    with (out / "noise_sweep.csv").open() as f:
        return out, list(csv.DictReader(f))


def test_csv_has_the_columns_and_finite_values(run):
    out, rows = run
    assert set(rows[0]) >= {"model", "sigma", "delta2", "alpha", "psnr_decoded", "psnr_inverted", "alpha_rule",
                            "method", "ssim_inverted", "ssim_decoded", "seconds"}
    for row in rows:
        for key in NUMBERS:
            assert math.isfinite(float(row[key])), (key, row)
        assert float(row["alpha"]) in noise_sweep.log_grid(3)
    # 2 splits × 2 rules × 3 levels per method; dense: lifted, gradient; conv: + sequential
    combos = {(r["model"], r["method"]) for r in rows}
    assert combos == {("dense", "lifted"), ("dense", "gradient"), ("conv", "lifted"), ("conv", "sequential"),
                      ("conv", "gradient")}
    assert len(rows) == 5 * 2 * 2 * 3
    dense_lifted = [r for r in rows if (r["model"], r["method"]) == ("dense", "lifted")]
    assert all(r["note"] == noise_sweep.SEQUENTIAL_NOTE for r in dense_lifted)


def test_noise_grows_with_sigma_and_vanishes_at_zero(run):
    _, rows = run
    for model in ("dense", "conv"):
        mine = {float(r["sigma"]): float(r["delta2"]) for r in rows if r["model"] == model and r["split"] == "val"}
        assert mine[0.0] == 0.0 and 0 < mine[0.1] < mine[0.2]


def test_figures_are_written(run):
    out, _ = run
    for name in FIGURES:
        path = out / name
        assert path.is_file() and 1_000 < path.stat().st_size < 200_000, name


def test_checkpoints_are_loaded_instead_of_training(run, tmp_path):
    out, _ = run
    report = json.loads((out / "noise_sweep.json").read_text())
    ckpt = Path(report["models"]["dense"]["checkpoint"])
    assert ckpt.is_file() and report["models"]["dense"]["trained_here"]
    rows = noise_sweep.main([*TINY, "--models", "dense", "--methods", "lifted", "--ckpt-dense", str(ckpt),
                             "--out", str(tmp_path)])
    assert not (tmp_path / "train").exists()
    assert {r["model"] for r in rows} == {"dense"} and len(rows) == 2 * 2 * 3


def test_alpha_rules_pick_from_the_grid_per_level():
    """Oracle takes the best PSNR; discrepancy the largest α with residual ≤ δ (smallest if none)."""
    cfg = noise_sweep.SweepConfig(sigmas=(0.1, 0.0), alphas=(1e-3, 1e-2, 1e-1), n_train=1, n_val=1)
    psnr = torch.tensor([[[10.0, 12.0, 11.0]], [[15.0, 14.0, 13.0]]])  # (levels, n, G)
    residual = torch.tensor([[[0.1, 0.5, 2.0]], [[0.1, 0.2, 0.3]]])
    out = ProbeResult(psnr_inv=psnr, residual=residual, delta=torch.tensor([[1.0], [0.0]]),
                      x_inv=torch.rand(2, 1, 3, 1, 28, 28), iterations=torch.ones(2, 1, 3), converged=torch.ones(2, 1, 3),
                      solved=torch.ones(2, 1, 3), bregman_sym=torch.full((2, 1, 3), math.nan),
                      bregman_delta=torch.zeros(2, 1), seconds=torch.tensor([1.0]), x_dec=torch.rand(2, 1, 1, 28, 28))
    truth = torch.rand(1, 1, 28, 28)
    oracle = noise_sweep.summarize_split(out, truth, "oracle", cfg)
    discrepancy = noise_sweep.summarize_split(out, truth, "discrepancy", cfg)
    assert [lv["alpha"] for lv in oracle["levels"]] == [1e-2, 1e-3]
    assert [lv["alpha"] for lv in discrepancy["levels"]] == [1e-2, 1e-3]
    assert oracle["x_chosen"].shape == (2, 1, 1, 28, 28)
    assert torch.equal(oracle["x_chosen"][0, 0], out.x_inv[0, 0, 1])


def test_log_grid_spans_the_papers_range():
    grid = noise_sweep.log_grid(7)
    assert grid[0] == 1e-4 and grid[-1] == 1e-1 and len(grid) == 7 and list(grid) == sorted(grid)
