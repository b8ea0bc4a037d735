"""Tests of lbinv.solvers.inversion (invert and its solvers) against independent references: CVXPY
on small convex problems, hand-rolled Landweber iterates, objective monotonicity, exact recovery,
and every bad input."""

import cvxpy as cp
import numpy as np
import pytest
import torch
from torch import nn

from lbinv import LiftedNetwork, invert
from lbinv.regularizers import TotalVariation

pytestmark = pytest.mark.usefixtures("float64_default")  # double-precision references


def difference_matrices(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward differences with Neumann boundary on a row-major h×w image, built independently."""
    n = h * w
    dv, dh = np.zeros((n, n)), np.zeros((n, n))
    for i in range(h):
        for j in range(w):
            k = i * w + j
            if i + 1 < h:
                dv[k, k], dv[k, k + w] = -1, 1
            if j + 1 < w:
                dh[k, k], dh[k, k + 1] = -1, 1
    return dv, dh


def cvxpy_single_layer(W, b, y, alpha, h, w, activation):
    """min_x B_Ψ(y, Wx + b) + α TV_iso(x) solved by Clarabel."""
    dv, dh = difference_matrices(h, w)
    x = cp.Variable(h * w)
    z = W @ x + b
    if activation == "relu":  # B = ½‖y‖² + ½‖max(z,0)‖² − ⟨y, z⟩ for y ≥ 0
        fit = 0.5 * np.sum(y**2) + 0.5 * cp.sum_squares(cp.pos(z)) - y @ z
    else:  # identity: ½‖y − z‖²
        fit = 0.5 * cp.sum_squares(y - z)
    tv = cp.sum(cp.norm(cp.vstack([dv @ x, dh @ x]), 2, axis=0))
    problem = cp.Problem(cp.Minimize(fit + alpha * tv))
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    return x.value, problem.value


def small_problem(activation: str, seed: int = 0, h: int = 6, w: int = 6, m: int = 20):
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(h * w, m)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(m, h * w, generator=g) / h)
        layer.bias.copy_(0.1 * torch.randn(m, generator=g))
    module = nn.Sequential(layer, nn.ReLU()) if activation == "relu" else nn.Sequential(layer)
    x_true = torch.zeros(1, 1, h, w)
    x_true[..., 1:4, 2:5] = 1.0
    with torch.no_grad():
        y = module(x_true.flatten(1)) + 0.05 * torch.randn(1, m, generator=g)
    if activation == "relu":
        y = y.clamp_min(0)
    return module, layer, y, (h, w)


@pytest.mark.parametrize("activation", ["relu", "identity"])
@pytest.mark.parametrize("step_rule", ["balanced", "paper"])
def test_single_layer_pdhg_matches_cvxpy(activation, step_rule):
    module, layer, y, (h, w) = small_problem(activation)
    alpha = 0.05
    x_ref, obj_ref = cvxpy_single_layer(
        layer.weight.detach().numpy(), layer.bias.detach().numpy(), y[0].numpy(), alpha, h, w, activation
    )
    res = invert(module, y, alpha=alpha, input_shape=(1, h, w), max_iter=50_000, tol=1e-10, solver="pdhg",
                 step_rule=step_rule)
    assert bool(res.converged.all())
    assert res.objective.item() == pytest.approx(obj_ref, rel=1e-4)
    assert np.abs(res.x.flatten().numpy() - x_ref).max() <= 2e-2


def test_objective_field_is_the_lifted_objective():
    module, layer, y, (h, w) = small_problem("relu")
    res = invert(module, y, alpha=0.05, input_shape=(1, h, w), max_iter=200)
    z = layer(res.x.flatten(1))
    bregman = 0.5 * y.pow(2).sum() + 0.5 * z.clamp_min(0).pow(2).sum() - (y * z).sum()
    tv = TotalVariation().value(res.x)
    assert res.objective.item() == pytest.approx((bregman + 0.05 * tv).item(), rel=1e-12)


def test_batch_with_per_sample_alpha_equals_separate_solves():
    """PDHG: every step is per sample, so a batch gives each sample's single solve exactly (FISTA shares
    its inner-step count: test_fista.py)."""
    module, _, y, (h, w) = small_problem("relu")
    ys = torch.cat([y, 0.9 * y, y.flip(1)])
    alphas = torch.tensor([0.01, 0.05, 0.2])
    batched = invert(module, ys, alpha=alphas, input_shape=(1, h, w), solver="pdhg", max_iter=1000, tol=1e-6)
    for i in range(3):
        single = invert(module, ys[i : i + 1], alpha=alphas[i].item(), input_shape=(1, h, w), solver="pdhg",
                        max_iter=1000, tol=1e-6)
        assert batched.iterations[i] == single.iterations[0]
        torch.testing.assert_close(batched.x[i], single.x[0], rtol=0, atol=1e-10)
    assert len(set(batched.iterations.tolist())) > 1, "samples should stop at different iterations"


def deep_net(seed=0, widths=(16, 48, 96, 128)):
    """A random expansive ReLU network on 4×4 images."""
    g = torch.Generator().manual_seed(seed)
    modules = []
    for n_in, n_out in zip(widths[:-1], widths[1:]):
        linear = nn.Linear(n_in, n_out)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(n_out, n_in, generator=g) / n_in**0.5)
            linear.bias.copy_(0.05 * torch.randn(n_out, generator=g))
        modules += [linear, nn.ReLU()]
    return nn.Sequential(*modules)


def image4(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(2, 1, 4, 4)
    x[0, 0, 1:3, 1:3] = 1.0
    x[1] = torch.rand(1, 4, 4, generator=g)
    return x


@pytest.mark.parametrize("regularizer", [None, "tv"])
def test_the_papers_coordinate_descent_objective_is_non_increasing(regularizer):
    """The paper's sweep is monotone; the inertial one (the default) is not: it restarts after a rise."""
    net = deep_net()
    x = image4()
    with torch.no_grad():
        y = net(x.flatten(1))
    res = invert(net, y, alpha=1e-3, input_shape=(1, 4, 4), regularizer=regularizer, max_iter=400, tol=0,
                 check_every=1, record_history=True, solver="pdhg")
    obj = res.history["objective"]
    increase = (obj[1:] - obj[:-1]).clamp_min(0).max()
    assert increase <= 1e-9 * obj[0].abs().max()
    assert (obj[-1] < 0.1 * obj[0]).all()


@pytest.mark.parametrize("solver", ["fista", "pdhg"])
def test_coordinate_descent_recovers_input_at_zero_noise(solver):
    """Jointly non-convex, but on a two-hidden-layer expansive network it finds the true input."""
    net = deep_net(1, widths=(16, 64, 128))
    x = image4(1)
    with torch.no_grad():
        y = net(x.flatten(1))
    res = invert(net, y, alpha=1e-6, input_shape=(1, 4, 4), max_iter=3000, tol=1e-9, check_every=50, solver=solver)
    assert (res.x - x).flatten(1).norm(dim=1).max() <= 1e-2 * x.flatten(1).norm(dim=1).min()
    for hidden, clean in zip(res.hidden, LiftedNetwork.from_module(net, (1, 4, 4)).forward_all(x)):
        assert (hidden - clean).norm() <= 1e-2 * clean.norm()


def test_sequential_on_one_layer_equals_lifted():
    module, _, y, (h, w) = small_problem("relu")
    lifted = invert(module, y, alpha=0.05, input_shape=(1, h, w), solver="pdhg", max_iter=2000, tol=1e-8)  # sequential's
    seq = invert(module, y, alpha=0.05, input_shape=(1, h, w), method="sequential", max_iter=2000, tol=1e-8)
    torch.testing.assert_close(seq.x, lifted.x)


def test_sequential_recovers_hidden_layers_at_zero_noise():
    net = deep_net(2, widths=(16, 64, 128))
    x = image4(2)
    with torch.no_grad():
        y = net(x.flatten(1))
    res = invert(net, y, alpha=1e-6, input_shape=(1, 4, 4), method="sequential", max_iter=3000, tol=1e-10)
    assert (res.x - x).flatten(1).norm(dim=1).max() <= 5e-2 * x.flatten(1).norm(dim=1).min()


def test_landweber_stops_at_first_iterate_meeting_discrepancy():
    module, layer, y, (h, w) = small_problem("relu", seed=3, m=40)
    delta = torch.tensor([0.5])
    res = invert(module, y, input_shape=(1, h, w), method="landweber", regularizer=None, noise_level=delta,
                 max_iter=5000, eta=1.0)
    # an independent run of the iteration of MATH.md §8
    W, b = layer.weight.detach(), layer.bias.detach()
    omega = 1.0 / (1.01 * torch.linalg.matrix_norm(W, ord=2)) ** 2
    x = torch.zeros(h * w)
    for k in range(5000):
        r = torch.relu(W @ x + b) - y[0]
        if r.norm() <= delta:
            break
        x = x - omega * W.T @ r
    assert k > 1
    assert res.iterations.item() == k
    assert bool(res.converged.item())
    torch.testing.assert_close(res.x.flatten(), x, rtol=1e-3, atol=1e-6)


def test_gradient_baseline_decreases_its_objective():
    net = deep_net()
    x = image4()
    with torch.no_grad():
        y = net(x.flatten(1))
    res = invert(net, y, alpha=1e-3, input_shape=(1, 4, 4), method="gradient", max_iter=500, lr=0.05)
    start = 0.5 * (net(torch.zeros(1, 16)) - y).pow(2).sum(1)
    assert (res.objective < 0.2 * start).all()


def test_works_under_inference_mode_and_float32():
    module, _, y, (h, w) = small_problem("relu")
    module32 = module.float()
    with torch.inference_mode():
        for method in ("lifted", "gradient"):
            res = invert(module32, y.float(), alpha=0.05, input_shape=(1, h, w), method=method, max_iter=50)
            assert res.x.dtype == torch.float32 and torch.isfinite(res.x).all()
    module.double()


def test_clips_data_into_the_domain_with_a_warning():
    module, _, y, (h, w) = small_problem("relu")
    y_neg = y.clone()
    y_neg[0, 0] = -1.0
    with pytest.warns(UserWarning, match="1 entries lie outside the domain"):
        res = invert(module, y_neg, alpha=0.05, input_shape=(1, h, w), max_iter=20)
    clipped = invert(module, y_neg.clamp_min(0.0), alpha=0.05, input_shape=(1, h, w), max_iter=20)
    assert torch.equal(res.x, clipped.x)  # the solve saw the ReLU code clipped to ≥ 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(y=torch.full((1, 20), float("nan"), dtype=torch.float64)), ValueError, "y: expected finite"),
        (dict(alpha=0.0), ValueError, "alpha: expected finite values > 0"),
        (dict(alpha=-1.0), ValueError, "alpha"),
        (dict(alpha=torch.ones(3)), ValueError, r"alpha: expected a float or a tensor of shape \(1,\)"),
        (dict(alpha=None), ValueError, "alpha: the regularisation weight is required .* e.g. alpha=1e-3"),
        (dict(y=torch.zeros(1, 21, dtype=torch.float64)), ValueError, r"y: expected shape \(B, 20\)"),
        (dict(y=torch.zeros(1, 20, dtype=torch.float32)), ValueError, "y: expected dtype"),
        (dict(method="newton"), ValueError, "method: expected one of"),
        (dict(regularizer="l1"), ValueError, "regularizer: expected one of"),
        (dict(input_shape=(1, 5, 5)), ValueError, "input_shape"),
        (dict(input_shape=None), ValueError, "needs an image input_shape"),
        (dict(max_iter=0), ValueError, "max_iter: expected an integer >= 1"),
        (dict(tol=-1.0), ValueError, "tol: expected"),
        (dict(bounds=(1, 0)), ValueError, "bounds"),
        (dict(step_rule="fast"), ValueError, "step_rule: expected one of"),
        (dict(solver="newton"), ValueError, "solver: expected one of"),
        (dict(step_rule="paper"), ValueError, "step_rule: an option of solver='pdhg'; this call uses solver='fista'"),
        (dict(solver="pdhg", inner_steps=10), ValueError, "inner_steps: an option of solver='fista'"),
        (dict(speed=3), TypeError, "unknown option"),
        (dict(method="landweber", eta=0.5, noise_level=0.1), ValueError, "eta"),
        (dict(method="landweber", discrepancy_tau=2.0), TypeError, "'discrepancy_tau' is now called 'eta'"),
        (dict(method="landweber", noise_level=-0.1), ValueError, "noise_level"),
        (dict(max_seconds=0.0), ValueError, "max_seconds: expected a finite number > 0, got 0.0"),
        (dict(max_seconds=float("inf")), ValueError, "max_seconds: expected a finite number"),
    ],
)
def test_bad_inputs_raise_clear_errors(kwargs, error, match):
    module, _, y, (h, w) = small_problem("relu")
    args = dict(y=y, alpha=0.05, input_shape=(1, h, w))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        invert(module, args.pop("y"), **args)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused_with_what_to_do(dtype):
    module, _, y, (h, w) = small_problem("relu")
    with pytest.raises(ValueError, match=rf"y: expected float32 or float64, got {dtype}.*float\(\)"):
        invert(module.to(dtype), y.to(dtype), alpha=0.05, input_shape=(1, h, w))


def test_landweber_refuses_deep_networks():
    with pytest.raises(ValueError, match="landweber"):
        invert(deep_net(), torch.zeros(1, 128), input_shape=(1, 4, 4), method="landweber", regularizer=None)


@pytest.mark.parametrize("method, stages", [("lifted", 1), ("sequential", 2), ("gradient", 1), ("landweber", 1)])
def test_a_spent_time_budget_ends_the_solve_after_its_first_iteration(method, stages):
    """max_seconds: the loop ends after the first iteration that ends past the budget, the samples
    unconverged, whether or not it is a check (every 7); a budget smaller than any solve ends it after
    one iteration of every stage ("sequential" runs one per layer)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU()) if method == "landweber" else \
        nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 6), nn.ReLU())
    y = module(torch.rand(3, 1, 4, 4))
    solve = dict(method=method, alpha=1e-2, input_shape=(1, 4, 4), tol=0.0, max_iter=400, check_every=7)
    spent = invert(module, y, max_seconds=1e-12, **solve)
    assert spent.iterations.tolist() == [stages] * 3 and not spent.converged.any()
    unlimited = invert(module, y, **solve)  # tol = 0: it runs on (exact fixed points aside)
    assert bool((unlimited.iterations > 10 * stages * 7).all())
