"""lbinv's one-layer default against peer libraries on a batch of α values of the circle problem (issue 18).

    python benchmarks/peers_batched.py --json benchmarks/results_peers_batched16_cpu.json  # 16 α in one call

The problem, reference and peers are those of ``peers.py`` (its module docstring; the grids here are
:data:`BATCH_GRIDS`, deepinv's FISTA at step 1/L and pyproximal at c = 1), float64 on
the CPU with one thread: :data:`BATCH` values of α (log-spaced in :data:`BATCH_ALPHAS`) on the 32×32
instance, each problem with its own Clarabel optimum; the time until every problem is within 1e−4
and 1e−6 of its optimum for lbinv's default in one call (per-sample α), deepinv's FISTA in one
batched call (its ``lambda_reg`` per sample; best of the same grid) and pyproximal in one call per
problem (each stopped at its own iteration; best ratio of the grid). Keys
``batched16_speedup_vs_deepinv_1e-6`` and ``batched16_speedup_vs_pyproximal_1e-6`` (and ``_1e-4``).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy's BLAS: one thread, as torch (before torch loads numpy)
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

# peers first: it imports timing, which puts the repository on sys.path
from peers import (  # noqa: E402
    TARGETS,
    Instance,
    deepinv_solver,
    first_hit,
    median_seconds,
    pyproximal_solver,
    shrink_to_smoke,
)
from timing import log, machine, write_results  # noqa: E402

from lbinv import invert  # noqa: E402

#: The batched comparison: this many α values, log-spaced in this interval, of the 32×32 instance.
BATCH, BATCH_ALPHAS = 16, (5e-3, 5e-2)
#: Iterations of the batched traced runs (deepinv gets more than ``peers.BUDGETS``: the smallest α converge slowest).
BATCH_BUDGETS = {"lbinv_default": 1000, "deepinv": 1500, "pyproximal": 10_000}
#: The peers' settings tried here (issue 18's grids).
BATCH_GRIDS: dict[str, list[dict[str, Any]]] = {
    "deepinv": [{"iteration": "FISTA", "step": 1.0, "inner": n, "inner_tau": t} for n in (10, 20, 50) for t in (0.1, 0.3)],
    "pyproximal": [{"c": 1.0, "ratio": r} for r in (0.3, 1.0, 3.0)],
}


def bench_batched(rounds: int) -> dict[str, Any]:
    """:data:`BATCH` α values of the 32×32 instance (module docstring)."""
    inst = Instance(32, 256)
    alphas = torch.logspace(math.log10(BATCH_ALPHAS[0]), math.log10(BATCH_ALPHAS[1]), BATCH, dtype=torch.float64)
    ys = inst.y.expand(BATCH, -1).clone()
    log(f"batched: Clarabel x {BATCH}")
    refs = [inst.clarabel(float(a)) for a in alphas]
    f_star = torch.tensor([r["optimum"] for r in refs], dtype=torch.float64)

    def first_all(iterations: list[int], values: torch.Tensor, target: float) -> int | None:
        """The first iteration where every problem is within ``target`` (``values``: (iterations, B))."""
        within = ((values - f_star) / f_star.abs() <= target).all(dim=1)
        hit = torch.nonzero(within)
        return iterations[int(hit[0])] if hit.numel() else None

    out: dict[str, Any] = {
        "problem": f"circle 32x32, Linear(1024, 256) + ReLU, {BATCH} alpha log-spaced in {BATCH_ALPHAS}",
        "alphas": alphas.tolist(),
        "budgets": BATCH_BUDGETS,
        "grids": BATCH_GRIDS,
        "clarabel": {
            "seconds_all": sum(r["seconds"] for r in refs),
            "status": sorted({r["status"] for r in refs}),
            "optima": f_star.tolist(),
        },
        "methods": {},
    }

    log("batched: lbinv default")
    budget = BATCH_BUDGETS["lbinv_default"]
    traced = invert(inst.net, ys, alpha=alphas, max_iter=budget, tol=0.0, record_history=True, check_every=10)
    hits = {key: first_all(list(traced.history["iteration"]), traced.history["objective"], t) for key, t in TARGETS.items()}
    lbinv = {"iterations": hits}
    for key, k in hits.items():
        lbinv[f"seconds_{key}"] = (
            median_seconds(lambda k=k: invert(inst.net, ys, alpha=alphas, max_iter=k, tol=0.0, check_every=10), rounds) if k else None
        )

    def stop():
        return invert(inst.net, ys, alpha=alphas, tol=1e-6, max_iter=budget)

    res = stop()
    lbinv["default_stop_tol_1e-6"] = {
        "all_converged": bool(res.converged.all()),
        "iterations_max": int(res.iterations.max()),
        "max_relative_gap_reached": float(((res.objective - f_star) / f_star.abs()).max()),
        "seconds": median_seconds(stop, rounds),
    }
    out["methods"]["lbinv_default"] = lbinv

    log("batched: deepinv")
    settings = []
    for opts in BATCH_GRIDS["deepinv"]:
        _, metrics = deepinv_solver(inst, max_iter=BATCH_BUDGETS["deepinv"], metrics=True, alphas=alphas, **opts)()
        values = torch.tensor(metrics["objective"], dtype=torch.float64).T  # (iterations, B)
        its = list(range(1, values.shape[0] + 1))
        settings.append(
            {
                "setting": opts,
                "iterations": {key: first_all(its, values, t) for key, t in TARGETS.items()},
                "final_max_relative_gap": float(((values[-1] - f_star) / f_star.abs()).max()),
            }
        )
        log(f"  deepinv {opts}: {settings[-1]['iterations']}")
    best = min(
        settings, key=lambda s: (s["iterations"]["1e-6"] is None, s["iterations"]["1e-6"] or math.inf, s["iterations"]["1e-4"] or math.inf)
    )
    deepinv = {"setting": best["setting"], "grid": settings, "iterations": best["iterations"]}
    for key, k in best["iterations"].items():  # time each target's iteration count (settings differ per iteration)
        candidates = [s for s in settings if s["iterations"][key]]
        times = {}
        for s in candidates:
            run = deepinv_solver(inst, max_iter=s["iterations"][key], metrics=False, alphas=alphas, **s["setting"])
            times[json.dumps(s["setting"])] = median_seconds(run, rounds)
        deepinv[f"seconds_{key}"] = min(times.values()) if times else None
        deepinv[f"seconds_{key}_per_setting"] = times
    out["methods"]["deepinv"] = deepinv

    log("batched: pyproximal, one call per problem")
    settings = []
    for opts in BATCH_GRIDS["pyproximal"]:
        its: dict[str, list[int | None]] = {key: [] for key in TARGETS}
        for i, a in enumerate(alphas.tolist()):
            values: list[float] = []
            pyproximal_solver(
                inst,
                niter=BATCH_BUDGETS["pyproximal"],
                alpha=a,
                callback=lambda x, a=a: values.append(inst.objective(torch.from_numpy(x), a)),
                **opts,
            )()
            for key, t in TARGETS.items():
                its[key].append(first_hit(list(range(1, len(values) + 1)), values, float(f_star[i]), t))
        settings.append({"setting": opts, "iterations": its})
        log(f"  pyproximal {opts}: max iterations {[max(v, key=lambda k: k or math.inf) for v in its.values()]}")
    pyprox: dict[str, Any] = {"grid": settings}
    for key in TARGETS:
        times = {}
        for s in settings:
            if all(s["iterations"][key]):
                runs = [pyproximal_solver(inst, niter=k, alpha=a, **s["setting"]) for k, a in zip(s["iterations"][key], alphas.tolist())]
                times[json.dumps(s["setting"])] = median_seconds(lambda runs=runs: [r() for r in runs], rounds)
        pyprox[f"seconds_{key}"] = min(times.values()) if times else None
        pyprox[f"seconds_{key}_per_setting"] = times
    out["methods"]["pyproximal"] = pyprox

    for peer in ("deepinv", "pyproximal"):
        for key in TARGETS:
            ours, theirs = lbinv[f"seconds_{key}"], out["methods"][peer][f"seconds_{key}"]
            out[f"batched{BATCH}_speedup_vs_{peer}_{key}"] = theirs / ours if ours and theirs else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per method and target (median)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--smoke", action="store_true", help="one setting per method, tiny budgets: checks the APIs only")
    args = parser.parse_args()
    if args.smoke:
        shrink_to_smoke(BATCH_BUDGETS)
        for name in BATCH_GRIDS:
            BATCH_GRIDS[name] = BATCH_GRIDS[name][:1]
    torch.set_num_threads(1)
    results: dict[str, Any] = {"machine": machine(torch.device("cpu"), 1), "targets": TARGETS, "batched": bench_batched(args.rounds)}
    write_results(results, args.json)


if __name__ == "__main__":
    main()
