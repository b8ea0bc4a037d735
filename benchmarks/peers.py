"""lbinv's one-layer solvers against peer libraries on the paper's circle problem (issue 18).

    python benchmarks/peers.py --quick --json benchmarks/results_peers_cpu.json   # 32×32 only
    python benchmarks/peers.py --json benchmarks/results_peers_cpu.json           # 32×32 and 64×64

Problem: ``min_x B_ReLU(y, Wx + b) + α TV_iso(x)``, the circle of ``experiments/circle.py``
(``make_problem``: disc, ``nn.Linear(n², m)`` + ReLU with PyTorch's default init under seed 0,
noise 0.005, α = 1.5e−2), float64 on the CPU with one thread (``torch.set_num_threads(1)``).
Instances: 32×32 with ``Linear(1024, 256)`` and 64×64 with ``Linear(4096, 512)`` (the paper's).

Reference: CVXPY + Clarabel with gap tolerances 1e−8; ``F*`` is lbinv's objective at Clarabel's
solution. For every method: the first iteration whose objective is within 1e−4 and 1e−6
(relative) of ``F*`` (from one traced run), then the wall time of an untraced run of exactly that
many iterations (median of ``--rounds``). Each method is tuned over the small grid stated in
:data:`GRIDS` and its best setting (least time to 1e−6, else to 1e−4) is kept:

- ``lbinv_default``: ``invert`` with its defaults (the one-layer solver and step rule it picks);
- ``lbinv_pdhg``: PDHG, ``balance`` over the grid;
- ``lbinv_fista``: the new FISTA solver (``solver="fista"``), ``inner_steps`` over the grid;
  ``lbinv_fista_stop``: the same with its own stopping test at ``tol=1e−6`` (iterations, time and
  the relative gap it really reached);
- ``deepinv``: ``deepinv.optim.FISTA`` with a data-fidelity whose gradient is ``Wᵀ(σ(Wx + b) − y)`` and
  ``TVPrior`` (its Chambolle–Pock TV prox, warm-restarted), step ``1/‖W‖²``; inner iterations and
  inner primal step over the grid;
- ``pyproximal``: ``pyproximal.optimization.primaldual.PrimalDual`` (Chambolle–Pock) on
  ``g(Kx)``, ``K = [W; ∇]``, ``g = φ ⊕ α‖·‖_{2,1}`` (φ the ReLU Bregman term, a separable prox),
  ``f = 0``; the step ratio over the grid.

JSON keys per instance: ``speedup_vs_best_peer_1e-6`` (the best peer's seconds to 1e−6 / the best
lbinv method's), ``default_speedup_vs_best_peer_1e-6`` (the same for ``lbinv_default``, untuned) and
``speedup_vs_clarabel_1e-6`` (Clarabel's seconds / the best lbinv method's seconds to 1e−6); the
table is in ``methods``.

The batched comparison (16 α values in one call) is ``peers_batched.py``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from timing import log, machine, write_results  # first: it puts the repository on sys.path

from lbinv import LiftedNetwork, invert
from lbinv.regularizers import TotalVariation
from lbinv.solvers.data_term import LayerDataTerm

ALPHA, NOISE, SEED = 1.5e-2, 0.005, 0
TARGETS = {"1e-4": 1e-4, "1e-6": 1e-6}
INSTANCES = {"circle32": (32, 256), "circle64": (64, 512)}
GRIDS: dict[str, list[dict[str, Any]]] = {
    "lbinv_default": [{}],
    "lbinv_pdhg": [{"solver": "pdhg", "balance": b} for b in (8.0, 32.0, 128.0)],
    "lbinv_fista": [{"solver": "fista", "inner_steps": m} for m in (10, 20, 40)],
    "deepinv": [{"inner": n, "inner_tau": t} for n in (10, 20, 50) for t in (0.1, 0.3)],
    "pyproximal": [{"ratio": r} for r in (0.3, 1.0, 3.0)],
}
#: Iterations of each traced run (FISTA's inner steps grow to ``max_inner_steps`` in the tail: fewer outer ones).
BUDGETS = {"lbinv_default": 500, "lbinv_pdhg": 20_000, "lbinv_fista": 500, "deepinv": 600, "pyproximal": 10_000}


class Instance:
    """The circle problem of one size, its Clarabel reference and lbinv's objective."""

    def __init__(self, size: int, m: int) -> None:
        from circle import make_problem

        self.size, self.m = size, m
        perceptron, _, _, y = make_problem(size, m, NOISE, SEED, "cpu", torch.float64)
        self.module, self.y = perceptron, y
        self.net = LiftedNetwork.from_module(perceptron, (1, size, size))
        self.layer = self.net.layers[0]
        self.W, self.b = perceptron[0].weight.detach(), perceptron[0].bias.detach()
        self.alpha = torch.tensor([ALPHA], dtype=torch.float64)
        self.tv = TotalVariation()
        self.lip = (1.01 * self.layer.affine.opnorm()) ** 2

    @torch.no_grad()
    def objective(self, x: torch.Tensor, alpha: torch.Tensor | float | None = None) -> float:
        """lbinv's objective at one ``x``, at ``ALPHA`` or ``alpha``."""
        x = x.reshape(1, 1, self.size, self.size).to(torch.float64)
        a = self.alpha if alpha is None else torch.as_tensor(alpha, dtype=torch.float64).reshape(1)
        return float(LayerDataTerm(self.layer, self.y).objective(x, a, self.tv))

    def clarabel(self, alpha: float = ALPHA) -> dict[str, Any]:
        import cvxpy as cp
        import numpy as np
        import scipy.sparse as sp

        n = self.size
        W, b, yn = self.W.numpy(), self.b.numpy(), self.y[0].numpy()
        d1 = sp.diags([-np.ones(n), np.ones(n - 1)], [0, 1], shape=(n, n)).tolil()
        d1[-1, -1] = 0.0  # Neumann: no difference out of the last row
        d1 = d1.tocsr()
        eye = sp.identity(n, format="csr")
        dv, dh = sp.kron(d1, eye).tocsr(), sp.kron(eye, d1).tocsr()
        x = cp.Variable(n * n)
        z = W @ x + b
        fit = 0.5 * float(yn @ yn) + 0.5 * cp.sum_squares(cp.pos(z)) - yn @ z
        tv = cp.sum(cp.norm(cp.vstack([dv @ x, dh @ x]), 2, axis=0))
        problem = cp.Problem(cp.Minimize(fit + alpha * tv))
        start = time.perf_counter()
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-8, tol_gap_rel=1e-8, tol_feas=1e-8)
        seconds = time.perf_counter() - start
        self.f_star = self.objective(torch.from_numpy(x.value), alpha)
        return {"seconds": seconds, "solver_seconds": problem.solver_stats.solve_time, "status": problem.status,
                "optimum": self.f_star, "clarabel_value": problem.value}


# -- the methods: each returns (iterations, objectives) traced, and a runner of k iterations --------------


def lbinv_traced(inst: Instance, opts: dict[str, Any], budget: int) -> tuple[list[int], list[float]]:
    res = invert(inst.net, inst.y, alpha=ALPHA, max_iter=budget, tol=0.0, record_history=True, check_every=10, **opts)
    return list(res.history["iteration"]), res.history["objective"][:, 0].tolist()


def lbinv_runner(inst: Instance, opts: dict[str, Any]) -> Callable[[int], Any]:
    return lambda k: invert(inst.net, inst.y, alpha=ALPHA, max_iter=k, tol=0.0, check_every=10, **opts)


def deepinv_solver(inst: Instance, inner: int, inner_tau: float, max_iter: int, metrics: bool, alphas=None):
    """deepinv's FISTA on ``inst``; with ``alphas`` (B,) a batch of B problems (``inst.y`` repeated), one α each."""
    import deepinv as dinv

    W, b = inst.W, inst.b
    batch = 1 if alphas is None else len(alphas)
    y = inst.y.expand(batch, -1).clone()

    class ReLUBregman(dinv.optim.DataFidelity):
        """B_ReLU(y, Wx + b); its gradient Wᵀ(relu(Wx + b) − y) needs no derivative of ReLU."""

        def fn(self, x, y, physics, *args, **kwargs):
            z = torch.nn.functional.linear(x.flatten(1), W, b)
            return 0.5 * (y**2).sum(1) + 0.5 * (z.clamp_min(0) ** 2).sum(1) - (y * z).sum(1)

        def grad(self, x, y, physics, *args, **kwargs):
            z = torch.nn.functional.linear(x.flatten(1), W, b)
            return ((z.clamp_min(0) - y) @ W).reshape_as(x)

    prior = dinv.optim.TVPrior(def_crit=0.0, n_it_max=inner)
    prior.TVModel.tau = inner_tau
    custom = None
    if metrics:  # deepinv calls a metric once per sample, in batch order, without saying which
        calls = itertools.count()
        custom = {"objective": lambda _values, _prev, x: inst.objective(x, None if alphas is None else alphas[next(calls) % batch])}
    lam = ALPHA if alphas is None else [alphas.reshape(batch, 1, 1, 1)] * max_iter  # a tensor would read as one value per iteration
    model = dinv.optim.FISTA(data_fidelity=ReLUBregman(), prior=prior, lambda_reg=lam, stepsize=1.0 / inst.lip,
                             max_iter=max_iter, early_stop=False, custom_metrics=custom)
    if alphas is not None:
        model.has_cost = False  # its batched cost does not reduce to one number per sample (deepinv 0.5); not used
    physics = dinv.physics.Physics()
    x0 = torch.zeros(batch, 1, inst.size, inst.size, dtype=torch.float64)

    def run():
        prior.TVModel.restart, prior.TVModel.x2, prior.TVModel.u2 = True, None, None  # no warm state from a previous run
        with torch.no_grad():
            return model(y, physics, init=(x0, x0), compute_metrics=metrics)

    return run


def deepinv_traced(inst: Instance, opts: dict[str, Any], budget: int) -> tuple[list[int], list[float]]:
    _, metrics = deepinv_solver(inst, max_iter=budget, metrics=True, **opts)()
    values = metrics["objective"][0]
    return list(range(1, len(values) + 1)), values


def deepinv_runner(inst: Instance, opts: dict[str, Any]) -> Callable[[int], Any]:
    cache: dict[int, Callable[[], Any]] = {}

    def run(k: int):
        if k not in cache:
            cache[k] = deepinv_solver(inst, max_iter=k, metrics=False, **opts)
        return cache[k]()

    return run


def pyproximal_solver(inst: Instance, ratio: float, niter: int, callback=None, alpha: float = ALPHA):
    """Chambolle–Pock on g(Kx), K = [W; ∇] (pylops), g = φ(·) ⊕ α‖·‖_{2,1}, f = 0; τμ‖K‖² < 1 with μ/τ = ratio."""
    import numpy as np
    import pylops
    import pyproximal

    n, m = inst.size, inst.m
    W, b, yv = inst.W.numpy(), inst.b.numpy(), inst.y[0].numpy()

    class ReLUBregman(pyproximal.ProxOperator):
        """φ(s) = Σ ½y² + ½max(s + b, 0)² − y(s + b), separable; prox_{σφ}(v) in closed form."""

        def __init__(self):
            super().__init__(None, False)

        def __call__(self, s):
            z = s + b
            return float(0.5 * yv @ yv + 0.5 * np.sum(np.maximum(z, 0) ** 2) - yv @ z)

        def prox(self, v, tau):
            # minimise (s − v)²/(2τ) + ½max(s + b, 0)² − y s: the root on s + b ≥ 0 if it lies there, else on s + b < 0
            pos = (v + tau * (yv - b)) / (1 + tau)
            neg = v + tau * yv
            return np.where(pos + b >= 0, pos, neg)

    grad = pylops.Gradient(dims=(n, n), kind="forward", dtype="float64")
    K = pylops.VStack([pylops.MatrixMult(W, dtype="float64"), grad])
    g = pyproximal.VStack([ReLUBregman(), pyproximal.L21(ndim=2, sigma=alpha)], nn=[m, 2 * n * n])
    f = pyproximal.Box(-np.inf, np.inf)
    k_norm = math.sqrt(inst.layer.affine.opnorm() ** 2 + 8.0) * 1.01
    tau = 0.99 / (k_norm * math.sqrt(ratio))
    mu = 0.99 * math.sqrt(ratio) / k_norm
    return lambda: pyproximal.optimization.primaldual.PrimalDual(f, g, K, np.zeros(n * n), tau=tau, mu=mu, theta=1.0,
                                                                niter=niter, callback=callback)


def pyproximal_traced(inst: Instance, opts: dict[str, Any], budget: int) -> tuple[list[int], list[float]]:
    values: list[float] = []
    pyproximal_solver(inst, niter=budget, callback=lambda x: values.append(inst.objective(torch.from_numpy(x))), **opts)()
    return list(range(1, len(values) + 1)), values


def pyproximal_runner(inst: Instance, opts: dict[str, Any]) -> Callable[[int], Any]:
    return lambda k: pyproximal_solver(inst, niter=k, **opts)()


METHODS = {
    "lbinv_default": (lbinv_traced, lbinv_runner),
    "lbinv_pdhg": (lbinv_traced, lbinv_runner),
    "lbinv_fista": (lbinv_traced, lbinv_runner),
    "deepinv": (deepinv_traced, deepinv_runner),
    "pyproximal": (pyproximal_traced, pyproximal_runner),
}


def first_hit(iterations: list[int], values: list[float], f_star: float, target: float) -> int | None:
    for k, v in zip(iterations, values):
        if (v - f_star) / abs(f_star) <= target:
            return k
    return None


def median_seconds(fn: Callable[[], Any], rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_method(inst: Instance, name: str, rounds: int) -> dict[str, Any]:
    traced, runner = METHODS[name]
    settings = []
    for opts in GRIDS[name]:
        start = time.perf_counter()
        try:
            its, values = traced(inst, opts, BUDGETS[name])
        except (ImportError, AttributeError, TypeError, ValueError, RuntimeError) as err:  # a peer's API may change
            settings.append({"setting": opts, "error": f"{type(err).__name__}: {err}"})
            continue
        traced_seconds = time.perf_counter() - start
        hits = {key: first_hit(its, values, inst.f_star, t) for key, t in TARGETS.items()}
        per_iteration = traced_seconds / max(its[-1], 1)
        settings.append({"setting": opts, "iterations": hits, "traced_iterations": its[-1],
                         "final_relative_gap": (values[-1] - inst.f_star) / abs(inst.f_star),
                         "estimated_seconds": {t: (k * per_iteration if k else None) for t, k in hits.items()}})
        log(f"  {name} {opts}: {hits}, {traced_seconds:.1f}s traced")
    ok = [s for s in settings if "iterations" in s]
    if not ok:
        return {"settings": settings, "best": None}

    def cost(s):  # least estimated time to 1e-6, then to 1e-4
        e = s["estimated_seconds"]
        return (e["1e-6"] is None, e["1e-6"] or math.inf, e["1e-4"] or math.inf)

    best = min(ok, key=cost)
    run = runner(inst, best["setting"])
    out = {"setting": best["setting"], "grid": settings}
    for key in TARGETS:
        k = best["iterations"][key]
        out[f"iterations_{key}"] = k
        out[f"seconds_{key}"] = median_seconds(lambda k=k: run(k), rounds) if k else None
    return out


def bench_fista_stop(inst: Instance, rounds: int, tol: float = 1e-6) -> dict[str, Any]:
    """FISTA with its own stopping test: what ``converged=True, tol=1e-6`` delivers."""
    def call():
        return invert(inst.net, inst.y, alpha=ALPHA, solver="fista", tol=tol, max_iter=BUDGETS["lbinv_fista"])

    res = call()
    return {"tol": tol, "converged": bool(res.converged[0]), "iterations": int(res.iterations[0]),
            "relative_gap_reached": (float(res.objective[0]) - inst.f_star) / abs(inst.f_star),
            "seconds": median_seconds(call, rounds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 32×32 instance only")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per method and target (median)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--instances", nargs="*", default=list(INSTANCES), choices=list(INSTANCES))
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--smoke", action="store_true", help="one setting per method, tiny budgets: checks the APIs only")
    args = parser.parse_args()
    if args.smoke:
        shrink_to_smoke()
    torch.set_num_threads(1)
    results: dict[str, Any] = {"machine": machine(torch.device("cpu"), 1), "grids": GRIDS, "budgets": BUDGETS,
                               "alpha": ALPHA, "targets": TARGETS, "instances": {}}
    for key, (size, m) in INSTANCES.items():
        if (args.quick and size != 32) or key not in args.instances:
            continue
        inst = Instance(size, m)
        log(f"{key}: Clarabel")
        entry: dict[str, Any] = {"problem": f"circle {size}x{size}, Linear({size * size}, {m}) + ReLU, alpha={ALPHA}, float64",
                                 "clarabel": inst.clarabel(), "methods": {}}
        for name in args.methods:
            log(f"{key}: {name}")
            entry["methods"][name] = bench_method(inst, name, args.rounds)
        if "lbinv_fista" in args.methods:
            entry["lbinv_fista_stop"] = bench_fista_stop(inst, args.rounds)

        def best(names, target="1e-6", entry=entry):
            times = [entry["methods"][n].get(f"seconds_{target}") for n in names if n in entry["methods"]]
            times = [t for t in times if t is not None]
            return min(times) if times else None

        ours = best([n for n in entry["methods"] if n.startswith("lbinv")])
        peers = best([n for n in entry["methods"] if not n.startswith("lbinv")])
        entry["speedup_vs_best_peer_1e-6"] = peers / ours if ours and peers else None
        default = best(["lbinv_default"])
        entry["default_speedup_vs_best_peer_1e-6"] = peers / default if default and peers else None
        entry["speedup_vs_clarabel_1e-6"] = entry["clarabel"]["seconds"] / ours if ours else None
        ours4 = best([n for n in entry["methods"] if n.startswith("lbinv")], "1e-4")
        peers4 = best([n for n in entry["methods"] if not n.startswith("lbinv")], "1e-4")
        entry["speedup_vs_best_peer_1e-4"] = peers4 / ours4 if ours4 and peers4 else None
        results["instances"][key] = entry
        log(f"{key}: speedup vs best peer (1e-6) {entry['speedup_vs_best_peer_1e-6']}, "
            f"vs Clarabel {entry['speedup_vs_clarabel_1e-6']}")
    write_results(results, args.json)


def shrink_to_smoke(*budgets: dict[str, int]) -> None:
    """``--smoke``: one setting per method and 30 iterations for every budget (checks the APIs only)."""
    for name in GRIDS:
        GRIDS[name] = GRIDS[name][:1]
    for budget in (BUDGETS, *budgets):
        for name in budget:
            budget[name] = 30


if __name__ == "__main__":
    main()
