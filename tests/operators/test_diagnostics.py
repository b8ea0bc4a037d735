"""Tests of lbinv.operators.diagnostics: operator_norm (power iteration) and adjointness_test, the
normalised adjoint error every adjoint in lbinv is checked with."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbinv.operators import AffineMap, adjointness_test, operator_norm
from tests.helpers import F64, init_module, randn


class MatrixOp:
    """``x ↦ M x`` on batched vectors, with the adjoint ``y ↦ scale · Mᵀ y`` (a wrong one unless
    ``scale`` is 1), or ``y ↦ Nᵀ y`` for another matrix ``N``; no ``opnorm`` method."""

    def __init__(self, M: torch.Tensor, scale: float = 1.0, other: torch.Tensor | None = None) -> None:
        self.M, self.scale, self.other = M, scale, M if other is None else other

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.M.T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.scale * (y @ self.other)


def test_operator_norm_function():
    M = randn(6, 9, seed=5)
    est = operator_norm(lambda v: v @ M.T, lambda w: w @ M, (9,), dtype=F64)
    assert est == pytest.approx(float(torch.linalg.matrix_norm(M, ord=2)), rel=1e-6)
    assert operator_norm(lambda v: 0 * v[:, :2], lambda w: torch.zeros(w.shape[0], 9, dtype=F64), (9,)) == 0.0


def test_adjointness_test_passes_a_correct_adjoint():
    A = AffineMap(init_module(nn.Linear(7, 5)), (7,))
    x, y = randn(4, 7, seed=1), randn(4, 5, seed=2)
    err = adjointness_test(A, x, y)
    assert err.shape == (4,) and err.dtype == F64
    assert float(err.max()) <= 1e-12


@pytest.mark.parametrize("wrong", ["scaled", "other-matrix"])
def test_adjointness_test_catches_a_wrong_adjoint(wrong):
    M = randn(5, 7, seed=3)
    op = MatrixOp(M, scale=1.01) if wrong == "scaled" else MatrixOp(M, other=randn(5, 7, seed=4))
    x, y = randn(4, 7, seed=1), randn(4, 5, seed=2)
    assert float(adjointness_test(MatrixOp(M), x, y).max()) <= 1e-12  # the true adjoint passes
    assert float(adjointness_test(op, x, y).max()) >= 1e-3


def test_adjointness_test_of_a_zero_operator_is_zero_not_nan():
    linear = nn.Linear(7, 5).double()
    with torch.no_grad():
        linear.weight.zero_()
    A = AffineMap(linear, (7,))
    assert A.opnorm() == 0.0
    err = adjointness_test(A, randn(3, 7, seed=1), randn(3, 5, seed=2))
    assert torch.equal(err, torch.zeros(3, dtype=F64))


@pytest.mark.parametrize("case", ["batch", "out-shape"])
def test_adjointness_test_refuses_mismatched_shapes(case):
    if case == "batch":  # x and y of different batch sizes
        op, x, y = AffineMap(init_module(nn.Linear(7, 5)), (7,)), randn(3, 7, seed=1), randn(2, 5, seed=2)
    else:  # A x has 5 entries, y has 6 (the adjoint, of a (6, 7) matrix, takes it)
        op, x, y = MatrixOp(randn(5, 7, seed=3), other=randn(6, 7, seed=4)), randn(3, 7, seed=1), randn(3, 6, seed=2)
    with pytest.raises(ValueError, match=r"^op: .*each pair must match"):
        adjointness_test(op, x, y)


def test_adjointness_test_falls_back_to_operator_norm():
    M = randn(5, 7, seed=3)
    op = MatrixOp(M, scale=1.01)  # a wrong adjoint, so that the error is not 0 and depends on ‖A‖
    assert not hasattr(op, "opnorm")
    x, y = randn(4, 7, seed=1), randn(4, 5, seed=2)
    norm = operator_norm(op.linear, op.adjoint, (7,), dtype=F64)
    torch.testing.assert_close(adjointness_test(op, x, y), adjointness_test(op, x, y, opnorm=norm), rtol=0, atol=0)
    # an explicit opnorm is the one used
    torch.testing.assert_close(adjointness_test(op, x, y, opnorm=2 * norm), adjointness_test(op, x, y) / 2)


def test_power_iteration_warm_started_after_a_small_weight_change():
    """The callback rebuilds ‖W‖ at every epoch: started from the last block of vectors, a matrix
    changed by an optimiser-sized step converges in a few checks, to the same value as a cold start
    (both from below: Ritz values), and the value is still no more than the true norm."""
    g = torch.Generator().manual_seed(0)
    u = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(80, 60, generator=g, dtype=torch.float64)).Q
    a = u @ torch.diag(torch.linspace(1.0, 0.5, 60, dtype=torch.float64)) @ v.T  # clustered: slow from cold
    b = a + 1e-4 * torch.randn(60, 80, generator=g, dtype=torch.float64)
    calls = []

    def norm(m, **kwargs):
        def forward(v):
            calls.append(1)
            return v @ m.T

        return operator_norm(forward, lambda w: w @ m, (80,), **kwargs)

    warm = {}
    norm(a, warm=warm)
    calls.clear()
    cold = norm(b)
    cold_calls = len(calls)
    calls.clear()
    warmed = norm(b, warm=warm)
    true = float(torch.linalg.matrix_norm(b, ord=2))
    assert warmed == pytest.approx(cold, rel=1e-4) and warmed <= true * (1 + 1e-12)
    assert len(calls) <= cold_calls / 2, (len(calls), cold_calls)
