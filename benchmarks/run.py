"""Speed and scale of lbinv, measured side by side in one process (issue 10).

    python benchmarks/run.py --quick --json benchmarks/results_cpu.json
    python benchmarks/run.py --device cuda --json benchmarks/results_cuda.json

Every headline figure is a ratio of two timings taken in this run, interleaved round by round and
reduced by the median, so that it holds on a loaded machine; the raw timings behind each ratio are
in ``details``. Keys (see docs/performance.md):

- ``batched_speedup``: images/s of one batched ``invert`` of 64 noisy conv-AE codes / the same 64
  solved one by one, same number of sweeps (``tol=0``).
- ``iteration_overhead``: seconds of one sweep of the paper's coordinate descent / seconds of the bare affine
  forward + adjoint of every layer (the floor of any first-order method), batch 64.
- ``speedup_vs_clarabel``: seconds of CVXPY + Clarabel on a single-layer TV inversion (32×32 image,
  256 ReLU measurements) / seconds for ``invert(solver="pdhg")`` to come within 1e−4 (relative) of its optimum;
  ``details.clarabel.batch`` does the same for a batch of problems (Clarabel one by one).
- ``iterations_vs_paper_steps``: iterations to come within 1e−4 (absolute) of the optimum on the
  circle problem with PDHG's paper step rule / with its balanced one (a lower bound when the paper's
  rule does not get there within its budget).
- ``callback_overhead``: share of InversionCallback's wall time spent outside the batched solve, in a
  conv training run; ``details.callback`` adds its seconds per epoch, what ``every_n_epochs``,
  ``num_samples`` and warm starts (``x_init``) buy.
- ``callback_share``: seconds in InversionCallback's hooks during the epochs / seconds of the fit
  before its final inversion, in the conv config (the callback's defaults, ``time_share`` 0.2;
  ``--quick``: 8 epochs); ``details.callback_share``: the share with the final inversion, and its
  table.
- ``memory_1024``: peak memory of a batch of 1,024 conv-AE inversions (a fresh subprocess).
- ``multilayer_sweeps_to_1e-3``: sweeps of each multi-layer solver until a trained conv AE's probe is
  within 1e−3 of the objective's limit, from x = 0 and from the decoder's output (CPU, float64;
  ``multilayer.py``, which also compares PSNRs under code noise and code residuals of random encoders).
- ``sweep_vs_forward_backward`` (per encoder) and ``box_stop_iterations_ratio``: how close a sweep
  runs to one forward + backward pass of the encoder, and the certified stop with a box that does not
  bind against the stop without it (``floor.py``, issue 26).
- ``speed_changes``: sweep time with each speed change of issue 10 switched off, one at a time; on
  CUDA also ``tf32_convolutions`` (IEEE float32 convolutions / cuDNN's default TF32 ones) and
  ``cuda_graph`` (10 sweeps launched one kernel at a time / replayed as one CUDA graph).

``--threads`` (default 1: with these small iterations one thread is fastest on a shared CPU).
The sections live beside this file: ``solver_speed.py`` (batched, overhead, compile, CUDA graph),
``references.py`` (Clarabel, paper steps), ``callback_cost.py``, ``callback_share.py``, ``multilayer.py`` and ``memory.py``; ``timing.py``
holds what they share.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from timing import log, machine  # first: it puts the repository on sys.path

from callback_cost import bench_callback
from callback_share import bench_callback_share
from floor import run as bench_floor
from memory import bench_memory
from multilayer import bench_multilayer
from references import bench_clarabel, bench_paper_steps
from solver_speed import bench_batched, bench_compile, bench_cuda_graph, bench_overhead

GOALS = {
    "batched_speedup": ">= 8 (CPU), >= 50 (GPU)",
    "iteration_overhead": "<= 1.5",
    "speedup_vs_clarabel": ">= 5",
    "iterations_vs_paper_steps": ">= 5",
    "callback_overhead": "<= 0.15",
    "callback_share": "<= 0.25",
    "memory_1024": "peak < 2 GiB (CPU)",
    "multilayer_sweeps_to_1e-3": "<= 300 (the default, from x = 0)",
    "sweep_vs_forward_backward": "<= 2 (every encoder)",
    "box_stop_iterations_ratio": "<= 1.3",
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller budgets: about 2 minutes on a 2-core CPU")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--with-compile", action="store_true", help="also measure torch.compile of a sweep (minutes)")
    parser.add_argument("--skip", nargs="*", default=[], help="sections to skip (batched overhead floor graph clarabel circle callback share multilayer memory)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
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
        if "floor" not in args.skip:
            log("a sweep against the floor, the box's certified stop")
            details["floor"] = bench_floor(device, quick=q)
            results["sweep_vs_forward_backward"] = details["floor"]["sweep_vs_forward_backward"]
            results["box_stop_iterations_ratio"] = details["floor"]["box_stop_iterations_ratio"]
        if args.with_compile:
            log("torch.compile")
            details["compile"] = bench_compile(device, sweeps=20, rounds=5)
            results.setdefault("speed_changes", {})["torch_compile"] = details["compile"]["gain"]
        if device.type == "cuda" and "graph" not in args.skip:
            log("CUDA graph of 10 sweeps vs eager")
            try:  # not run on a GPU before: a failure is recorded, the other sections still run
                details["cuda_graph"] = bench_cuda_graph(device, sweeps=100 if q else 500, rounds=5 if q else 9)
                results.setdefault("speed_changes", {})["cuda_graph"] = details["cuda_graph"]["gain"]
            except Exception as err:
                details["cuda_graph"] = {"error": f"{type(err).__name__}: {err}"}
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
        if "share" not in args.skip and device.type == "cpu":
            log("InversionCallback's share of a conv training run")
            details["callback_share"] = bench_callback_share(epochs=8 if q else None, work=Path(tmp) / "share")
            results["callback_share"] = details["callback_share"]["callback_share"]
        if "multilayer" not in args.skip and device.type == "cpu":
            log("multi-layer convergence on a trained conv AE")
            details["multilayer"] = bench_multilayer(q)
            results["multilayer_sweeps_to_1e-3"] = {k: v["sweeps"] for k, v in details["multilayer"]["sweeps_to_1e-3"].items()}
        if "memory" not in args.skip:
            log("memory of 1,024 inversions (subprocess)")
            results["memory_1024"] = bench_memory(device, args.threads, sweeps=10 if q else 50)
    results["machine"]["load_average_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    results["seconds"] = time.perf_counter() - started
    summary = {k: results.get(k) for k in ("batched_speedup", "iteration_overhead", "speedup_vs_clarabel",
                                            "iterations_vs_paper_steps", "callback_overhead", "callback_share",
                                            "sweep_vs_forward_backward", "box_stop_iterations_ratio")}
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=float))
        log(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    main()
