"""Resuming a lifted solve: ``invert(..., x_init=res.x, dual_init=res.dual)`` starts from the previous
state, TV dual included: PDHG's state is ``(x, z)``, so its resumed solve is the uninterrupted one;
FISTA's reaches the same tolerance in fewer iterations than a solve from the same ``x`` with the
dual at 0."""

import pytest
import torch

from lbinv import invert
from tests.solvers.test_inversion import small_problem

pytestmark = pytest.mark.usefixtures("float64_default")  # double-precision references

ALPHA = 0.05


@pytest.mark.parametrize("bounds", [None, (0.0, 1.0)])
def test_a_resumed_fista_solve_meets_the_tolerance_in_fewer_iterations(bounds):
    # the TV dual is the inner prox's warm start (and, with a box, the certificate's dual)
    module, _, y, (h, w) = small_problem("relu")
    args = dict(alpha=ALPHA, input_shape=(1, h, w), bounds=bounds, check_every=1)
    first = invert(module, y, max_iter=50, tol=0.0, **args)
    assert first.dual is not None and first.dual.shape == (1, 2, 1, h, w)
    resumed = invert(module, y, max_iter=5_000, tol=1e-8, x_init=first.x, dual_init=first.dual, **args)
    cold = invert(module, y, max_iter=5_000, tol=1e-8, x_init=first.x, **args)
    assert bool(resumed.converged.all()) and bool(cold.converged.all())
    assert resumed.iterations.item() < cold.iterations.item()
    reference = invert(module, y, max_iter=5_000, tol=1e-11, **args).objective.item()
    assert resumed.objective.item() == pytest.approx(reference, rel=1e-6)


def test_the_first_step_of_a_resumed_pdhg_solve_continues_the_previous_one():
    # PDHG's state is (x, z): 30 iterations, then 20 more from the returned state, are 50 iterations
    module, _, y, (h, w) = small_problem("relu")
    args = dict(alpha=ALPHA, input_shape=(1, h, w), solver="pdhg", tol=0.0)
    first = invert(module, y, max_iter=30, **args)
    resumed = invert(module, y, max_iter=20, x_init=first.x, dual_init=first.dual, **args)
    whole = invert(module, y, max_iter=50, **args)
    torch.testing.assert_close(resumed.x, whole.x, rtol=0.0, atol=0.0)
    torch.testing.assert_close(resumed.dual, whole.dual, rtol=0.0, atol=0.0)
    # so a resumed solve meets the tolerance 30 iterations earlier than a cold one
    tight = {**args, "tol": 1e-8, "max_iter": 20_000, "check_every": 1}
    cold = invert(module, y, **tight)
    warm = invert(module, y, x_init=first.x, dual_init=first.dual, **tight)
    assert bool(cold.converged.all()) and bool(warm.converged.all())
    assert warm.iterations.item() == cold.iterations.item() - 30


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(dual_init=torch.zeros(1, 2, 6, 6)), ValueError, r"dual_init: expected a tensor of shape \(1, 2, 1, 6, 6\)"),
        (dict(dual_init=torch.zeros(1, 2, 1, 6, 6), regularizer=None), ValueError, "dual_init: the TV dual needs a TV regularizer"),
        (dict(dual_init=torch.full((1, 2, 1, 6, 6), float("nan"))), ValueError, "dual_init: expected finite values"),
        (dict(dual_init=torch.zeros(1, 2, 1, 6, 6), method="landweber"), TypeError, "unknown option"),
    ],
)
def test_bad_dual_init_raises_a_clear_error(kwargs, error, match):
    module, _, y, (h, w) = small_problem("relu")
    with pytest.raises(error, match=match):
        invert(module, y, alpha=ALPHA, input_shape=(1, h, w), **kwargs)


def test_an_infeasible_dual_init_is_projected_onto_the_dual_ball():
    module, _, y, (h, w) = small_problem("relu")
    args = dict(alpha=ALPHA, input_shape=(1, h, w), solver="pdhg", max_iter=1, tol=0.0)
    big = torch.full((1, 2, 1, h, w), 3.0)
    projected = big / (2.0 * 9.0) ** 0.5  # each pixel's (3, 3) scaled to norm 1
    a, b = invert(module, y, dual_init=big, **args), invert(module, y, dual_init=projected, **args)
    torch.testing.assert_close(a.x, b.x, rtol=0.0, atol=0.0)
