"""prox_and_preimage (issue 26): from the preimage of a nearby solve, one Newton step where it is
exact to round-off, the solve afresh elsewhere. References: mpmath's root at 40 digits (through
test_fast_prox's cases and accuracy bound), and the solve without a start."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lbinv.proximal.smooth_solver as smooth_solver
from lbinv import LiftedNetwork, invert
from lbinv.proximal import CELUProx, ELUProx, ReLUProx, SigmoidProx, SoftplusProx, TanhProx, TanhshrinkProx
from lbinv.solvers.data_term import BregmanTerm
from tests.helpers import generator
from tests.proximal.test_fast_prox import CASES, T_BELOW_ONE, V_EDGES, mpmath

#: the cases that keep a preimage (ELU and CELU solve afresh: their cold solver is the cheaper)
WARM = [name for name in CASES if not name.startswith(("elu", "celu"))]

F64 = torch.float64


@pytest.fixture
def fresh_entries(monkeypatch):
    """How many entries each call solved afresh (without the start)."""
    counts = []
    real = smooth_solver._SmoothProx._solve_with_preimage

    def counted(self, v, t):
        counts.append(v.numel())
        return real(self, v, t)

    monkeypatch.setattr(smooth_solver._SmoothProx, "_solve_with_preimage", counted)
    return counts


def _reference(ref, v: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u*, w*, allowed scale |u*| + |w*|·σ'(w*)) at 40 digits."""
    with mpmath.workdps(40):
        out = [ref(float(x), t) for x in v]
    u, w, dsigma = (np.array(column) for column in zip(*out))
    return u, w, np.abs(u) + np.abs(w) * dsigma


@pytest.mark.parametrize("dtype, nudge", [(F64, 1e-9), (torch.float32, 1e-5), (F64, 1e-6), (torch.float32, 3e-3)])
@pytest.mark.parametrize("t", T_BELOW_ONE)
@pytest.mark.parametrize("name", WARM)
def test_a_close_start_takes_one_newton_step_to_the_same_accuracy(name, t, dtype, nudge, fresh_entries):
    """From the true preimage moved by ``nudge`` (× min(1, |w*|)), u is as accurate as the solve without
    a start (test_fast_prox's bound), its preimage too, and most entries take the step. Nudges beyond
    the threshold check that it is not too generous: at 100 × θ the step would miss the bound."""
    make, ref = CASES[name]
    act = make()
    v = np.array([x for x in V_EDGES if dtype == F64 or abs(x) <= 1e3])
    x = torch.tensor(v, dtype=dtype)
    u_ref, w_ref, scale = _reference(ref, x.double().numpy(), t)
    start = torch.tensor(w_ref + nudge * np.minimum(1.0, np.abs(w_ref)), dtype=dtype)
    u, w = act.prox_and_preimage(x, t, start)
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    for value in (u, act(w)):  # u, and the value at its preimage
        err = np.abs(value.double().numpy() - u_ref) / (16.0 * eps * scale + tiny)
        assert np.all(err <= 1.0), (v[np.argmax(err)], err.max())
    # below the threshold most entries take the step (for a small t its rounding, of order ε|v|/t, is
    # above it where |v| ≫ t); beyond it (the last two nudges) only the accuracy is asked
    if nudge < torch.finfo(dtype).eps ** 0.5 and t >= 0.05:
        assert sum(fresh_entries) <= len(v) // 2


@pytest.mark.parametrize("name", WARM)
def test_a_far_start_takes_a_few_steps_or_the_solve_without_it(name, fresh_entries):
    """From a start off by far, a few Newton steps (to round-off: as ``prox``) or, where they are not
    enough, the solve without a start; a NaN start is solved afresh, to the bit."""
    act = CASES[name][0]()
    v = 3.0 * torch.randn(40, generator=generator(7), dtype=F64)
    u, w = act.prox_and_preimage(v, 0.3)
    far, _ = act.prox_and_preimage(v, 0.3, -1.1 * w.abs() - 0.1)
    torch.testing.assert_close(far, u, rtol=1e-14, atol=1e-300)
    again, w_again = act.prox_and_preimage(v, 0.3, torch.full_like(w, float("nan")))
    assert torch.equal(again, u) and torch.equal(w_again, w) and fresh_entries[-1] == v.numel()


def test_large_tensors_mix_steps_and_fresh_solves_block_by_block(fresh_entries):
    """On the CPU, blocks of a large tensor: entries far from their start are solved afresh, the others
    take the step; both agree with the solve without a start."""
    n = 3 * 2**17 + 5
    for act in (SigmoidProx(), TanhProx(), SoftplusProx(2.0)):
        v = 3.0 * torch.randn(n, generator=generator(8))
        u, w = act.prox_and_preimage(v, 0.4)
        moved = v + 1e-6 * torch.randn(n, generator=generator(9))
        w[:1000] = float("nan")  # these have no start
        fresh_entries.clear()
        step, _ = act.prox_and_preimage(moved, 0.4, w)
        torch.testing.assert_close(step, act.prox(moved, 0.4), rtol=4e-7, atol=1e-7)
        assert sum(fresh_entries) == 1000


def test_no_start_where_it_does_not_apply():
    """ReLU keeps no preimage; neither do tanhshrink (no curvature bound), ELU and CELU (cheaper afresh),
    a tensor t and t ≥ 1."""
    v = torch.randn(30, generator=generator(10), dtype=F64)
    assert ReLUProx().prox_and_preimage(v, 0.5, v)[1] is None
    for act, t in ((SigmoidProx(), torch.tensor(0.5, dtype=F64)), (SigmoidProx(), 2.0)):
        u, w = act.prox_and_preimage(v, t, v)
        assert w is None and torch.equal(u, act.prox(v, t))
    for act in (TanhshrinkProx(), ELUProx(0.5), CELUProx(0.7)):
        u, w = act.prox_and_preimage(v, 0.5, v)
        assert w is None and torch.equal(u, act.prox(v, 0.5))


def test_the_lifted_solver_with_steps_from_the_last_preimage_solves_the_same(monkeypatch):
    """The multi-layer solver keeps each hidden block's preimage for its next sweep: the iterates are
    those of the solver without (to round-off), on a net of sigmoid, tanh and ELU layers."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, 2, 1), torch.nn.Sigmoid(), torch.nn.Conv2d(4, 4, 3, 1, 1), torch.nn.Tanh(),
        torch.nn.Conv2d(4, 4, 3, 2, 1), torch.nn.ELU(0.5), torch.nn.Flatten(), torch.nn.Linear(64, 10),
    ).double()
    lifted = LiftedNetwork.from_module(net, (1, 16, 16))
    x = torch.rand(3, 1, 16, 16, generator=generator(12), dtype=F64)
    y = net(x).detach() + 0.01 * torch.randn(3, 10, generator=generator(13), dtype=F64)
    solve = lambda: invert(lifted, y, alpha=1e-2, bounds=(0.0, 1.0), tol=0.0, max_iter=60)  # noqa: E731
    warm = solve()
    real = BregmanTerm.prox
    monkeypatch.setattr(BregmanTerm, "prox", lambda self, v, a, tau, start: real(self, v, a, tau, None))
    cold = solve()
    torch.testing.assert_close(warm.x, cold.x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(warm.objective, cold.objective, rtol=1e-10, atol=0.0)
