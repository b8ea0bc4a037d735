"""One-layer FISTA in float32 (lbinv.solvers.fista): its certified duality gap has a rounding floor
(about 1e−5 relative here; before the rounding slack of its monotone test it stalled at 4e−4). A
``tol`` below that floor stops the sample there, unconverged, with one warning, instead of running
to ``max_iter``; a ``tol`` above it is met and honest. References: Clarabel in float64, and the
objective of the returned ``x`` evaluated in float64 with numpy."""

import copy
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lbinv import invert
from tests.solvers.test_fista import cvxpy_relu_box
from tests.solvers.test_inversion import difference_matrices

ALPHA = 1e-2
BOUNDS = (0.0, 1.0)
MAX_ITER = 5000
FLOOR_WARNING = "below the rounding floor of the certified duality gap in float32"


def linear_encoder():
    return nn.Sequential(nn.Flatten(), nn.Linear(240, 120), nn.ReLU()), (1, 20, 12)


def conv_encoder():
    return nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU()), (1, 16, 16)


ENCODERS = {"linear": linear_encoder, "conv": conv_encoder}


def affine_matrix(module: nn.Module, shape) -> tuple[np.ndarray, np.ndarray]:
    """``(W, b)`` of the affine part of ``module`` (all but its last ReLU) in float64, column by column."""
    affine = copy.deepcopy(nn.Sequential(*list(module)[:-1])).double()
    n = int(np.prod(shape))
    with torch.no_grad():
        b = affine(torch.zeros(1, *shape, dtype=torch.float64)).flatten(1)
        W = (affine(torch.eye(n, dtype=torch.float64).reshape(n, *shape)).flatten(1) - b).T
    return W.numpy(), b[0].numpy()


@pytest.fixture(scope="module", params=list(ENCODERS))
def example(request):
    """A float32 encoder, two codes of random images, and per sample Clarabel's optimum and an
    independent float64 evaluation of the objective."""
    torch.manual_seed(0)
    module, shape = ENCODERS[request.param]()
    module = module.eval()
    x = torch.rand(2, *shape)
    with torch.no_grad():
        y = module(x)
    W, b = affine_matrix(module, shape)
    h, w = shape[-2:]
    optimum = [cvxpy_relu_box(W, b, y[i].double().flatten().numpy(), ALPHA, h, w, BOUNDS)[1] for i in range(2)]
    dv, dh = difference_matrices(h, w)

    def objective(x: torch.Tensor) -> np.ndarray:
        """``B_ReLU(y, Wx + b) + α TV_iso(x)`` per sample, in float64."""
        values = []
        for i in range(x.shape[0]):
            xi, yi = x[i].double().flatten().numpy(), y[i].double().flatten().numpy()
            z = W @ xi + b
            fit = 0.5 * np.sum((yi - np.maximum(z, 0.0)) ** 2) + np.sum(yi * np.maximum(-z, 0.0))
            values.append(fit + ALPHA * np.sum(np.hypot(dv @ xi, dh @ xi)))
        return np.array(values)

    return module, shape, y, np.array(optimum), objective


def solve(example, tol, **options):
    module, shape, y, _, _ = example
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            res = invert(module, y, alpha=ALPHA, input_shape=shape, bounds=BOUNDS, max_iter=MAX_ITER, tol=tol, **options)
    assert res.x.dtype == torch.float32
    return res, [str(w.message) for w in caught if FLOOR_WARNING in str(w.message)]


def test_a_tol_below_the_float32_floor_stops_early_unconverged_with_one_warning(example):
    _, _, _, optimum, objective = example
    res, floor_warnings = solve(example, tol=1e-7)
    assert not bool(res.converged.any())
    assert int(res.iterations.max()) <= 1000  # stopped at the floor (about 250 iterations), not at max_iter
    assert len(floor_warnings) == 1
    message = floor_warnings[0]
    assert "tol=1e-07" in message and "converged=False" in message and "float64 copy" in message
    # what it returns is still the optimum to float32 accuracy (measured: within 5e-8)
    relative = (objective(res.x) - optimum) / optimum
    assert np.all(np.abs(relative) <= 1e-5), relative
    # the remedy it names holds: at the suggested tol the same solve converges, without the warning
    suggested = float(re.search(r"pass tol >= ([0-9.e+-]+),", message).group(1))
    assert 1e-7 < suggested <= 1e-3
    again, again_warnings = solve(example, tol=suggested)
    assert bool(again.converged.all()) and not again_warnings


@pytest.mark.parametrize("tol", [1e-2, 2e-5])
def test_a_tol_above_the_float32_floor_is_met_and_honest(example, tol):
    """1e−2: far above the floor. 2e−5: above the floor, but 20× below where the strict monotone
    test used to stall (4e−4 relative), where this solve ran to max_iter."""
    _, _, _, optimum, objective = example
    res, floor_warnings = solve(example, tol=tol)
    assert bool(res.converged.all()) and not floor_warnings
    assert int(res.iterations.max()) < MAX_ITER // 5
    value = objective(res.x)
    assert np.all((value - optimum) / value <= tol + 1e-9), (value - optimum) / value  # + Clarabel's accuracy


def test_tol_zero_runs_every_iteration_without_the_warning(example):
    """``tol = 0`` asks for ``max_iter`` iterations: no stop at the floor."""
    module, shape, y, _, _ = example
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            res = invert(module, y, alpha=ALPHA, input_shape=shape, bounds=BOUNDS, max_iter=400, tol=0.0)
    assert res.iterations.tolist() == [400, 400] and not bool(res.converged.any())
    assert not [w for w in caught if "rounding floor" in str(w.message)]


def test_a_float32_gap_that_stops_falling_above_tol_stops_there_with_one_warning():
    """A sigmoid conv layer in float32 (tol=1e−4): the iterates settle within float32 rounding of the data
    term, where the certified gap still reads about 1e−2 of the objective, far above its rounding-floor
    estimate. It used to run to max_iter without a word; it stops once the gap and the objective have
    made no new low for the stall window, unconverged, with one warning that suggests no tol (a tol at
    the gap reached would certify nothing) but a float64 copy, which then meets tol=1e−4; the float32
    objective is within 1e−4 of that float64 solve's."""
    torch.manual_seed(3)
    enc = nn.Sequential(nn.Conv2d(1, 6, 5, stride=2, padding=2), nn.Sigmoid()).eval()
    x = torch.zeros(2, 1, 32, 32)
    x[:, :, 8:24, 10:22] = 0.8
    x[1] *= 0.5
    with torch.no_grad():
        y = (enc(x) + 0.01 * torch.randn(2, 6, 16, 16)).clamp(1e-4, 1 - 1e-4)

    def run(module, codes):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = invert(module, codes, alpha=3e-3, input_shape=(1, 32, 32), bounds=BOUNDS, max_iter=2000, tol=1e-4)
        return res, [str(w.message) for w in caught if str(w.message).startswith("FISTA:")]

    res, stop_warnings = run(enc, y)
    assert not bool(res.converged.any()) and int(res.iterations.max()) <= 600
    assert len(stop_warnings) == 1
    message = stop_warnings[0]
    assert "stopped falling above tol=0.0001 in float32" in message and "float64 copy" in message
    assert "pass tol" not in message
    double, double_warnings = run(copy.deepcopy(enc).double(), y.double())
    assert bool(double.converged.all()) and not double_warnings
    relative = (res.objective.double() - double.objective) / double.objective
    assert bool((relative.abs() <= 1e-4).all()), relative
