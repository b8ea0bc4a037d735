"""lbinv's one-layer solvers against peer libraries on the paper's circle problem (issues 18 and 26).

    python benchmarks/peers.py --quick --json benchmarks/results_peers_cpu.json                      # 32×32
    python benchmarks/peers.py --instances circle64 --json benchmarks/results_peers_circle64_cpu.json  # 64×64
    python benchmarks/peers.py --smoke                                                               # the APIs only: ~30 s

A run without ``--quick`` or ``--instances`` does both instances and writes both to one file. How long:
the committed results took 24.5 min (32×32) and 40.9 min (64×64), both at once on a 2-core machine
at load 6–8 (other benchmarks alongside), where every solver ran 5–12× slower than on an idle one;
Clarabel alone took 7.7 s and 109 s. On an idle machine expect a fraction of that. The peers come with
the ``bench`` extra (``pip install -e ".[bench]"``: deepinv, pyproximal, pylops); CVXPY and Clarabel
with ``dev``.

Problem: ``min_x B_ReLU(y, Wx + b) + α TV_iso(x)``, the circle of ``experiments/circle.py``
(``make_problem``: disc, ``nn.Linear(n², m)`` + ReLU with PyTorch's default init under seed 0,
noise 0.005, α = 1.5e−2), float64 on the CPU with one thread (``torch.set_num_threads(1)``, and
``OMP/OPENBLAS/MKL_NUM_THREADS=1`` for numpy, set before anything imports it).
Instances: 32×32 with ``Linear(1024, 256)`` and 64×64 with ``Linear(4096, 512)`` (the paper's).

Reference: CVXPY + Clarabel with gap tolerances 1e−8 (timed once); ``F*`` is lbinv's objective at
Clarabel's solution. Relative gap: ``(F(x) − F*)/|F*|``.

Tuning (traced runs): every setting of :data:`GRIDS` runs once, in that order, with the objective
evaluated every :data:`TRACE_EVERY` iterations (lbinv: its history at ``check_every``; so every
iteration count below is a multiple of 10). A peer's run stops once the gap is ≤ 1e−6, else at
:data:`BUDGETS`; lbinv's run (no per-iteration callback) runs its budget, doubled while 1e−6 is not
reached. The race: once a setting of a method has reached 1e−6, each later one stops after
:data:`CUTOFF` × the method's least estimated seconds to 1e−6 so far (``cut_by_race``: its 1e−6 then
reads ``None``). Per setting the JSON keeps (under ``methods.<name>.grid``) the first iteration within
1e−4 and 1e−6, the traced iterations and seconds, the gap at the last traced iteration and an
estimate of the seconds to each target (traced seconds per iteration × iterations; objective
evaluations included, and the machine's load of that moment).

Timing: per method and target the :data:`FINALISTS` settings with the least estimated seconds (one only
for a method whose best estimate is over :data:`FAR_BEHIND` times the fastest method's) and, to 1e−6,
also the setting with the fewest iterations (the estimates move with the machine's load) are
timed without tracing, exactly that many iterations, together with ``lbinv_default_stop``, in
``--rounds`` interleaved rounds (each round calls every timed run once; median). A method's
``seconds_<target>`` is its fastest finalist's median, ``setting_<target>`` that finalist, and
``setting`` the one of ``seconds_1e-6`` (else of ``1e-4``).

Methods (:data:`GRIDS`; ``L = (1.01‖W‖)²``, ``‖W‖`` by lbinv's power iteration):

- ``lbinv_default``: ``invert`` with its defaults (the one-layer solver and step rule it picks);
- ``lbinv_fista``: ``solver="fista"``, ``inner_steps`` ∈ {10, 20, 40};
- ``lbinv_pdhg``: ``solver="pdhg"`` (the paper's PDHG), ``balance`` ∈ {8, 32, 128};
- ``lbinv_default_stop`` (not tuned): ``invert`` with its defaults and its own stopping test at
  ``tol=1e−6`` (``max_iter`` its default, 1500): iterations, seconds, whether it converged and the
  relative gap it really reached;
- ``deepinv_pgd``: ``deepinv.optim.PGD`` (unaccelerated proximal gradient) with a data-fidelity
  whose gradient is ``Wᵀ(σ(Wx + b) − y)`` and ``TVPrior`` (its Chambolle–Pock TV prox,
  warm-restarted across outer iterations); step ∈ {1.0, 1.5, 1.9}/L × inner iterations ∈ {5, 10, 20}
  × inner primal step τ ∈ {0.1, 0.3};
- ``deepinv_fista``: ``deepinv.optim.FISTA``, the same data term and prior; step ∈ {0.5, 1.0}/L
  (FISTA's theory stops at 1/L) × inner iterations ∈ {10, 20, 50} × inner τ ∈ {0.1, 0.3};
- ``pyproximal``: ``pyproximal.optimization.primaldual.PrimalDual`` (Chambolle–Pock) on
  ``g(Kx)``, ``K = [W; c∇]`` (pylops), ``g = φ ⊕ (α/c)‖·‖_{2,1}`` (φ the ReLU Bregman term, its
  prox separable and exact; the group shrink), ``f = 0``, ``τμ‖K‖² < 1`` with
  ``‖K‖² ≤ ‖W‖² + 8c²``; scaling c ∈ {0.3, 1, 3, 10} × step ratio μ/τ ∈ {0.3, 1, 3}.

JSON, per instance (``instances.<name>``): ``clarabel`` (seconds, status, optimum), ``methods``
(per method: ``grid``, ``iterations_<t>``, ``seconds_<t>``, ``setting_<t>``, ``setting``,
``finalists``), ``lbinv_default_stop`` (``tol``, ``converged``, ``iterations``,
``relative_gap_reached``, ``seconds``), ``best_peer_1e-6`` (method, setting, iterations, seconds) and
the ratios (> 1: lbinv faster), all to a gap of 1e−6 unless named otherwise:

- ``speedup_vs_best_peer_1e-6``: the best peer's seconds / the best lbinv method's (both oracle:
  stopped at the first iteration within 1e−6, known from the traced run);
- ``default_speedup_vs_best_peer_1e-6``: the same for ``lbinv_default`` (untuned, oracle);
- ``own_stop_speedup_vs_best_peer_1e-6``: the best peer's oracle seconds / ``lbinv_default_stop``'s
  (lbinv stopping itself by its relative duality-gap test, an estimate without a box; the comparison
  of issue 26, whose goal is ≥ 1.5);
- ``speedup_vs_clarabel_1e-6``: Clarabel's seconds / the best lbinv method's (oracle);
  ``own_stop_speedup_vs_clarabel_1e-6``: Clarabel's / ``lbinv_default_stop``'s;
- ``speedup_vs_best_peer_1e-4``: as the first, to 1e−4.

The batched comparison (16 α values in one call) is ``peers_batched.py``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy's BLAS: one thread, as torch
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

# timing first: it puts the repository on sys.path
from timing import log, machine, write_results  # noqa: E402

from lbinv import LiftedNetwork, invert  # noqa: E402
from lbinv.regularizers import TotalVariation  # noqa: E402
from lbinv.solvers.data_term import LayerDataTerm  # noqa: E402

ALPHA, NOISE, SEED = 1.5e-2, 0.005, 0
TARGETS = {"1e-4": 1e-4, "1e-6": 1e-6}
INSTANCES = {"circle32": (32, 256), "circle64": (64, 512)}
#: The settings tried per method, in this order (the likeliest best first: the race then cuts the rest early).
GRIDS: dict[str, list[dict[str, Any]]] = {
    "lbinv_default": [{}],
    "lbinv_fista": [{"solver": "fista", "inner_steps": m} for m in (20, 10, 40)],
    "lbinv_pdhg": [{"solver": "pdhg", "balance": b} for b in (128.0, 32.0, 8.0)],
    "deepinv_pgd": [
        {"iteration": "PGD", "step": s, "inner": n, "inner_tau": t} for s in (1.9, 1.5, 1.0) for n in (10, 5, 20) for t in (0.1, 0.3)
    ],
    "deepinv_fista": [
        {"iteration": "FISTA", "step": s, "inner": n, "inner_tau": t} for s in (1.0, 0.5) for n in (10, 20, 50) for t in (0.1, 0.3)
    ],
    "pyproximal": [{"c": c, "ratio": r} for c in (1.0, 3.0, 0.3, 10.0) for r in (1.0, 0.3, 3.0)],
}
#: Most iterations of each traced run (the peers' stop at a gap of 1e−6; lbinv's run to the budget, doubled while 1e−6 is not reached).
BUDGETS = {"lbinv_default": 300, "lbinv_fista": 300, "lbinv_pdhg": 6_000, "deepinv_pgd": 1_000, "deepinv_fista": 600, "pyproximal": 8_000}
#: Traced runs evaluate the objective every this many iterations (lbinv's history: its ``check_every``).
TRACE_EVERY = 10
#: The race: a traced run stops after this many times the method's least traced seconds to 1e−6 so far.
CUTOFF = 1.5
#: Settings per method and target timed untraced (the least estimated seconds first) ...
FINALISTS = {"1e-4": 1, "1e-6": 2}
#: ... but one only where the method's best estimate is over this many times the fastest method's.
FAR_BEHIND = 3.0


class _Stop(Exception):
    """Raised by a traced run's per-iteration callback: the gap is ≤ the smallest target, or the run is past its deadline."""


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
        if not hasattr(self, "_data_term"):  # built once: it measures ‖W‖
            self._data_term = LayerDataTerm(self.layer, self.y)
        return float(self._data_term.objective(x, a, self.tv))

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
        return {
            "seconds": seconds,
            "solver_seconds": problem.solver_stats.solve_time,
            "status": problem.status,
            "optimum": self.f_star,
            "clarabel_value": problem.value,
        }


# -- the methods: each returns (iterations, objectives) traced, and a runner of k iterations --------------


def lbinv_traced(inst: Instance, opts: dict[str, Any], budget: int, deadline: float | None) -> tuple[list[int], list[float]]:
    """lbinv's history (every :data:`TRACE_EVERY` iterations) of ``budget`` iterations; rerun with twice as many while
    1e−6 is not reached (up to 8× ``budget``): ``invert`` has no per-iteration callback to stop at 1e−6."""
    for _ in range(4):
        seconds = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
        res = invert(
            inst.net,
            inst.y,
            alpha=ALPHA,
            max_iter=budget,
            tol=0.0,
            record_history=True,
            check_every=TRACE_EVERY,
            max_seconds=seconds,
            **opts,
        )
        its, values = list(res.history["iteration"]), res.history["objective"][:, 0].tolist()
        if first_hit(its, values, inst.f_star, min(TARGETS.values())) or its[-1] < budget:  # reached, or cut by the race
            break
        budget *= 2
    return its, values


def lbinv_runner(inst: Instance, opts: dict[str, Any]) -> Callable[[int], Any]:
    return lambda k: invert(inst.net, inst.y, alpha=ALPHA, max_iter=k, tol=0.0, check_every=TRACE_EVERY, **opts)


def tracer(inst: Instance, its: list[int], values: list[float], deadline: float | None) -> Callable[[torch.Tensor], None]:
    """Called with every iterate: every :data:`TRACE_EVERY`-th appends its number to ``its`` and its
    objective to ``values``; raises :class:`_Stop` once within the smallest target or past ``deadline``."""
    stop = inst.f_star + min(TARGETS.values()) * abs(inst.f_star)
    count = itertools.count(1)

    def trace(x: torch.Tensor) -> None:
        k = next(count)
        if k % TRACE_EVERY:
            return
        its.append(k)
        values.append(inst.objective(x))
        if values[-1] <= stop or (deadline is not None and time.perf_counter() > deadline):
            raise _Stop

    return trace


def deepinv_solver(
    inst: Instance,
    inner: int,
    inner_tau: float,
    max_iter: int,
    metrics: bool,
    alphas=None,
    iteration: str = "FISTA",
    step: float = 1.0,
    trace: Callable[[torch.Tensor], None] | None = None,
):
    """deepinv's ``iteration`` ("PGD" or "FISTA") at ``step/L`` on ``inst``; with ``alphas`` (B,) a batch of B
    problems (``inst.y`` repeated), one α each; ``trace`` (one problem) is called with every iterate."""
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
    if trace is not None:
        custom = {"objective": lambda _values, _prev, x: trace(x)}
    elif metrics:  # deepinv calls a metric once per sample, in batch order, without saying which
        calls = itertools.count()
        custom = {"objective": lambda _values, _prev, x: inst.objective(x, None if alphas is None else alphas[next(calls) % batch])}
    lam = ALPHA if alphas is None else [alphas.reshape(batch, 1, 1, 1)] * max_iter  # a tensor would read as one value per iteration
    algorithm = {"PGD": dinv.optim.PGD, "FISTA": dinv.optim.FISTA}[iteration]
    model = algorithm(
        data_fidelity=ReLUBregman(),
        prior=prior,
        lambda_reg=lam,
        stepsize=step / inst.lip,
        max_iter=max_iter,
        early_stop=False,
        custom_metrics=custom,
    )
    if alphas is not None or trace is not None:
        model.has_cost = False  # its batched cost does not reduce to one number per sample (deepinv 0.5); not used
    physics = dinv.physics.Physics()
    x0 = torch.zeros(batch, 1, inst.size, inst.size, dtype=torch.float64)

    def run():
        prior.TVModel.restart, prior.TVModel.x2, prior.TVModel.u2 = True, None, None  # no warm state from a previous run
        with torch.no_grad():
            return model(y, physics, init=(x0, x0), compute_metrics=metrics or trace is not None)

    return run


def deepinv_traced(inst: Instance, opts: dict[str, Any], budget: int, deadline: float | None) -> tuple[list[int], list[float]]:
    its: list[int] = []
    values: list[float] = []
    try:
        deepinv_solver(inst, max_iter=budget, metrics=False, trace=tracer(inst, its, values, deadline), **opts)()
    except _Stop:
        pass
    return its, values


def deepinv_runner(inst: Instance, opts: dict[str, Any]) -> Callable[[int], Any]:
    cache: dict[int, Callable[[], Any]] = {}

    def run(k: int):
        if k not in cache:
            cache[k] = deepinv_solver(inst, max_iter=k, metrics=False, **opts)
        return cache[k]()

    return run


def pyproximal_solver(inst: Instance, ratio: float, niter: int, callback=None, alpha: float = ALPHA, c: float = 1.0):
    """Chambolle–Pock on g(Kx), K = [W; c∇] (pylops), g = φ(·) ⊕ (α/c)‖·‖_{2,1}, f = 0; τμ‖K‖² < 1 with μ/τ = ratio."""
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
    K = pylops.VStack([pylops.MatrixMult(W, dtype="float64"), c * grad])
    g = pyproximal.VStack([ReLUBregman(), pyproximal.L21(ndim=2, sigma=alpha / c)], nn=[m, 2 * n * n])
    f = pyproximal.Box(-np.inf, np.inf)
    k_norm = math.sqrt(inst.layer.affine.opnorm() ** 2 + 8.0 * c**2) * 1.01
    tau = 0.99 / (k_norm * math.sqrt(ratio))
    mu = 0.99 * math.sqrt(ratio) / k_norm
    return lambda: pyproximal.optimization.primaldual.PrimalDual(
        f, g, K, np.zeros(n * n), tau=tau, mu=mu, theta=1.0, niter=niter, callback=callback
    )


def pyproximal_traced(inst: Instance, opts: dict[str, Any], budget: int, deadline: float | None) -> tuple[list[int], list[float]]:
    its: list[int] = []
    values: list[float] = []
    trace = tracer(inst, its, values, deadline)
    try:
        pyproximal_solver(inst, niter=budget, callback=lambda x: trace(torch.from_numpy(x)), **opts)()
    except _Stop:
        pass
    return its, values


def pyproximal_runner(inst: Instance, opts: dict[str, Any]) -> Callable[[int], Any]:
    return lambda k: pyproximal_solver(inst, niter=k, **opts)()


METHODS = {
    "lbinv_default": (lbinv_traced, lbinv_runner),
    "lbinv_fista": (lbinv_traced, lbinv_runner),
    "lbinv_pdhg": (lbinv_traced, lbinv_runner),
    "deepinv_pgd": (deepinv_traced, deepinv_runner),
    "deepinv_fista": (deepinv_traced, deepinv_runner),
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


def tune_method(inst: Instance, name: str) -> dict[str, Any]:
    """Every setting of ``GRIDS[name]`` traced once, raced against the best so far; its finalists per target (module docstring)."""
    traced, _ = METHODS[name]
    settings: list[dict[str, Any]] = []
    for opts in GRIDS[name]:
        best = [s["estimated_seconds"]["1e-6"] for s in settings if s.get("iterations", {}).get("1e-6")]
        deadline = None if not best else time.perf_counter() + CUTOFF * min(best)
        start = time.perf_counter()
        try:
            its, values = traced(inst, opts, BUDGETS[name], deadline)
        except (ImportError, AttributeError, TypeError, ValueError, RuntimeError, KeyError) as err:  # a peer's API may change
            settings.append({"setting": opts, "error": f"{type(err).__name__}: {err}"})
            log(f"  {name} {opts}: {settings[-1]['error']}")
            continue
        traced_seconds = time.perf_counter() - start
        hits = {key: first_hit(its, values, inst.f_star, t) for key, t in TARGETS.items()}
        last = its[-1] if its else 0
        per_iteration = traced_seconds / max(last, 1)
        cut = deadline is not None and hits["1e-6"] is None and last < BUDGETS[name] and time.perf_counter() >= deadline
        settings.append(
            {
                "setting": opts,
                "iterations": hits,
                "traced_iterations": last,
                "traced_seconds": traced_seconds,
                "cut_by_race": cut,
                "final_relative_gap": (values[-1] - inst.f_star) / abs(inst.f_star) if values else None,
                "estimated_seconds": {t: (k * per_iteration if k else None) for t, k in hits.items()},
            }
        )
        log(f"  {name} {opts}: {hits}, {last} it, {traced_seconds:.1f}s traced{' (cut)' if cut else ''}")
    return {"grid": settings}


def pick_finalists(tuned: dict[str, dict[str, Any]]) -> None:
    """Per method and target the settings to time (module docstring), into ``tuned[name]["finalists"]``."""
    fastest = {}
    for key in TARGETS:
        estimates = [s["estimated_seconds"][key] for t in tuned.values() for s in t["grid"] if s.get("estimated_seconds", {}).get(key)]
        fastest[key] = min(estimates) if estimates else None
    for entry in tuned.values():
        entry["finalists"] = {}
        for key in TARGETS:
            reached = sorted(
                (s for s in entry["grid"] if s.get("estimated_seconds", {}).get(key)), key=lambda s: s["estimated_seconds"][key]
            )
            count = FINALISTS[key] if reached and reached[0]["estimated_seconds"][key] <= FAR_BEHIND * fastest[key] else 1
            chosen = reached[:count]
            fewest = min(reached, key=lambda s: s["iterations"][key], default=None)
            if key == "1e-6" and fewest is not None and fewest not in chosen:  # the estimates move with the load: time it too
                chosen.append(fewest)
            entry["finalists"][key] = [(s["setting"], s["iterations"][key]) for s in chosen]


def default_stop(inst: Instance, tol: float = 1e-6) -> tuple[dict[str, Any], Callable[[], Any]]:
    """``invert`` with its defaults and its own stopping test at ``tol``: what a user gets."""

    def call():
        return invert(inst.net, inst.y, alpha=ALPHA, tol=tol)

    res = call()
    return {
        "tol": tol,
        "converged": bool(res.converged[0]),
        "iterations": int(res.iterations[0]),
        "relative_gap_reached": (float(res.objective[0]) - inst.f_star) / abs(inst.f_star),
    }, call


def time_finalists(
    inst: Instance, tuned: dict[str, dict[str, Any]], stop_call: Callable[[], Any], rounds: int
) -> tuple[dict[tuple[str, str, int], float], float]:
    """Median seconds of every finalist run (method, setting, iterations) and of ``stop_call``, rounds interleaved."""
    import json

    runs: dict[tuple[str, str, int], Callable[[], Any]] = {}
    for name, entry in tuned.items():
        runner = METHODS[name][1]
        for key in TARGETS:
            for opts, k in entry["finalists"][key]:
                ident = (name, json.dumps(opts, sort_keys=True), k)
                if ident not in runs:
                    run = runner(inst, opts)
                    runs[ident] = lambda run=run, k=k: run(k)
    samples: dict[Any, list[float]] = {ident: [] for ident in runs}
    samples["stop"] = []
    for r in range(rounds):
        log(f"  timing round {r + 1}/{rounds}: {len(runs) + 1} runs")
        for ident, fn in [*runs.items(), ("stop", stop_call)]:
            start = time.perf_counter()
            fn()
            samples[ident].append(time.perf_counter() - start)
    medians = {ident: statistics.median(v) for ident, v in samples.items()}
    return {ident: t for ident, t in medians.items() if ident != "stop"}, medians["stop"]


def summarize(tuned: dict[str, Any], times: dict[tuple[str, str, int], float]) -> dict[str, dict[str, Any]]:
    """Per method its fastest finalist per target (seconds, iterations, setting)."""
    import json

    out = {}
    for name, entry in tuned.items():
        method: dict[str, Any] = {}
        for key in TARGETS:
            timed = [(times[(name, json.dumps(opts, sort_keys=True), k)], opts, k) for opts, k in entry["finalists"][key]]
            best = min(timed, key=lambda t: t[0]) if timed else (None, None, None)
            method[f"seconds_{key}"], method[f"setting_{key}"], method[f"iterations_{key}"] = best
        method["setting"] = method["setting_1e-6"] if method["setting_1e-6"] is not None else method["setting_1e-4"]
        method["finalists"] = {
            key: [
                {"setting": opts, "iterations": k, "seconds": times[(name, json.dumps(opts, sort_keys=True), k)]}
                for opts, k in entry["finalists"][key]
            ]
            for key in TARGETS
        }
        method["grid"] = entry["grid"]
        out[name] = method
    return out


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def bench_instance(key: str, size: int, m: int, methods: list[str], rounds: int) -> dict[str, Any]:
    inst = Instance(size, m)
    log(f"{key}: Clarabel")
    entry: dict[str, Any] = {
        "problem": f"circle {size}x{size}, Linear({size * size}, {m}) + ReLU, alpha={ALPHA}, float64",
        "clarabel": inst.clarabel(),
    }
    tuned = {}
    for name in methods:
        log(f"{key}: {name}")
        tuned[name] = tune_method(inst, name)
    pick_finalists(tuned)
    log(f"{key}: lbinv_default_stop")
    stop, stop_call = default_stop(inst)
    log(f"{key}: timing the finalists")
    times, stop["seconds"] = time_finalists(inst, tuned, stop_call, rounds)
    entry["methods"] = summarize(tuned, times)
    entry["lbinv_default_stop"] = stop

    def best(names: list[str], target: str = "1e-6") -> tuple[float | None, str | None]:
        times = [(entry["methods"][n][f"seconds_{target}"], n) for n in names if entry["methods"][n][f"seconds_{target}"] is not None]
        return min(times) if times else (None, None)

    ours, _ = best([n for n in entry["methods"] if n.startswith("lbinv")])
    peers, peer = best([n for n in entry["methods"] if not n.startswith("lbinv")])
    if peer is not None:
        p = entry["methods"][peer]
        entry["best_peer_1e-6"] = {"method": peer, "setting": p["setting_1e-6"], "iterations": p["iterations_1e-6"], "seconds": peers}
    else:
        entry["best_peer_1e-6"] = None
    default, _ = best(["lbinv_default"]) if "lbinv_default" in entry["methods"] else (None, None)
    clarabel = entry["clarabel"]["seconds"]
    entry["speedup_vs_best_peer_1e-6"] = ratio(peers, ours)
    entry["default_speedup_vs_best_peer_1e-6"] = ratio(peers, default)
    entry["own_stop_speedup_vs_best_peer_1e-6"] = ratio(peers, stop["seconds"])
    entry["speedup_vs_clarabel_1e-6"] = ratio(clarabel, ours)
    entry["own_stop_speedup_vs_clarabel_1e-6"] = ratio(clarabel, stop["seconds"])
    ours4, _ = best([n for n in entry["methods"] if n.startswith("lbinv")], "1e-4")
    peers4, _ = best([n for n in entry["methods"] if not n.startswith("lbinv")], "1e-4")
    entry["speedup_vs_best_peer_1e-4"] = ratio(peers4, ours4)
    log(
        f"{key}: best peer (1e-6) {entry['best_peer_1e-6']}; own stop {stop}; "
        f"speedups: own stop {entry['own_stop_speedup_vs_best_peer_1e-6']}, oracle {entry['speedup_vs_best_peer_1e-6']}, "
        f"vs Clarabel {entry['speedup_vs_clarabel_1e-6']}"
    )
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 32×32 instance only")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (median)")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--instances", nargs="*", default=list(INSTANCES), choices=list(INSTANCES))
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--smoke", action="store_true", help="one setting per method, tiny budgets: checks the APIs only")
    args = parser.parse_args()
    if args.smoke:
        shrink_to_smoke()
    torch.set_num_threads(1)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "machine": machine(torch.device("cpu"), 1),
        "grids": GRIDS,
        "budgets": BUDGETS,
        "trace_every": TRACE_EVERY,
        "cutoff": CUTOFF,
        "finalists": FINALISTS,
        "far_behind": FAR_BEHIND,
        "rounds": args.rounds,
        "alpha": ALPHA,
        "targets": TARGETS,
        "instances": {},
    }
    for key, (size, m) in INSTANCES.items():
        if (args.quick and size != 32) or key not in args.instances:
            continue
        results["instances"][key] = bench_instance(key, size, m, args.methods, args.rounds)
    results["wall_seconds"] = time.perf_counter() - start
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
