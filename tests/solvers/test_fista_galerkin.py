"""The Galerkin corrections of the certified gap of one-layer FISTA with a box (lbinv.solvers.fista,
"Stopping test"; :meth:`BoxCertificate.galerkin_round` in lbinv.solvers.box_certificate).

The certified gap must never claim less than the true gap ``F(x) − F*`` (``F*`` from Clarabel through
CVXPY, an independent solver): checked at every iteration, with the refined duals tried at every check,
for ReLU and sigmoid (whose ``dom Ψ`` is ``[0, 1]``, so ``y + w`` is bounded on both sides), with the
box binding (Clarabel's solution at a bound) and not. And with a box that does not bind, the boxed
solve stops within 1.35× the iterations of the unboxed one on a 32×32 disc (measured 380 against 290;
without the corrections 410)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import lbinv.solvers.box_certificate as box_certificate
import lbinv.solvers.fista as fista_module
from lbinv import invert
from tests.solvers.test_fista_certificate import certified_and_true_gaps, clarabel_solution, disc_problem

pytestmark = pytest.mark.usefixtures("float64_default")  # double-precision references

#: Clarabel's own accuracy (tolerances 1e−9), relative to the optimum.
REFERENCE_SLACK = 1e-8
H = W = 6


def instance(activation: str, seed: int = 0, m: int = 24):
    """``Linear(36, m)`` + ReLU or sigmoid on a 6×6 square image, noisy data inside ``dom Ψ``."""
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(H * W, m)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(m, H * W, generator=g) / H)
        layer.bias.copy_(0.1 * torch.randn(m, generator=g))
    module = nn.Sequential(layer, nn.ReLU() if activation == "relu" else nn.Sigmoid())
    x_true = torch.zeros(1, 1, H, W)
    x_true[..., 1:4, 2:5] = 1.0
    with torch.no_grad():
        y = module(x_true.flatten(1)) + 0.05 * torch.randn(1, m, generator=g)
    y = y.clamp_min(0.0) if activation == "relu" else y.clamp(0.02, 0.98)
    return module, layer, y


CASES = {
    # (activation, bounds, whether Clarabel's solution touches a bound)
    "relu-binding": ("relu", (0.0, 0.3), True),
    "relu-free": ("relu", (-2.0, 3.0), False),
    "sigmoid-binding": ("sigmoid", (0.0, 0.4), True),
    "sigmoid-free": ("sigmoid", (-3.0, 4.0), False),
}


def gaps_along_a_solve(case, rounds, monkeypatch, iterations=200):
    """Per iteration (each a check, the refined duals tried at each): the solver's certified gap and
    the true gap of its iterate, for two samples with their own α."""
    activation, bounds, binds = CASES[case]
    module, layer, y = instance(activation)
    ys = torch.cat([y, (0.8 * y) if activation == "relu" else y.flip(1)])
    alphas = torch.tensor([0.05, 0.02])
    W_, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    for i in range(2):
        _, x_star = clarabel_solution(W_, b, ys[i].numpy(), alphas[i].item(), H, W, bounds, activation, accuracy=1e-9)
        at_bound = (x_star <= bounds[0] + 1e-6) | (x_star >= bounds[1] - 1e-6)
        assert at_bound.any() == binds, (case, x_star.min(), x_star.max())
    monkeypatch.setattr(fista_module, "REFINE_FACTOR", math.inf)
    monkeypatch.setattr(box_certificate, "GALERKIN_ROUNDS", rounds)
    return certified_and_true_gaps(module, layer, ys, alphas, bounds, activation, True, (H, W), iterations, accuracy=1e-9)


@pytest.mark.parametrize("case", list(CASES))
def test_the_certified_gap_bounds_the_true_gap(case, monkeypatch):
    """With the Galerkin corrections (3 rounds) and without (0): the same iterates, both gaps at or
    above ``F(x) − F*`` at every iteration, the corrected one never larger."""
    corrected, true, optimum = gaps_along_a_solve(case, 3, monkeypatch)
    plain, true_plain, _ = gaps_along_a_solve(case, 0, monkeypatch)
    np.testing.assert_array_equal(true, true_plain)  # the refinement does not steer the solver
    slack = REFERENCE_SLACK * optimum
    assert (true >= -slack).all(), "Clarabel's optimum should be a lower bound"
    assert np.isfinite(corrected[-1]).all()
    assert (corrected >= true - slack).all(), (corrected - true).min()
    assert (corrected <= plain).all()


def test_a_box_that_does_not_bind_costs_few_iterations(monkeypatch):
    """tol = 1e−6 on a 32×32 disc through ``Linear(1024, 128)`` + ReLU: the certified stop with bounds
    (0, 1), which do not bind, within 1.35× the iterations of the estimated stop without bounds
    (measured 380 and 290), and fewer than without the Galerkin corrections (410)."""
    module, y, shape = disc_problem(32, 128)
    opts = {"alpha": 1.5e-2, "input_shape": shape, "max_iter": 5000, "tol": 1e-6}
    free = invert(module, y, **opts)
    boxed = invert(module, y, bounds=(0.0, 1.0), **opts)
    monkeypatch.setattr(box_certificate, "GALERKIN_ROUNDS", 0)
    before = invert(module, y, bounds=(0.0, 1.0), **opts)
    assert bool(free.converged.all()) and bool(boxed.converged.all())
    assert free.x.min().item() > 0.01 and free.x.max().item() < 0.99, "the box should not bind"
    assert boxed.iterations.item() <= 1.35 * free.iterations.item(), (boxed.iterations.item(), free.iterations.item())
    assert boxed.iterations.item() < before.iterations.item()
