"""The speed paths of issue 10 compute what the plain ones compute: the polyphase Conv2d adjoint, the
sweep that reuses its forward passes, the loop that skips masks while every sample is active, and
in-place updates that never touch the caller's tensors."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from torch import nn

from lbinv.operators import adjointness_test, conv_adjoint
from lbinv.operators.conv_polyphase import PolyphaseConvAdjoint
from lbinv import LiftedNetwork, invert
from lbinv.operators import AffineMap
from lbinv.regularizers import TotalVariation
from lbinv.solvers.loop import Problem, iterate
from lbinv.solvers.coordinate_descent import CoordinateDescent

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]

CONVS = {
    "paper-1": (lambda: nn.Conv2d(1, 8, 4, 2, 1), (1, 28, 28)),
    "paper-2": (lambda: nn.Conv2d(8, 16, 4, 2, 1), (8, 14, 14)),
    "stride1": (lambda: nn.Conv2d(2, 3, 3), (2, 8, 8)),
    "odd-size": (lambda: nn.Conv2d(2, 3, 4, stride=2, padding=1), (2, 9, 7)),
    "rect-stride": (lambda: nn.Conv2d(2, 4, (3, 2), stride=(3, 2), padding=(1, 0)), (2, 10, 9)),
    "same-even": (lambda: nn.Conv2d(2, 3, (4, 3), padding="same"), (2, 7, 8)),
    "big-padding": (lambda: nn.Conv2d(2, 3, 5, stride=3, padding=4), (2, 11, 13)),
    "1x1-stride2": (lambda: nn.Conv2d(3, 2, 1, stride=2), (3, 9, 8)),
    "stride-above-kernel": (lambda: nn.Conv2d(2, 2, 2, stride=4), (2, 10, 11)),
}


def _map(name: str, dtype=F64) -> AffineMap:
    factory, shape = CONVS[name]
    torch.manual_seed(0)
    return AffineMap(factory().to(dtype).eval(), shape)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("name", list(CONVS))
@torch.no_grad()
def test_polyphase_adjoint_equals_conv_transpose_and_passes_the_adjoint_test(name):
    A = _map(name)
    assert A._ops[0].polyphase is not None
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *A.in_shape, generator=g, dtype=F64)
    y = torch.randn(3, *A.out_shape, generator=g, dtype=F64)
    with conv_adjoint("transpose"):
        reference = A.adjoint(y)
    with conv_adjoint("polyphase"):
        got = A.adjoint(y)
        assert float(adjointness_test(A, x, y).max()) <= 1e-10
    assert got.shape == reference.shape
    torch.testing.assert_close(got, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 700])  # below and above the strided-interleave threshold
def test_auto_uses_polyphase_for_float32_on_the_cpu(batch, monkeypatch):
    A = _map("paper-2", torch.float32)
    y = torch.randn(batch, *A.out_shape)
    calls = []
    original = PolyphaseConvAdjoint.__call__
    monkeypatch.setattr(PolyphaseConvAdjoint, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    got = A.adjoint(y)  # "auto" outside any conv_adjoint block
    assert calls, "auto should take the polyphase path for float32 on the CPU"
    with conv_adjoint("transpose"):
        torch.testing.assert_close(got, A.adjoint(y), rtol=1e-5, atol=1e-5)
    calls.clear()
    A64 = _map("paper-2")
    A64.adjoint(y.double())
    assert not calls, "float64 keeps conv_transpose2d (faster there)"


@conv_adjoint("polyphase")
def test_polyphase_kernel_follows_weight_updates():
    A = _map("paper-1")
    y = torch.randn(2, *A.out_shape, dtype=F64)
    first = A.adjoint(y)
    with torch.no_grad():
        A.modules[0].weight.mul_(-2.0)  # in place: a new version, the cached kernel is stale
    torch.testing.assert_close(A.adjoint(y), -2.0 * first)
    with torch.no_grad():
        A.modules[0].weight = nn.Parameter(torch.ones_like(A.modules[0].weight))  # a new tensor
    with conv_adjoint("transpose"):
        expected = A.adjoint(y)
    torch.testing.assert_close(A.adjoint(y), expected)


def test_conv_adjoint_refuses_an_unknown_mode_and_restores_the_previous_one():
    A = _map("paper-1", torch.float32)
    y = torch.randn(2, *A.out_shape)
    with pytest.raises(ValueError, match="mode: expected one of .*'polyphase'.*got 'fast'"):
        with conv_adjoint("fast"):
            pass
    with conv_adjoint("transpose"):
        with conv_adjoint("polyphase"):
            A.adjoint(y)
        reference = A.adjoint(y)  # the outer mode again: conv_transpose2d
    torch.testing.assert_close(reference, torch.nn.functional.conv_transpose2d(
        y, A.modules[0].weight, None, 2, 1, output_padding=0), rtol=0, atol=0)


def test_polyphase_adjoint_is_differentiable_and_works_in_inference_mode():
    A = _map("paper-1")
    with conv_adjoint("polyphase"):
        y = torch.randn(2, *A.out_shape, dtype=F64, requires_grad=True)
        A.adjoint(y).square().sum().backward()  # through y and the weight
        assert y.grad is not None and A.modules[0].weight.grad is not None
        with torch.inference_mode():
            y_inf = torch.randn(2, *A.out_shape, dtype=F64)
            out = A.adjoint(y_inf)
    with torch.no_grad(), conv_adjoint("transpose"):
        torch.testing.assert_close(out, A.adjoint(y_inf))


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
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
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
