"""lbinv's own stop against the best tuned peer, head to head (issue 26, item 3).

    python benchmarks/peers_check.py --json benchmarks/results_peers_check_cpu.json

``peers.py`` tunes every peer over its grid; this script takes the deepinv PGD settings that reached
1e−6 (relative, against Clarabel) in the fewest iterations there, or in the least time, and times
them, at exactly those iterations (an oracle stop), against ``invert``'s defaults with its own stopping
test at ``tol=1e−6`` (what a user runs), in the same process: ``--rounds`` rounds, each calling every
method once (interleaved), reduced by the median; one thread (torch and numpy's BLAS). Clarabel runs
once per instance (its seconds and ``F*``). Per instance, ``own_stop_speedup_vs_best_peer_1e-6`` is the
fastest PGD's median seconds over lbinv's, ``own_stop_speedup_vs_clarabel_1e-6`` Clarabel's over lbinv's,
and ``own_stop_relative_gap`` how far above ``F*`` lbinv's own stop ended.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

import peers  # noqa: E402  (it puts the repository on sys.path)
from timing import log, machine, write_results  # noqa: E402

#: (step in units 1/L, inner steps, inner τ, iterations to 1e−6) of the PGD settings peers.py found best
#: (results_peers_cpu.json, results_peers_circle64_cpu.json and the spot check results_peers_pgdcheck_cpu.json)
PGD: dict[str, list[tuple[float, int, float, int]]] = {
    "circle32": [(1.9, 20, 0.1, 160), (1.5, 10, 0.1, 250)],
    "circle64": [(1.9, 20, 0.1, 240), (1.9, 10, 0.1, 330)],
}


def run(rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, (size, m) in peers.INSTANCES.items():
        inst = peers.Instance(size, m)
        clarabel = inst.clarabel()
        methods: dict[str, Any] = {}
        for step, inner, tau, k in PGD[key]:
            runner = peers.deepinv_runner(inst, {"iteration": "PGD", "step": step, "inner": inner, "inner_tau": tau})
            methods[f"deepinv PGD {step}/L, {inner} inner, tau {tau}: {k} it"] = lambda runner=runner, k=k: runner(k)
        own = "lbinv default, own stop (tol=1e-6)"
        methods[own] = lambda: peers.invert(inst.net, inst.y, alpha=peers.ALPHA, tol=1e-6)
        samples: dict[str, list[float]] = {name: [] for name in methods}
        for _ in range(rounds):
            for name, fn in methods.items():
                start = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - start)
        result = peers.invert(inst.net, inst.y, alpha=peers.ALPHA, tol=1e-6)
        seconds = {name: statistics.median(s) for name, s in samples.items()}
        best_peer = min((s, n) for n, s in seconds.items() if n != own)
        out[key] = {
            "seconds": seconds,
            "samples": samples,
            "clarabel": clarabel,
            "own_stop_iterations": int(result.iterations),
            "own_stop_converged": bool(result.converged),
            "own_stop_relative_gap": (inst.objective(result.x) - clarabel["optimum"]) / clarabel["optimum"],
            "best_peer": best_peer[1],
            "own_stop_speedup_vs_best_peer_1e-6": best_peer[0] / seconds[own],
            "own_stop_speedup_vs_clarabel_1e-6": clarabel["seconds"] / seconds[own],
        }
        log(
            f"  {key}: own stop {seconds[own]:.2f} s ({int(result.iterations)} it), best peer {best_peer[1]} {best_peer[0]:.2f} s: "
            f"{out[key]['own_stop_speedup_vs_best_peer_1e-6']:.2f}x; Clarabel {clarabel['seconds']:.1f} s"
        )
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {"machine": machine(torch.device("cpu"), 1), "rounds": args.rounds, "instances": run(args.rounds)}
    write_results(results, args.json)
    return results


if __name__ == "__main__":
    main()
