"""The convergence-rate experiment (experiments/convergence_rate.py) scaled down: a 16×16 disc seen
through 64 ReLU measurements, 8 noise levels in one batched call."""

import csv
import json

import pytest

from tests.experiments.helpers import load_experiment

# its dataclass looks itself up in sys.modules
convergence_rate = load_experiment("convergence_rate", "convergence_rate", register=True)

SMALL = dict(size=16, measurements=64, levels=8, noise_min=1e-3, noise_max=1e-1, max_iter=1500, construct_iter=1500)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("convergence_rate")
    args = ["--out", str(out), "--figure", str(out / "figures" / "rate.png")]
    for key, value in SMALL.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    results = convergence_rate.main(args)
    return out, results


def test_writes_csv_json_and_figure(small_run):
    out, results = small_run
    with (out / "convergence_rate.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == convergence_rate.COLUMNS
    data = json.loads((out / "convergence_rate.json").read_text())
    assert set(data) == {"config", "rows", "slopes", "cases", "timing"}
    cases = {r["case"] for r in data["rows"]}
    assert cases == {"source", "source-plain", "disc"}
    assert len(rows) == len(data["rows"]) == 3 * SMALL["levels"]
    assert data["timing"]["circle"]["batch"] == 3 * SMALL["levels"]  # all cases × levels in one call
    assert set(data["slopes"]["circle/source"]) >= {"dsym_vs_delta", "error_vs_delta", "bregman_data_vs_delta", "levels_fitted"}
    assert data["cases"]["circle/source"]["example1_violations"] == 0
    assert (out / "convergence_rate.png").stat().st_size > 1000
    assert (out / "figures" / "rate.png").read_bytes() == (out / "convergence_rate.png").read_bytes()


def test_alpha_is_c_times_delta_over_two_decades(small_run):
    _, results = small_run
    rows = [r for r in results["rows"] if r["case"] == "source"]
    deltas = [r["delta"] for r in rows]
    assert max(deltas) / min(deltas) > 50
    for r in rows:
        assert r["alpha"] == pytest.approx(convergence_rate.DEFAULT_C * r["delta"])


def test_symmetric_bregman_nonnegative_and_shrinking_under_the_source_condition(small_run):
    _, results = small_run
    for r in results["rows"]:
        assert r["dsym"] >= -r["dsym_tolerance"] - 1e-12, r
    rows = sorted((r for r in results["rows"] if r["case"] == "source"), key=lambda r: r["delta"])
    resolved = [r for r in rows if r["resolved"]]
    assert len(resolved) >= 4
    assert resolved[0]["dsym"] < 0.2 * resolved[-1]["dsym"]
    assert rows[0]["error"] < rows[-1]["error"]
    assert results["slopes"]["circle/source"]["dsym_vs_delta"] > 0.5
    # the identity behind Theorem 2 holds at the computed solutions
    assert max(r["identity_residual"] for r in rows) < 1e-8


def test_fit_slope():
    assert convergence_rate.fit_slope([1, 10, 100], [2, 20, 200]) == pytest.approx(1.0)
    assert convergence_rate.fit_slope([1, 10, 100], [5, 0.5, 0.05]) == pytest.approx(-1.0)
    assert convergence_rate.fit_slope([1], [1]) is None


def test_mnist_encoder_path():
    """The dense MNIST encoder (trained for a few steps here) goes through the same code path."""
    torch = pytest.importorskip("torch")
    results = convergence_rate.run_convergence(
        **{**SMALL, "levels": 3, "max_iter": 50, "construct_iter": 50}, rounds=1, mnist=True, mnist_train_steps=3, mnist_max_iter=200
    )
    mnist = [r for r in results["rows"] if r["network"] == "mnist"]
    assert {r["case"] for r in mnist} <= {"source", "source-plain", "digit"} and len(mnist) == 6
    assert results["timing"]["mnist"]["batch"] == 6
    assert all(torch.isfinite(torch.tensor(r["dsym"])) for r in mnist)
