"""Solver speed: one batched solve against the same problems one by one, a sweep against the floor
of its affine passes, and the sweep with each speed change of issue 10 switched off."""

from __future__ import annotations

import time
from typing import Any

import torch

from timing import conv_problem, interleaved

from lbinv import invert
from lbinv.operators import conv_adjoint
from lbinv.regularizers import TotalVariation, project_box
from lbinv.solvers.loop import Problem, iterate, masked, sample_norm
from lbinv.solvers.coordinate_descent import CoordinateDescent


def bench_batched(device: torch.device, sweeps: int, rounds: int) -> dict[str, Any]:
    _, net, _, y = conv_problem(64, device)
    opts = dict(alpha=9e-3, max_iter=sweeps, tol=0.0, solver="pdhg")  # the paper's sweep, as measured in the README

    def batched():
        res = invert(net, y, **opts)
        assert bool((res.iterations == sweeps).all())

    def one_by_one():
        for i in range(y.shape[0]):
            invert(net, y[i : i + 1], **opts)

    t = interleaved({"batched": batched, "one_by_one": one_by_one}, device, rounds)
    return {
        "batch": 64,
        "sweeps": sweeps,
        "seconds_batched": t["batched"],
        "seconds_one_by_one": t["one_by_one"],
        "images_per_second_batched": 64 / t["batched"],
        "images_per_second_one_by_one": 64 / t["one_by_one"],
        "speedup": t["one_by_one"] / t["batched"],
    }




def _gradient(layer, x, data):
    """``Wᵀ(σ(Wx + b) − data)``, as the legacy sweep computed it."""
    return layer.affine.adjoint(layer.activation(layer.affine.forward(x)) - data)


class LegacyCoordinateDescent(CoordinateDescent):
    """The sweep as it was before issue 10's speed work, for the ``speed_changes`` comparison:
    every forward recomputed (5 instead of 3 per sweep on the conv AE), the unfused PDHG update and
    masks applied at every step (time it with ``skip_masks=False``)."""

    def _input_update(self, x, z, grad_f, active):
        u, tv = self.primal_dual, self.tv
        x_new = project_box(x - u.tau_x * (grad_f - u.alpha * tv.div(z)), u.bounds)
        x_new = masked(active, x_new, x)
        ascent = (u.tau_z * u.alpha).unsqueeze(1) * tv.grad(2.0 * x_new - x)
        p = z + ascent
        norm = torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2).clamp_min(1.0)
        return x_new, masked(active, p / norm.unsqueeze(1), z)

    def step(self, active, measure):
        layers = self.net.layers
        x_old, z_old = self.x, self.z
        self.x, self.z = self._input_update(x_old, z_old, _gradient(layers[0], x_old, self._target(0)), active)
        moved = self.primal_dual.change(self.x, x_old, self.z, z_old) if measure else None
        below = self.x
        for l in range(1, len(layers)):
            x_l, tau = self.hidden[l - 1], self.hidden_steps[l - 1]
            g = _gradient(layers[l], x_l, self._target(l))
            v = (x_l + tau * (layers[l - 1].affine.forward(below) - g)) / (1.0 + tau)
            new = masked(active, layers[l - 1].activation.prox(v, tau / (1.0 + tau)), x_l)
            if measure:
                moved = torch.maximum(moved, sample_norm(new - x_l))
            self.hidden[l - 1] = below = new
        if measure:
            self.last_change = moved
        return active


def bench_overhead(device: torch.device, sweeps: int, rounds: int, batches: tuple[int, ...]) -> dict[str, Any]:
    """Sweep time against the floor, and the sweep with each speed change switched off."""
    out: dict[str, Any] = {}
    for batch in batches:
        _, net, x, y = conv_problem(batch, device)
        alpha = torch.full((batch,), 9e-3, device=device)
        tv = TotalVariation()

        def sweep(cls=CoordinateDescent, adjoint="auto", mask_skip=True, sweeps=sweeps, tf32=True):
            def run():
                previous = torch.backends.cudnn.allow_tf32
                torch.backends.cudnn.allow_tf32 = tf32
                try:
                    with torch.no_grad(), conv_adjoint(adjoint):
                        solver = cls(net, Problem(y, alpha, tv, None, 0.0, torch.zeros_like(x)), "balanced", 32.0, "forward")
                        if sweeps:
                            iterate(solver, batch, device, sweeps, 10, skip_masks=mask_skip)
                finally:
                    torch.backends.cudnn.allow_tf32 = previous

            return run

        # the floor: one forward and one adjoint of every layer, by the same operators
        inputs = [x, *net.forward_all(x)[:-1]]
        residuals = [torch.randn(batch, *layer.affine.out_shape, device=device) for layer in net.layers]

        def floor():
            with torch.no_grad():
                for _ in range(sweeps):
                    for layer, inp, res in zip(net.layers, inputs, residuals):
                        layer.affine.forward(inp)
                        layer.affine.adjoint(res)

        fns = {
            "setup": sweep(sweeps=0),  # building the solver (subtracted from the sweep timings)
            "sweep": sweep(),
            "floor": floor,
            "sweep_conv_transpose_adjoint": sweep(adjoint="transpose"),
            "sweep_without_mask_skip": sweep(mask_skip=False),
            "sweep_legacy_update": sweep(cls=LegacyCoordinateDescent, mask_skip=False),
            "sweep_before_issue_10": sweep(cls=LegacyCoordinateDescent, adjoint="transpose", mask_skip=False),
        }
        if device.type != "cpu":  # the polyphase adjoint is a CPU/float32 change; measure it there too
            fns["sweep_polyphase_adjoint"] = sweep(adjoint="polyphase")
        if device.type == "cuda":  # cuDNN's default TF32 convolutions against IEEE float32 ones
            fns["sweep_ieee_float32"] = sweep(tf32=False)
        t = interleaved(fns, device, rounds)
        setup = t.pop("setup")
        per = {name: (seconds if name == "floor" else seconds - setup) / sweeps for name, seconds in t.items()}
        out[f"batch_{batch}"] = {
            "sweeps_timed": sweeps,
            "seconds_solver_setup": setup,
            "seconds_per_sweep": per,
            "iteration_overhead": per["sweep"] / per["floor"],
            "gain": {
                "polyphase_conv_adjoint": per["sweep_conv_transpose_adjoint"] / per["sweep"],
                "mask_skip_while_all_active": per["sweep_without_mask_skip"] / per["sweep"],
                "cached_forwards_and_fused_updates": per["sweep_legacy_update"] / per["sweep"],
                "all_of_issue_10": per["sweep_before_issue_10"] / per["sweep"],
            },
        }
        if "sweep_polyphase_adjoint" in per:  # > 1: the polyphase adjoint would pay on this device too
            out[f"batch_{batch}"]["gain"]["polyphase_if_enabled_here"] = per["sweep"] / per["sweep_polyphase_adjoint"]
        if "sweep_ieee_float32" in per:  # what exact float32 convolutions cost against TF32 ones
            out[f"batch_{batch}"]["gain"]["tf32_convolutions"] = per["sweep_ieee_float32"] / per["sweep"]
    return out


def bench_compile(device: torch.device, sweeps: int, rounds: int) -> dict[str, Any]:
    """torch.compile of one sweep against eager (not in --quick: compiling takes minutes here)."""
    _, net, x, y = conv_problem(64, device)
    alpha = torch.full((64,), 9e-3, device=device)
    with torch.no_grad():
        problem = Problem(y, alpha, TotalVariation(), None, 0.0, torch.zeros_like(x))
        solver = CoordinateDescent(net, problem, "balanced", 32.0, "forward")
        eager = solver.step
        start = time.perf_counter()
        compiled = torch.compile(solver.step)
        compiled(None, False)
        compiled(None, True)
        compile_seconds = time.perf_counter() - start

        def loop(step):
            def run():
                with torch.no_grad():
                    for k in range(sweeps):
                        step(None, (k + 1) % 10 == 0)

            return run

        t = interleaved({"eager": loop(eager), "compiled": loop(compiled)}, device, rounds)
    return {"compile_seconds": compile_seconds, "seconds_per_sweep": {k: v / sweeps for k, v in t.items()},
            "gain": t["eager"] / t["compiled"]}


def bench_cuda_graph(device: torch.device, sweeps: int, rounds: int, chunk: int = 10) -> dict[str, Any]:
    """CUDA only: ``chunk`` coordinate-descent sweeps captured in one CUDA graph and replayed, against
    the same sweeps launched one kernel at a time. A gain > 1 says a CUDA-graph path for fixed-size
    loops would pay (lbinv has none yet). The graph advances the solver state in place: it runs
    ``chunk`` sweeps from the static state tensors and copies the result back into them."""
    _, net, x, y = conv_problem(64, device)
    alpha = torch.full((64,), 9e-3, device=device)
    with torch.no_grad():
        solver = CoordinateDescent(net, Problem(y, alpha, TotalVariation(), None, 0.0, torch.zeros_like(x)),
                                   "balanced", 32.0, "forward")
        n_hidden = len(solver.hidden)

        def state() -> list[torch.Tensor]:
            return [solver.x, solver.z, *solver.hidden, *solver.pre]

        def load(tensors: list[torch.Tensor]) -> None:
            solver.x, solver.z = tensors[0], tensors[1]
            solver.hidden, solver.pre = list(tensors[2 : 2 + n_hidden]), list(tensors[2 + n_hidden :])

        def sweep(n: int) -> None:
            for _ in range(n):
                solver.step(None, False)

        start_state = [t.clone() for t in state()]
        static = [t.clone() for t in start_state]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up off the capture stream, as torch.cuda.graph asks
            load(static)
            sweep(3)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        load(static)
        with torch.cuda.graph(graph):
            sweep(chunk)
            for target, value in zip(static, state()):
                target.copy_(value)

        # the graph computes what the eager sweeps compute
        load([t.clone() for t in start_state])
        sweep(chunk)
        eager_x = solver.x.clone()
        for target, value in zip(static, start_state):
            target.copy_(value)
        graph.replay()
        torch.cuda.synchronize(device)
        difference = float((static[0] - eager_x).abs().max())

        def eager():
            load([t.clone() for t in start_state])
            sweep(sweeps)

        def graphed():
            for _ in range(sweeps // chunk):
                graph.replay()

        t = interleaved({"eager": eager, "graphed": graphed}, device, rounds)
    return {"sweeps": sweeps, "sweeps_per_graph": chunk, "seconds_per_sweep": {k: v / sweeps for k, v in t.items()},
            "max_difference_after_one_graph": difference, "gain": t["eager"] / t["graphed"]}
