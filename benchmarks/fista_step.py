"""FISTA's growing step against its cap (issue 26): iterations, not timings.

    python benchmarks/fista_step.py --json benchmarks/results_fista_step_cpu.json

On the paper's circle (``experiments/circle.py``, float64, α = 1.5e−2), for each cap ``STEP_MAX`` of
the step (in units ``1/L``; 1 is the fixed step ``1/L``) and without and with the box (0, 1), which
does not bind at the optimum:

- ``to_1e-6``: the first iteration whose objective is within 1e−6 (relative) of ``F*``, from a run
  with ``tol=0``; ``F*`` is the least objective of a long reference solve (``tol=1e−12``) and of every run;
- ``own_stop``: the iterations of ``invert(..., tol=1e−6)``, which stops on its own duality-gap test,
  and ``inner_steps``: the TV-prox (FGP) steps that solve took in all. An iteration costs one product
  with ``W`` and one with ``Wᵀ`` plus its inner steps: the time follows these two counts.

The cap is set by patching ``lbinv.solvers.fista.STEP_MAX``; the default's row is marked.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from timing import log, machine, write_results  # first: it puts the repository on sys.path

import lbinv.solvers.fista as fista
from circle import make_problem
from lbinv import invert

CAPS = (1.0, 2.0, 3.0, 4.0)
BOXES = {"no_box": None, "box": (0.0, 1.0)}


def run(size: int = 64, measurements: int = 512, target: float = 1e-6) -> dict[str, Any]:
    perceptron, _, _, y = make_problem(size, measurements, 0.005, 0, "cpu", torch.float64)
    trace: list[tuple[float, int]] = []
    step = fista.FISTA.step

    def traced(self: fista.FISTA, active: torch.Tensor | None, measure: bool) -> torch.Tensor | None:
        out = step(self, active, measure)
        trace.append((float(self.fx), self.inner_steps))
        return out

    def solve(cap: float, bounds: Any, **kw: Any) -> tuple[Any, list[tuple[float, int]]]:
        fista.STEP_MAX, fista.FISTA.step = cap, traced  # type: ignore[method-assign]
        trace.clear()
        try:
            result = invert(perceptron, y, alpha=1.5e-2, input_shape=(1, size, size), bounds=bounds, **kw)
        finally:
            fista.STEP_MAX, fista.FISTA.step = default, step  # type: ignore[method-assign]
        return result, list(trace)

    default = fista.STEP_MAX
    runs: dict[str, dict[str, Any]] = {}
    least = float(solve(default, None, tol=1e-12, max_iter=3000)[0].objective)
    for cap in CAPS:
        for box, bounds in BOXES.items():
            own, own_trace = solve(cap, bounds, tol=target, max_iter=3000)
            _, long = solve(cap, bounds, tol=0.0, max_iter=300)
            least = min(least, *(f for f, _ in long))
            runs[f"cap_{cap:g}_{box}"] = {
                "cap": cap,
                "box": box,
                "long": [f for f, _ in long],
                "own_stop": int(own.iterations),
                "converged": bool(own.converged),
                "inner_steps": sum(n for _, n in own_trace),
            }
    rows = {}
    for key, r in runs.items():
        gaps = [(f - least) / least for f in r.pop("long")]
        r["to_1e-6"] = next((k + 1 for k, g in enumerate(gaps) if g <= target), None)
        r["default"] = r["cap"] == default
        rows[key] = r
        log(f"  cap {r['cap']:g}, {r['box']}: to 1e-6 {r['to_1e-6']}, own stop {r['own_stop']} ({r['inner_steps']} inner steps)")
    return {
        "problem": f"circle {size}x{size}, Linear({size * size}, {measurements}) + ReLU, alpha=1.5e-2, float64",
        "f_star": least,
        "target": target,
        "runs": rows,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {"machine": machine(torch.device("cpu"), 1), **run(args.size, 8 * args.size)}
    write_results(results, args.json)
    return results


if __name__ == "__main__":
    main()
