"""Speed and scale of lbinv, measured side by side in one process (issue 10).

    python benchmarks/run.py --quick --json benchmarks/results_cpu.json
    python benchmarks/run.py --device cuda --json benchmarks/results_cuda.json

Every headline figure is a ratio of two timings taken in this run, interleaved round by round and
reduced by the median, so that it holds on a loaded machine; the raw timings behind each ratio are
in ``details``. Keys (see the README, "Performance"):

- ``batched_speedup``: images/s of one batched ``invert`` of 64 noisy conv-AE codes / the same 64
  solved one by one, same number of sweeps (``tol=0``).
- ``iteration_overhead``: seconds of one coordinate-descent sweep / seconds of the bare affine
  forward + adjoint of every layer (the floor of any first-order method), batch 64.
- ``speedup_vs_clarabel``: seconds of CVXPY + Clarabel on a single-layer TV inversion (32×32 image,
  256 ReLU measurements) / seconds for ``invert`` to come within 1e−4 (relative) of its optimum;
  ``details.clarabel.batch`` does the same for a batch of problems (Clarabel one by one).
- ``iterations_vs_paper_steps``: iterations to come within 1e−4 (absolute) of the optimum on the
  circle problem with the paper's step rule / with lbinv's default (a lower bound when the paper's
  rule does not get there within its budget).
- ``callback_overhead``: share of InversionCallback's wall time spent outside the batched solve, in a
  conv training run; ``details.callback`` adds its seconds per epoch, what ``every_n_epochs``,
  ``num_samples`` and warm starts (``x_init``) buy.
- ``memory_1024``: peak memory of a batch of 1,024 conv-AE inversions (a fresh subprocess).
- ``speed_changes``: sweep time with each speed change of issue 10 switched off, one at a time.

``--threads`` (default 1: with these small iterations one thread is fastest on a shared CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import lbinv.affine_ops as affine_ops  # noqa: E402
from lbinv import LiftedNetwork, invert  # noqa: E402
from lbinv.regularizers import TotalVariation, project_box  # noqa: E402
from lbinv.solvers.common import iterate, masked, sample_norm  # noqa: E402
from lbinv.solvers.coordinate_descent import CoordinateDescent  # noqa: E402
from lbinv.solvers.pdhg import bregman_gradient, single_layer_objective  # noqa: E402

GOALS = {
    "batched_speedup": ">= 8 (CPU), >= 50 (GPU)",
    "iteration_overhead": "<= 1.5",
    "speedup_vs_clarabel": ">= 5",
    "iterations_vs_paper_steps": ">= 5",
    "callback_overhead": "<= 0.15",
    "memory_1024": "peak < 2 GiB (CPU)",
}


# ----------------------------------------------------------------------------------- helpers


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, rounds: int) -> dict[str, float]:
    """Median seconds of each function, run round-robin (one warm-up call each first)."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(timed(fn, device))
    return {name: statistics.median(v) for name, v in samples.items()}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine(device: torch.device, threads: int) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def conv_problem(batch: int, device: torch.device, sigma: float = 0.1, seed: int = 0, images: str = "mnist-5k"):
    """The paper's conv AE (seeded init), ``batch`` images (the bundled MNIST digits, or uniform
    noise with ``images="random"``) and their noisy codes ``clip₊(E(x) + σ N(0, 1))``. Timings with
    a fixed number of sweeps do not depend on the training state."""
    from lbinv.models import ConvAutoencoder  # imports Lightning: not at the top (the memory child avoids it)

    torch.manual_seed(seed)
    ae = ConvAutoencoder().to(device).eval()
    if images == "random":
        x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    else:
        from lbinv.data import load_mnist_5k

        digits, _ = load_mnist_5k()
        x = digits[:batch].float() / 255.0
        if x.shape[0] < batch:
            x = x.repeat(math.ceil(batch / x.shape[0]), 1, 1, 1)[:batch]
    x = x.to(device)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        code = ae.encoder(x)
        noisy = (code + sigma * torch.randn(code.shape, generator=g).to(device)).clamp_min(0.0)
    net = LiftedNetwork.from_module(ae.encoder, (1, 28, 28))
    return ae, net, x, noisy


# ----------------------------------------------------------------------------------- batched


def bench_batched(device: torch.device, sweeps: int, rounds: int) -> dict[str, Any]:
    _, net, _, y = conv_problem(64, device)
    opts = dict(alpha=9e-3, max_iter=sweeps, tol=0.0)

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


# ----------------------------------------------------------------------------------- overhead


class LegacyCoordinateDescent(CoordinateDescent):
    """The sweep as it was before issue 10's speed work, for the ``speed_changes`` comparison:
    every forward recomputed (5 instead of 3 per sweep on the conv AE), the unfused PDHG update and
    masks applied at every step."""

    accepts_all_active = False

    def _input_update(self, x, z, grad_f, active):
        u, tv = self.input_step, self.tv
        x_new = project_box(x - u.tau_x * (grad_f - u.alpha * tv.div(z)), u.bounds)
        x_new = masked(active, x_new, x)
        ascent = (u.tau_z * u.alpha).unsqueeze(1) * tv.grad(2.0 * x_new - x)
        p = z + ascent
        norm = torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2).clamp_min(1.0)
        return x_new, masked(active, p / norm.unsqueeze(1), z)

    def step(self, active, measure):
        layers = self.net.layers
        x_old, z_old = self.x, self.z
        self.x, self.z = self._input_update(x_old, z_old, bregman_gradient(layers[0], x_old, self._data(1)), active)
        moved = self.input_step.change(self.x, x_old, self.z, z_old) if measure else None
        below = self.x
        for l in range(1, len(layers)):
            x_l, tau = self.hidden[l - 1], self.hidden_steps[l - 1]
            g = bregman_gradient(layers[l], x_l, self._data(l + 1))
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

        def sweep(cls=CoordinateDescent, adjoint="auto", mask_skip=True, sweeps=sweeps):
            def run():
                previous = affine_ops.CONV_ADJOINT
                affine_ops.CONV_ADJOINT = adjoint
                try:
                    with torch.no_grad():
                        solver = cls(net, y, alpha, tv, None, 0.0, torch.zeros_like(x), "balanced", 32.0, "forward")
                        if not mask_skip:
                            solver.accepts_all_active = False
                        if sweeps:
                            iterate(solver, batch, device, sweeps, 10)
                finally:
                    affine_ops.CONV_ADJOINT = previous

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
            "sweep_legacy_update": sweep(cls=LegacyCoordinateDescent),
            "sweep_before_issue_10": sweep(cls=LegacyCoordinateDescent, adjoint="transpose"),
        }
        if device.type != "cpu":  # the polyphase adjoint is a CPU/float32 change; measure it there too
            fns["sweep_polyphase_adjoint"] = sweep(adjoint="polyphase")
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
    return out


def bench_compile(device: torch.device, sweeps: int, rounds: int) -> dict[str, Any]:
    """torch.compile of one sweep against eager (not in --quick: compiling takes minutes here)."""
    _, net, x, y = conv_problem(64, device)
    alpha = torch.full((64,), 9e-3, device=device)
    with torch.no_grad():
        solver = CoordinateDescent(net, y, alpha, TotalVariation(), None, 0.0, torch.zeros_like(x), "balanced", 32.0, "forward")
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


# ----------------------------------------------------------------------------------- clarabel


def bench_clarabel(device: torch.device, rounds: int, batch: int, gap: float = 1e-4, max_iter: int = 64_000) -> dict[str, Any]:
    """One problem: Clarabel vs ``invert`` to the gap. Then ``batch`` problems (other noise draws):
    one Clarabel solve each vs one batched ``invert`` until every problem is within the gap."""
    import cvxpy as cp
    import numpy as np
    import scipy.sparse as sp
    from torch import nn

    size, m, alpha, seed = 32, 256, 1.5e-2, 0
    torch.manual_seed(seed)
    layer = nn.Linear(size * size, m).double()
    grid = torch.linspace(-1, 1, size, dtype=torch.float64)
    X, Y = torch.meshgrid(grid, grid, indexing="xy")
    x_true = ((X**2 + Y**2) <= 0.25).double().reshape(1, 1, size, size)
    with torch.no_grad():
        clean = torch.relu(layer(x_true.flatten(1)))
        ys = torch.cat([(clean + 0.005 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(s), dtype=torch.float64))
                        .clamp_min(0.0) for s in range(batch)])
    model = nn.Sequential(layer, nn.ReLU())

    # CVXPY: B(y, Wx + b) = ½‖y‖² + ½‖max(z, 0)‖² − ⟨y, z⟩ for y ≥ 0, + α TV_iso(x)
    W, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    d1 = sp.diags([-np.ones(size), np.ones(size - 1)], [0, 1], shape=(size, size)).tolil()
    d1[-1, -1] = 0.0  # Neumann: no difference out of the last row
    d1 = d1.tocsr()
    eye = sp.identity(size, format="csr")
    dv, dh = sp.kron(d1, eye).tocsr(), sp.kron(eye, d1).tocsr()  # row-major image: rows, columns

    def clarabel(i: int = 0):
        yn = ys[i].numpy()
        xv = cp.Variable(size * size)
        z = W @ xv + b
        fit = 0.5 * float(yn @ yn) + 0.5 * cp.sum_squares(cp.pos(z)) - yn @ z
        tv = cp.sum(cp.norm(cp.vstack([dv @ xv, dh @ xv]), 2, axis=0))
        problem = cp.Problem(cp.Minimize(fit + alpha * tv))
        problem.solve(solver=cp.CLARABEL)
        return xv.value, problem

    net = LiftedNetwork.from_module(model, (1, size, size))
    net_dev = LiftedNetwork.from_module(copy.deepcopy(model).to(device), (1, size, size))
    tv = TotalVariation()

    def optimum(i: int, x_opt) -> float:  # lbinv's objective at Clarabel's solution
        return float(single_layer_objective(net.layers[0], torch.from_numpy(x_opt).reshape(1, 1, size, size),
                                            ys[i : i + 1], torch.tensor([alpha], dtype=torch.float64), tv))

    def sweeps_to_gap(y_dev, f_star: torch.Tensor) -> int | None:
        budget = 1000
        while True:  # a growing budget
            hist = invert(net_dev, y_dev, alpha=alpha, max_iter=budget, tol=0.0, record_history=True, check_every=10)
            rel = (hist.history["objective"].cpu() - f_star) / f_star.abs()  # (checks, B)
            hit = torch.nonzero((rel <= gap).all(dim=1))
            if hit.numel():
                return hist.history["iteration"][int(hit[0])]
            if budget >= max_iter:
                return None
            budget *= 4

    # one problem
    x_opt, problem = clarabel(0)
    f_star = optimum(0, x_opt)
    y0 = ys[:1].to(device)
    k = sweeps_to_gap(y0, torch.tensor([f_star]))
    if k is None:
        return {"reached": False, "max_iter": max_iter}

    def lbinv_run():
        return invert(net_dev, y0, alpha=alpha, max_iter=k, tol=0.0, check_every=k)

    final = float(lbinv_run().objective[0])
    default = invert(net_dev, y0, alpha=alpha)
    t = interleaved({"clarabel": clarabel, "lbinv": lbinv_run, "lbinv_default_stop": lambda: invert(net_dev, y0, alpha=alpha)},
                    device, rounds)
    out = {
        "problem": f"{size}x{size} disc, Linear({size * size}, {m}) + ReLU (default init, seed 0), noise 0.005, "
                   f"alpha={alpha}, float64",
        "optimum_clarabel": f_star,
        "clarabel_status": problem.status,
        "clarabel_solver_seconds": problem.solver_stats.solve_time,
        "seconds_clarabel_solve": t["clarabel"],
        "iterations_to_gap": k,
        "relative_gap_reached": (final - f_star) / abs(f_star),
        "seconds_lbinv_to_gap": t["lbinv"],
        "speedup": t["clarabel"] / t["lbinv"],
        "speedup_vs_clarabel_solver_time_only": problem.solver_stats.solve_time / t["lbinv"],
        "default_stop_iterations": int(default.iterations[0]),
        "default_stop_relative_gap": (float(default.objective[0]) - f_star) / abs(f_star),
        "seconds_lbinv_default_stop": t["lbinv_default_stop"],
        "gap": gap,
    }

    # a batch of problems: Clarabel one by one, invert in one call
    seconds, optima = [], []
    for i in range(batch):
        start = time.perf_counter()
        x_i, _ = clarabel(i)
        seconds.append(time.perf_counter() - start)
        optima.append(optimum(i, x_i))
    y_dev = ys.to(device)
    k_all = sweeps_to_gap(y_dev, torch.tensor(optima))
    if k_all is not None:
        t_batch = interleaved({"lbinv": lambda: invert(net_dev, y_dev, alpha=alpha, max_iter=k_all, tol=0.0, check_every=k_all)},
                              device, rounds)["lbinv"]
        out["batch"] = {"problems": batch, "seconds_clarabel_one_by_one": sum(seconds), "iterations_to_gap_all": k_all,
                        "seconds_lbinv_batched": t_batch, "speedup": sum(seconds) / t_batch}
    return out


# ----------------------------------------------------------------------------------- circle


def bench_paper_steps(device: torch.device, max_default: int, max_paper: int, gap: float = 1e-4) -> dict[str, Any]:
    from circle import make_problem

    perceptron, _, _, y_delta = make_problem(64, 512, 0.005, 0, str(device), torch.float64)
    opts = dict(alpha=1.5e-2, input_shape=(1, 64, 64), tol=0.0, record_history=True)
    start = time.perf_counter()
    default = invert(perceptron, y_delta, max_iter=max_default, check_every=10, **opts)
    seconds_default = time.perf_counter() - start
    start = time.perf_counter()
    paper = invert(perceptron, y_delta, max_iter=max_paper, step_rule="paper", check_every=50, **opts)
    seconds_paper = time.perf_counter() - start
    histories = {"default": default.history, "paper": paper.history}
    f_star = min(float(h["objective"].min()) for h in histories.values())

    def first(h, threshold):
        hit = torch.nonzero(h["objective"][:, 0].cpu() - f_star <= threshold)
        return None if hit.numel() == 0 else h["iteration"][int(hit[0])]

    k_default, k_paper = first(histories["default"], gap), first(histories["paper"], gap)
    rel = {name: first(h, gap * abs(f_star)) for name, h in histories.items()}
    ratio = (k_paper if k_paper is not None else max_paper) / k_default if k_default else None
    return {
        "problem": "circle (experiments/circle.py make_problem: 64x64 disc, Linear(4096, 512) + ReLU, seed 0), alpha 1.5e-2",
        "optimum": f_star,
        "gap_absolute": gap,
        "iterations_default": k_default,
        "iterations_paper": k_paper,
        "paper_budget": max_paper,
        "ratio_is_lower_bound": k_paper is None,
        "ratio": ratio,
        "iterations_relative_gap": rel,
        "seconds_default_run": seconds_default,
        "seconds_paper_run": seconds_paper,
        "iterations_run": {"default": max_default, "paper": max_paper},
        "checked_every": {"default": 10, "paper": 50},
    }


# ----------------------------------------------------------------------------------- callback


def bench_callback(device: torch.device, epochs: int, quick: bool, work: Path) -> dict[str, Any]:
    """A conv training run (experiments/configs/conv.yaml settings on the bundled digits) with the
    default InversionCallback; timings of its hooks and of the solver inside them."""
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    import lbinv.callbacks as callbacks
    from lbinv.callback_inversion import invert_probe
    from lbinv.data import MNISTDataModule
    from lbinv.models import AutoencoderModule

    solve_seconds: list[float] = []
    real_invert = callbacks.invert

    def timed_invert(*args, **kwargs):
        start = time.perf_counter()
        result = real_invert(*args, **kwargs)
        sync(device)
        solve_seconds.append(time.perf_counter() - start)
        return result

    class TimedInversionCallback(callbacks.InversionCallback):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hook_seconds: list[float] = []
            self._batch_hooks = 0.0

        def on_validation_batch_end(self, *args, **kwargs):
            start = time.perf_counter()
            super().on_validation_batch_end(*args, **kwargs)
            self._batch_hooks += time.perf_counter() - start

        def on_validation_epoch_end(self, trainer, pl_module):
            start = time.perf_counter()
            super().on_validation_epoch_end(trainer, pl_module)
            sync(device)
            if not trainer.sanity_checking:
                self.hook_seconds.append(time.perf_counter() - start + self._batch_hooks)
            self._batch_hooks = 0.0

    class EpochClock(Callback):
        def __init__(self):
            self.train, self.snapshots = [], []

        def on_train_epoch_start(self, trainer, pl_module):
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.train.append(time.perf_counter() - self._start)

        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.snapshots.append(copy.deepcopy(pl_module.net.encoder).eval())

    torch.manual_seed(0)
    module = AutoencoderModule(net="conv", code_dim=300, code_activation="relu", optimizer="sgd", lr=0.3, momentum=0.9)
    data = MNISTDataModule(dataset="mnist-5k", batch_size=32)
    inversion = TimedInversionCallback()  # the defaults: 5 noise levels x 16 images, alpha 1e-2, 1,500 sweeps
    clock = EpochClock()
    trainer = Trainer(
        max_epochs=epochs,
        limit_train_batches=140,
        limit_val_batches=16,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=TensorBoardLogger(work / "logs", name="bench"),
        callbacks=[inversion, clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=50,
    )
    callbacks.invert = timed_invert
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            trainer.fit(module, datamodule=data)
            fit_seconds = time.perf_counter() - start
    finally:
        callbacks.invert = real_invert
    hooks, solves = inversion.hook_seconds, solve_seconds
    share = [(h - s) / h for h, s in zip(hooks, solves)]
    result: dict[str, Any] = {
        "run": f"conv AE, SGD lr 0.3 momentum 0.9, mnist-5k, 140 train / 16 val batches of 32, {epochs} epochs; "
               "InversionCallback defaults (5 noise levels x 16 images, alpha 1e-2, max_iter 1500, tol 1e-5)",
        "callback_seconds_per_epoch": hooks,
        "solve_seconds_per_epoch": solves,
        "overhead_share_per_epoch": share,
        "overhead_share": statistics.median(share),
        "train_epoch_seconds": clock.train,
        "fit_seconds": fit_seconds,
        "callback_share_of_fit": sum(hooks) / fit_seconds,
    }
    mean_callback = statistics.mean(hooks)
    result["every_n_epochs"] = {  # derived: the callback runs on one epoch in n
        str(n): {"callback_seconds_per_epoch": mean_callback / n,
                 "share_of_epoch": (mean_callback / n) / (statistics.mean(clock.train) + mean_callback / n)}
        for n in (1, 2, 5, 10)
    }

    # num_samples and warm starts: the callback's own pipeline, on the encoders of the last two epochs
    sizes = (4, 16) if quick else (4, 16, 64)
    x_probe = torch.stack([data.val_set[i][0] for i in range(max(sizes))]).to(device)
    decoder = module.net.decoder.to(device).eval()
    levels = inversion.noise_levels
    alphas = torch.full((len(levels), 1), 1e-2, dtype=torch.float64)

    def probe(encoder, n, solve):
        with torch.no_grad():
            return invert_probe(encoder.to(device), decoder, x_probe[:n], noise_levels=levels, alphas=alphas, seed=0,
                                offset=0, n=n, data_range=(0.0, 1.0), solve=solve)

    base = partial(invert, max_iter=1500, tol=1e-5)
    per_size = {}
    for n in sizes:
        out = probe(clock.snapshots[-1], n, base)
        per_size[str(n)] = {"batch": n * len(levels), "solve_seconds": float(out["seconds"]),
                            "mean_iterations": float(out["iterations"].mean()),
                            "seconds_per_image": float(out["seconds"]) / (n * len(levels))}
    result["num_samples"] = per_size
    if len(clock.snapshots) >= 2:
        # the probe's noisy codes at the last epoch, solved from zero and from the previous epoch's
        # solution; objective histories tell how many sweeps the warm start needs to match the cold
        # start's final objective
        n, runs = 16, {}

        def recording(name, **extra):
            def solve(net, data, **kwargs):
                runs[name] = invert(net, data, max_iter=1500, tol=1e-5, record_history=True, **extra, **kwargs)
                return runs[name]
            return solve

        previous = probe(clock.snapshots[-2], n, base)
        x_prev = previous["x_inv"].reshape(-1, *x_probe.shape[1:])
        cold = probe(clock.snapshots[-1], n, recording("cold"))
        warm = probe(clock.snapshots[-1], n, recording("warm", x_init=x_prev))
        target = runs["cold"].objective.cpu()  # (B,) after the cold run's sweeps
        hist = runs["warm"].history
        reached = hist["objective"].cpu() <= target.unsqueeze(0)  # (checks, B)
        first = torch.where(reached.any(0), reached.float().argmax(0), torch.full_like(target, -1).long())
        sweeps = torch.tensor(hist["iteration"], dtype=torch.float64)[first.clamp_min(0)]
        sweeps[first < 0] = math.inf  # not within the budget
        median = float(sweeps.sort().values[len(sweeps) // 2])
        result["warm_start"] = {
            "epochs": [len(clock.snapshots) - 2, len(clock.snapshots) - 1],
            "cold": {"seconds": float(cold["seconds"]), "mean_iterations": float(cold["iterations"].mean()),
                     "mean_psnr": float(cold["psnr_inv"].mean()), "mean_objective": float(target.mean())},
            "warm": {"seconds": float(warm["seconds"]), "mean_iterations": float(warm["iterations"].mean()),
                     "mean_psnr": float(warm["psnr_inv"].mean()), "mean_objective": float(runs["warm"].objective.mean())},
            "warm_sweeps_to_cold_objective_median": median if math.isfinite(median) else None,
            "share_of_samples_reaching_it": float((first >= 0).double().mean()),
            "sweep_saving_median": float(runs["cold"].iterations.double().median()) / median,
            "note": "x_init = the previous epoch's solution of the same noisy codes (InversionCallback does not "
                    "warm-start yet); sweeps counted at checks every 10 sweeps",
        }
    return result


# ----------------------------------------------------------------------------------- memory


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(device_name: str, sweeps: int, batch: int) -> None:
    """Run in a fresh process (which imports torch and lbinv's numerical core, not Lightning): peak
    memory of one batched inversion of the conv AE's codes, printed as JSON. The resident set is
    sampled every millisecond by a thread during the solve (torch releases the GIL in its kernels)."""
    import threading

    from torch import nn

    device = torch.device(device_name)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(784, 300), nn.ReLU()).to(device).eval()  # the paper's conv encoder
    with torch.no_grad():
        y = encoder(torch.rand(batch, 1, 28, 28, device=device))
    net = LiftedNetwork.from_module(encoder, (1, 28, 28))
    for layer in net.layers:
        layer.affine.opnorm()
    invert(net, y[:2], alpha=9e-3, max_iter=2, tol=0.0)  # warm-up: lazy initialisations
    before = _rss_bytes()
    peak, running = [before], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device)
    thread.start()
    start = time.perf_counter()
    res = invert(net, y, alpha=9e-3, max_iter=sweeps, tol=0.0)
    sync(device)
    seconds = time.perf_counter() - start
    running[0] = False
    thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    out = {"batch": batch, "sweeps": sweeps, "seconds": seconds, "seconds_per_sweep": seconds / sweeps,
           "rss_before_solve_bytes": before, "peak_rss_during_solve_bytes": peak[0],
           "solve_rss_increase_bytes": peak[0] - before,
           "iterations": int(res.iterations.max())}
    if device.type == "cuda":
        out["cuda_peak_allocated_increase_bytes"] = torch.cuda.max_memory_allocated(device) - base_cuda
    print("MEMORY_JSON " + json.dumps(out))


def bench_memory(device: torch.device, threads: int, sweeps: int, batch: int = 1024) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--memory-child", "--device", str(device), "--threads", str(threads),
           "--memory-sweeps", str(sweeps)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY_JSON ")), None)
    if line is None:
        raise RuntimeError(f"memory subprocess failed:\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(line.removeprefix("MEMORY_JSON "))
    out["peak_rss_during_solve_gib"] = out["peak_rss_during_solve_bytes"] / 2**30
    out["solve_rss_increase_mib"] = out["solve_rss_increase_bytes"] / 2**20
    out["fits_2_gib"] = out["peak_rss_during_solve_bytes"] < 2 * 2**30
    out["method"] = ("fresh process (Python, torch, lbinv's core; no Lightning): its whole resident set sampled every "
                     "ms during the solve (ru_maxrss is not used: a child inherits the parent's high-water mark)")
    return out


# ----------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller budgets: under 10 minutes on a 2-core CPU")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cuda: unmeasured so far)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--with-compile", action="store_true", help="also measure torch.compile of a sweep (minutes)")
    parser.add_argument("--skip", nargs="*", default=[], help="sections to skip (batched overhead clarabel circle callback memory)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--memory-sweeps", type=int, default=20, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.memory_child:
        memory_child(str(device), args.memory_sweeps, 1024)
        return {}
    q = args.quick
    results: dict[str, Any] = {"machine": machine(device, args.threads), "quick": q, "goals": GOALS, "details": {}}
    details = results["details"]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if "batched" not in args.skip:
            log("batched vs one by one")
            details["batched"] = bench_batched(device, sweeps=30 if q else 100, rounds=3 if q else 5)
            results["batched_speedup"] = details["batched"]["speedup"]
        if "overhead" not in args.skip:
            log("sweep vs floor, speed changes")
            details["overhead"] = bench_overhead(device, sweeps=20 if q else 50, rounds=5 if q else 9,
                                                 batches=(64, 1) if q else (64, 1, 1024))
            results["iteration_overhead"] = details["overhead"]["batch_64"]["iteration_overhead"]
            results["speed_changes"] = {k: v["gain"] for k, v in details["overhead"].items()}
        if args.with_compile:
            log("torch.compile")
            details["compile"] = bench_compile(device, sweeps=20, rounds=5)
            results.setdefault("speed_changes", {})["torch_compile"] = details["compile"]["gain"]
        if "clarabel" not in args.skip:
            log("CVXPY/Clarabel vs invert")
            details["clarabel"] = bench_clarabel(device, rounds=3 if q else 5, batch=8 if q else 32)
            results["speedup_vs_clarabel"] = details["clarabel"].get("speedup")
        if "circle" not in args.skip:
            log("paper step rule vs default on the circle problem")
            details["paper_steps"] = bench_paper_steps(device, max_default=4000 if q else 20_000,
                                                       max_paper=12_000 if q else 40_000)
            results["iterations_vs_paper_steps"] = details["paper_steps"]["ratio"]
        if "callback" not in args.skip:
            log("InversionCallback in a conv training run")
            details["callback"] = bench_callback(device, epochs=2 if q else 3, quick=q, work=Path(tmp))
            results["callback_overhead"] = details["callback"]["overhead_share"]
        if "memory" not in args.skip:
            log("memory of 1,024 inversions (subprocess)")
            results["memory_1024"] = bench_memory(device, args.threads, sweeps=10 if q else 50)
    results["machine"]["load_average_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - started
    summary = {k: results.get(k) for k in ("batched_speedup", "iteration_overhead", "speedup_vs_clarabel",
                                            "iterations_vs_paper_steps", "callback_overhead")}
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))
        log(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
