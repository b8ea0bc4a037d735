"""The speed paths of issue 10 in the solvers compute what the plain ones compute: the sweep that
reuses its forward passes, the loop that skips masks while every sample is active, and in-place
updates that never touch the caller's tensors (the polyphase Conv2d adjoint is tested in
tests/operators/test_conv_polyphase.py)."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from lbinv import LiftedNetwork, invert
from lbinv.regularizers import TotalVariation
from lbinv.solvers.coordinate_descent import CoordinateDescent
from lbinv.solvers.loop import Problem, iterate
from tests.helpers import F64, REPO


def _conv_encoder(dtype=torch.float32) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 4, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 4, 2, 1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 40), nn.ReLU()).to(dtype).eval()


def test_coordinate_descent_batch_equals_separate_solves_when_samples_stop_at_different_sweeps():
    """Masks and the reused forward passes: a sample that stops stays put and the others go on
    exactly as they would alone."""
    encoder = _conv_encoder(F64)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 16, 16, generator=g, dtype=F64)
    with torch.no_grad():
        y = encoder(x)
    alpha = torch.tensor([3e-2, 1e-3, 1e-2], dtype=F64)
    batched = invert(encoder, y, alpha=alpha, input_shape=(1, 16, 16), max_iter=400, tol=1e-4, check_every=5)
    assert len(set(batched.iterations.tolist())) > 1, "samples should stop at different sweeps"
    for i in range(3):
        k = int(batched.iterations[i])
        single = invert(encoder, y[i : i + 1], alpha=float(alpha[i]), input_shape=(1, 16, 16), max_iter=k, tol=0.0)
        torch.testing.assert_close(batched.x[i], single.x[0], rtol=0, atol=1e-10)
        for hb, hs in zip(batched.hidden, single.hidden):
            torch.testing.assert_close(hb[i], hs[0], rtol=0, atol=1e-10)


@pytest.mark.parametrize("network", ["one-layer", "conv"])
def test_in_place_updates_leave_the_callers_tensors_alone(network):
    if network == "one-layer":
        torch.manual_seed(0)
        model, shape = nn.Sequential(nn.Linear(64, 30), nn.ReLU()).eval(), (1, 8, 8)
    else:
        model, shape = _conv_encoder(), (1, 16, 16)
    x_init = torch.rand(2, *shape)
    with torch.no_grad():
        y = model(x_init.flatten(1) if network == "one-layer" else x_init)
    saved_x, saved_y = x_init.clone(), y.clone()
    for bounds in (None, (0.0, 1.0)):
        res = invert(model, y, alpha=1e-2, input_shape=shape, max_iter=7, x_init=x_init, bounds=bounds)
        assert torch.equal(x_init, saved_x) and torch.equal(y, saved_y)
        assert res.x.data_ptr() != x_init.data_ptr()


def test_loop_tells_the_solver_when_every_sample_is_active():
    class Recorder:
        def __init__(self):
            self.seen, self.k = [], 0

        def step(self, active, measure):
            self.seen.append(None if active is None else active.clone())
            self.k += 1
            return active

        def done(self):
            return torch.tensor([self.k >= 20, False])  # sample 0 stops at the check after sweep 20

        def objective(self):
            return torch.zeros(2)

    solver = Recorder()
    out = iterate(solver, batch=2, device=torch.device("cpu"), max_iter=40, check_every=10)
    assert all(a is None for a in solver.seen[:20])  # everyone active: no masks
    assert all(torch.equal(a, torch.tensor([False, True])) for a in solver.seen[20:])
    assert out.iterations.tolist() == [20, 40] and out.converged.tolist() == [True, False]


def test_lifted_network_from_encoder_keeps_working_after_optimizer_steps():
    """The live view: a solver run after a training step uses the new weights (polyphase cache)."""
    encoder = _conv_encoder()
    net = LiftedNetwork.from_module(encoder, (1, 16, 16))
    y = torch.rand(2, 40)
    before = invert(net, y, alpha=1e-2, max_iter=5).x
    opt = torch.optim.SGD(encoder.parameters(), lr=0.5)
    encoder(torch.rand(4, 1, 16, 16)).square().sum().backward()
    opt.step()
    after = invert(net, y, alpha=1e-2, max_iter=5).x
    fresh = invert(LiftedNetwork.from_module(encoder, (1, 16, 16)), y, alpha=1e-2, max_iter=5).x
    assert not torch.equal(before, after)
    torch.testing.assert_close(after, fresh, rtol=0, atol=0)


def test_sweep_equals_the_sweep_before_the_speed_work(monkeypatch):
    """The reused forwards, fused updates and skipped masks change no number: the benchmark's
    LegacyCoordinateDescent (the sweep as it was, its baseline) gives the same iterates."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    bench = importlib.import_module("solver_speed")
    encoder = _conv_encoder(F64)
    net = LiftedNetwork.from_module(encoder, (1, 16, 16))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        y = encoder(torch.rand(4, 1, 16, 16, generator=g, dtype=F64))
    alpha = torch.tensor([1e-3, 1e-2, 3e-2, 1e-1], dtype=F64)
    runs = {}
    for cls in (CoordinateDescent, bench.LegacyCoordinateDescent):
        with torch.no_grad():
            problem = Problem(y, alpha, TotalVariation(), (0.0, 1.0), 1e-4, torch.zeros(4, 1, 16, 16, dtype=F64))
            solver = cls(net, problem, "balanced", 32.0, "forward")
            out = iterate(solver, 4, torch.device("cpu"), 300, 5)
        runs[cls.__name__] = (solver, out)
    (new, new_out), (old, old_out) = runs.values()
    assert torch.equal(new_out.iterations, old_out.iterations)
    torch.testing.assert_close(new.x, old.x, rtol=0, atol=1e-12)
    torch.testing.assert_close(new.z, old.z, rtol=0, atol=1e-12)
    for a, b in zip(new.hidden, old.hidden):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
