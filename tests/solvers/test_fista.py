"""Tests of the one-layer FISTA solver (``invert(..., solver="fista")``, lbinv.solvers.fista) against
CVXPY/Clarabel on small problems, with box bounds and per-sample α, its stopping test's meaning (a
relative duality gap), its rounding floor in float64 (float32: test_fista_rounding.py) and the
optimality condition at its solution."""

import warnings

import cvxpy as cp
import numpy as np
import pytest
import torch
from torch import nn

from lbinv import LiftedNetwork, invert
from lbinv.regularizers import TotalVariation
from lbinv.solvers.fista import FISTA
from lbinv.solvers.loop import ROUNDING_SLACK, Problem, iterate
from tests.solvers.test_inversion import (
    cvxpy_single_layer,
    difference_matrices,
    small_problem,
)

ALPHA = 0.05


pytestmark = pytest.mark.usefixtures("float64_default")  # double-precision references


def cvxpy_relu_box(W, b, y, alpha, h, w, bounds):
    """min_x B_ReLU(y, Wx + b) + α TV_iso(x) subject to lo ≤ x ≤ hi, by Clarabel."""
    dv, dh = difference_matrices(h, w)
    x = cp.Variable(h * w)
    z = W @ x + b
    fit = 0.5 * np.sum(y**2) + 0.5 * cp.sum_squares(cp.pos(z)) - y @ z
    tv = cp.sum(cp.norm(cp.vstack([dv @ x, dh @ x]), 2, axis=0))
    problem = cp.Problem(cp.Minimize(fit + alpha * tv), [x >= bounds[0], x <= bounds[1]])
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return x.value, problem.value


def reference(activation, seed=0):
    module, layer, y, (h, w) = small_problem(activation, seed=seed)
    x_ref, obj_ref = cvxpy_single_layer(
        layer.weight.detach().numpy(), layer.bias.detach().numpy(), y[0].numpy(), ALPHA, h, w, activation
    )
    return module, layer, y, (h, w), x_ref, obj_ref


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_fista_matches_cvxpy(activation):
    module, _, y, (h, w), x_ref, obj_ref = reference(activation)
    res = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", max_iter=20_000, tol=1e-10)
    assert bool(res.converged.all())
    assert res.objective.item() == pytest.approx(obj_ref, rel=1e-7)
    assert np.abs(res.x.flatten().numpy() - x_ref).max() <= 2e-3


def test_fista_with_box_matches_cvxpy_and_respects_the_box():
    module, layer, y, (h, w) = small_problem("relu")
    bounds = (0.0, 0.3)  # active on both sides: the unconstrained solution spans about [-0.6, 0.46]
    x_ref, obj_ref = cvxpy_relu_box(layer.weight.detach().numpy(), layer.bias.detach().numpy(), y[0].numpy(),
                                    ALPHA, h, w, bounds)
    free = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", max_iter=20_000, tol=1e-8)
    assert free.x.min().item() < bounds[0] - 0.1 and free.x.max().item() > bounds[1] + 0.1, "the box should be active"
    res = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", bounds=bounds, max_iter=20_000, tol=1e-9)
    assert bool(res.converged.all())
    assert res.x.min().item() >= bounds[0] and res.x.max().item() <= bounds[1]
    assert res.objective.item() == pytest.approx(obj_ref, rel=1e-7)
    assert np.abs(res.x.flatten().numpy() - x_ref).max() <= 2e-3


@pytest.mark.parametrize("bounds", [None, (-1.0, 2.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tol", [1e-4, 1e-6])
def test_converged_at_tol_means_relative_objective_gap_below_tol(seed, bounds, tol):
    """With finite bounds the gap is an exact duality gap (certified); without, an estimate: both
    must put the objective within ``tol`` (relative) of Clarabel's optimum when they report convergence."""
    module, layer, y, (h, w) = small_problem("relu", seed=seed)
    W, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    if bounds is None:
        _, obj_ref = cvxpy_single_layer(W, b, y[0].numpy(), ALPHA, h, w, "relu")
    else:
        _, obj_ref = cvxpy_relu_box(W, b, y[0].numpy(), ALPHA, h, w, bounds)
    res = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", bounds=bounds, max_iter=20_000, tol=tol)
    assert bool(res.converged.all())
    f = res.objective.item()
    assert (f - obj_ref) / f <= tol + 1e-9  # + Clarabel's own accuracy


def test_a_loose_tol_stops_earlier_than_a_tight_one():
    module, _, y, (h, w) = small_problem("relu")
    loose = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", max_iter=20_000, tol=1e-3, check_every=1)
    tight = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", max_iter=20_000, tol=1e-9, check_every=1)
    assert bool(loose.converged.all()) and bool(tight.converged.all())
    assert loose.iterations.item() < tight.iterations.item()
    assert tight.objective.item() <= loose.objective.item()


def test_optimality_condition_at_the_solution():
    """0 ∈ ∇f(x) + α ∂TV(x): with the returned dual z (‖z_ij‖ ≤ 1), ∇f(x) = α div z and α⟨z, ∇x⟩ = α TV(x)."""
    module, layer, y, (h, w), _, _ = reference("relu")
    res = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", max_iter=20_000, tol=1e-9)
    tv = TotalVariation()
    x, z = res.x, res.dual
    assert z.shape == (1, 2, 1, h, w)
    assert tv.pointwise_norm(z).max().item() <= 1.0 + 1e-12
    with torch.no_grad():
        pre = layer(x.flatten(1))
        grad_f = ((pre.clamp_min(0) - y) @ layer.weight).reshape_as(x)  # Wᵀ(σ(Wx + b) − y), written out
    residual = grad_f - ALPHA * tv.div(z)
    assert residual.norm().item() <= 1e-4 * grad_f.norm().item()
    assert (ALPHA * (tv.value(x) - (z * tv.grad(x)).sum())).item() <= 1e-9 * res.objective.item()  # the test's TV part


def test_batch_with_per_sample_alpha_agrees_with_separate_solves():
    """The inner-step count is shared by the batch, so the iterates are not bitwise those of single
    solves; each sample's solution agrees with its single solve to the tolerance."""
    module, _, y, (h, w) = small_problem("relu")
    ys = torch.cat([y, 0.9 * y, y.flip(1)])
    alphas = torch.tensor([0.01, 0.05, 0.2])
    batched = invert(module, ys, alpha=alphas, input_shape=(1, h, w), solver="fista", max_iter=20_000, tol=1e-10)
    assert bool(batched.converged.all())
    for i in range(3):
        single = invert(module, ys[i : i + 1], alpha=alphas[i].item(), input_shape=(1, h, w), solver="fista",
                        max_iter=20_000, tol=1e-10)
        assert batched.objective[i].item() == pytest.approx(single.objective[0].item(), rel=2e-10)
        torch.testing.assert_close(batched.x[i], single.x[0], rtol=0, atol=1e-4)


def test_finished_samples_stay_put_and_stop_at_their_own_iteration():
    module, _, y, (h, w) = small_problem("relu")
    ys = torch.cat([y, 0.5 * y])
    alphas = torch.tensor([0.2, 0.01])
    res = invert(module, ys, alpha=alphas, input_shape=(1, h, w), solver="fista", max_iter=20_000, tol=1e-8)
    assert bool(res.converged.all())
    assert res.iterations[0] != res.iterations[1]
    first, stop = int(res.iterations.argmin()), int(res.iterations.min())
    # the same batch cut at the iteration where that sample stopped: the other ran on, it stayed put
    cut = invert(module, ys, alpha=alphas, input_shape=(1, h, w), solver="fista", max_iter=stop, tol=1e-8)
    assert not torch.equal(cut.x[1 - first], res.x[1 - first])
    torch.testing.assert_close(res.x[first], cut.x[first], rtol=0, atol=0)


def test_objective_never_increases():
    """Monotone FISTA up to rounding: a step that would raise the objective above the lowest so far by
    more than ``ROUNDING_SLACK`` units ε of it is rejected."""
    module, _, y, (h, w) = small_problem("relu")
    res = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", max_iter=300, tol=0.0,
                 check_every=1, record_history=True)
    obj = res.history["objective"][:, 0]
    lowest = torch.cummin(obj, dim=0).values
    assert bool((obj[1:] <= lowest[:-1] * (1.0 + ROUNDING_SLACK * torch.finfo(obj.dtype).eps)).all())


def test_a_tight_tol_is_met_in_float64():
    """With a box the certified gap falls to about 1e−14 relative in float64. The strict monotone test
    (a rise of one rounding error rejected) stalled it above 1e−10 here: tol=1e−10 ran 20,000
    iterations unconverged; now tol=1e−13 takes about 1,560."""
    module, layer, y, (h, w) = small_problem("relu")
    bounds = (-1.0, 2.0)
    _, obj_ref = cvxpy_relu_box(layer.weight.detach().numpy(), layer.bias.detach().numpy(), y[0].numpy(),
                                ALPHA, h, w, bounds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no floor warning: the tol is reachable
        res = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", bounds=bounds, max_iter=20_000, tol=1e-13)
    assert bool(res.converged.all()) and res.iterations.item() < 5000
    assert res.objective.item() == pytest.approx(obj_ref, rel=1e-9)  # Clarabel's accuracy


def test_a_tol_below_the_float64_floor_stops_there_unconverged_and_warns():
    """tol=1e−16 is below the rounding floor of the certified gap (estimated 2.5e−14 here; the gap settles
    near 8e−15): the sample stops once its gap has made no new low for half its iterations (about
    6,900 of the 20,000 allowed), unconverged, and the warning suggests a tol (no float64 copy: it is one)."""
    module, _, y, (h, w) = small_problem("relu")
    with pytest.warns(UserWarning, match=r"tol=1e-16 is below the rounding floor .* in float64.*pass tol >= ") as caught:
        res = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", bounds=(-1.0, 2.0),
                     max_iter=20_000, tol=1e-16)
    assert not bool(res.converged.any()) and res.iterations.item() < 10_000
    assert not any("float64 copy" in str(w.message) for w in caught)


@pytest.mark.parametrize("regularizer", [None, "tv-aniso"])
def test_other_regularizers_reach_the_pdhg_solution(regularizer):
    module, _, y, (h, w) = small_problem("relu")
    opts = {"alpha": ALPHA, "input_shape": (1, h, w), "regularizer": regularizer, "bounds": (-2.0, 2.0), "max_iter": 20_000}
    fista = invert(module, y, solver="fista", tol=1e-6 if regularizer is None else 1e-8, **opts)
    pdhg = invert(module, y, solver="pdhg", tol=1e-10, **opts)
    assert bool(fista.converged.all())  # regularizer=None: the optimum is 0 (an exact fit), the floor of the test
    assert fista.objective.item() <= pdhg.objective.item() + 1e-8 * (pdhg.objective.item() + 1e-9)
    assert fista.objective.item() >= pdhg.objective.item() * (1 - 1e-8) - 1e-12


def test_float32_and_inference_mode():
    module, _, y, (h, w) = small_problem("relu")
    module = module.float()
    with torch.inference_mode():
        res = invert(module, y.float(), alpha=ALPHA, input_shape=(1, h, w), solver="fista", max_iter=3000, tol=1e-5)
    assert res.x.dtype == torch.float32 and bool(torch.isfinite(res.x).all())
    assert bool(res.converged.all())


def test_solver_loop_directly():
    """The solver class on its own (what invert builds): stopped by its own test at tol = 1e−6, its
    objective is within 1e−6 (relative) of Clarabel's optimum and its gap bounds the true gap."""
    module, _, y, (h, w), _, obj_ref = reference("relu")
    net = LiftedNetwork.from_module(module, (1, h, w))
    problem = Problem(y, torch.tensor([ALPHA]), TotalVariation(), None, 1e-6, torch.zeros(1, 1, h, w))
    solver = FISTA(net.layers[0], problem, **FISTA.options)
    out = iterate(solver, batch=1, device=torch.device("cpu"), max_iter=5000, check_every=10)
    assert bool(out.converged.all())
    true_gap = solver.objective().item() - obj_ref
    assert -1e-9 <= true_gap <= 1e-6 * obj_ref


def test_bad_solver_options_raise_clear_errors():
    module, _, y, (h, w) = small_problem("relu")
    with pytest.raises(ValueError, match="solver: expected one of"):
        invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="adam")
    with pytest.raises(ValueError, match="inner_steps"):
        invert(module, y, alpha=ALPHA, input_shape=(1, h, w), solver="fista", inner_steps=0)
    deep = nn.Sequential(nn.Linear(36, 30), nn.ReLU(), nn.Linear(30, 20), nn.ReLU())
    with pytest.raises(ValueError, match="step_rule: an option of solver='pdhg'; this call uses solver='fista'"):
        invert(deep, torch.zeros(1, 20), alpha=ALPHA, input_shape=(1, 6, 6), step_rule="paper")
    with pytest.raises(ValueError, match="input_inner_steps: an option of solver='fista'; this call uses solver='pdhg'"):
        invert(deep, torch.zeros(1, 20), alpha=ALPHA, input_shape=(1, 6, 6), solver="pdhg", input_inner_steps=3)
    # an option of the other depth is refused, pointing to its counterpart
    with pytest.raises(ValueError, match="inner_steps: an option of FISTA, but this network has 2 lifted nodes.*use input_inner_steps"):
        invert(deep, torch.zeros(1, 20), alpha=ALPHA, input_shape=(1, 6, 6), inner_steps=10)
    with pytest.raises(ValueError, match="input_inner_steps: an option of AcceleratedCoordinateDescent, but this network has one layer"):
        invert(module, y, alpha=ALPHA, input_shape=(1, h, w), input_inner_steps=3)
    # hidden_init on one layer is ignored, as it always was
    one = invert(module, y, alpha=ALPHA, input_shape=(1, h, w), hidden_init="zeros", max_iter=20)
    torch.testing.assert_close(one.x, invert(module, y, alpha=ALPHA, input_shape=(1, h, w), max_iter=20).x, rtol=0, atol=0)
