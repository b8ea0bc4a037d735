"""The circle experiment (experiments/circle.py) scaled down: TV beats Landweber, Morozov holds."""

import pytest

from tests.experiments.helpers import load_experiment

circle = load_experiment("circle", "circle")


@pytest.fixture(scope="module")
def small_circle():
    return circle.run_circle(size=24, measurements=160, max_iter=3000, compare_steps=False)


def test_tv_beats_landweber_on_a_small_circle(small_circle):
    table, _ = small_circle
    assert table["tv"]["rel_error"] < 0.5 * table["landweber"]["rel_error"]
    assert table["tv"]["psnr"] > table["landweber"]["psnr"]


def test_landweber_stops_by_the_discrepancy_principle(small_circle):
    table, _ = small_circle
    lw = table["landweber"]
    assert lw["converged"] and lw["iterations"] >= 1
    assert lw["residual"] <= table["delta"]


def test_disc_matches_the_papers_description():
    disc = circle.make_disc(64)
    assert disc.sum().item() == 788
    assert disc.flatten().norm().item() == pytest.approx(28.07, abs=0.01)
