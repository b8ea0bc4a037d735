"""Cost of each activation's scaled prox against the activation itself (issue 26).

    python benchmarks/prox_speed.py --json benchmarks/results_prox_cpu.json
    python benchmarks/prox_speed.py --baseline-rev HEAD~3      # also time the proxes of an older commit

A lifted sweep calls every hidden layer's ``prox_{tΨ}`` once, so its cost beside the activation's
forward decides how much a sweep costs beyond the network's own forward and backward passes. For
every supported activation this times, on one (80, 32, 16, 16) float32 tensor v = 2·N(0, 1):

- ``forward``: the torch module, ``module(v)``;
- ``prox``: ``act.prox(v, 0.5)`` (a Python float t, as the solvers pass it);
- ``prox_tensor_t``: ``act.prox(v, t)`` with a per-sample tensor ``t`` of shape (80, 1, 1, 1), all 0.5;
- with ``--baseline-rev REV``, ``prox_baseline``: the prox of ``lbinv/proximal`` at git revision REV,
  imported side by side in this process (its files read by ``git show``, nothing checked out).

Rounds are interleaved (one call of each function per round, after a warm-up call) and reduced by
the median; the headline ``ratio`` is prox / forward, per activation, from timings of this run.
One CPU thread by default (``--threads``).
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from timing import ROOT, interleaved, log, machine, write_results  # first: it puts the repository on sys.path

from lbinv.proximal import proximal_activation

#: name -> module factory: every activation lbinv supports (README, lbinv.proximal.SUPPORTED_ACTIVATIONS)
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "ReLU": nn.ReLU,
    "LeakyReLU": lambda: nn.LeakyReLU(0.1),
    "Hardtanh": nn.Hardtanh,
    "ReLU6": nn.ReLU6,
    "Hardsigmoid": nn.Hardsigmoid,
    "Softshrink": nn.Softshrink,
    "Softsign": nn.Softsign,
    "Sigmoid": nn.Sigmoid,
    "Tanh": nn.Tanh,
    "Softplus": nn.Softplus,
    "LogSigmoid": nn.LogSigmoid,
    "ELU": nn.ELU,
    "CELU": lambda: nn.CELU(0.5),
    "Tanhshrink": nn.Tanhshrink,
}
SHAPE = (80, 32, 16, 16)
T = 0.5


def baseline_package(rev: str, work: Path) -> Any:
    """``lbinv/proximal`` as of git revision ``rev``, imported as a separate package (its imports of
    ``lbinv.proximal`` renamed; what it imports from elsewhere in lbinv comes from the working tree)."""
    name = "_baseline_proximal"
    listing = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:lbinv/proximal"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.split()
    package = work / name
    package.mkdir()
    for file in listing:
        if file.endswith(".py"):
            text = subprocess.run(["git", "show", f"{rev}:lbinv/proximal/{file}"], cwd=ROOT, check=True,
                                  capture_output=True, text=True).stdout
            (package / file).write_text(text.replace("lbinv.proximal", name))
    sys.path.insert(0, str(work))
    return importlib.import_module(name)


def bench_prox_speed(rounds: int, baseline: Any = None, seed: int = 0) -> dict[str, Any]:
    """Median seconds of forward, prox (float and tensor t) and, given, the baseline's prox; ratios to the forward."""
    g = torch.Generator().manual_seed(seed)
    v = 2.0 * torch.randn(SHAPE, generator=g)
    t_tensor = torch.full((SHAPE[0], 1, 1, 1), T)
    out: dict[str, Any] = {}
    with torch.no_grad():
        for name, factory in ACTIVATIONS.items():
            module = factory()
            act = proximal_activation(module)
            fns = {
                "forward": lambda: module(v),
                "prox": lambda: act.prox(v, T),
                "prox_tensor_t": lambda: act.prox(v, t_tensor),
            }
            if baseline is not None:
                old = baseline.proximal_activation(factory())
                fns["prox_baseline"] = lambda: old.prox(v, T)
            seconds = interleaved(fns, torch.device("cpu"), rounds)
            row: dict[str, Any] = {"seconds": seconds}
            row["ratio"] = seconds["prox"] / seconds["forward"]
            row["ratio_tensor_t"] = seconds["prox_tensor_t"] / seconds["forward"]
            if baseline is not None:
                row["ratio_baseline"] = seconds["prox_baseline"] / seconds["forward"]
                row["speedup"] = seconds["prox_baseline"] / seconds["prox"]
            out[name] = row
            extra = f"  baseline {row['ratio_baseline']:7.1f}x" if baseline is not None else ""
            log(f"{name:12s} forward {1e3 * seconds['forward']:7.2f} ms  prox {row['ratio']:6.1f}x  "
                f"tensor t {row['ratio_tensor_t']:6.1f}x{extra}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median; default 9)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--baseline-rev", default=None,
                        help="also time the proxes of lbinv/proximal at this git revision")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {
        "machine": machine(torch.device("cpu"), args.threads),
        "shape": list(SHAPE),
        "dtype": "float32",
        "t": T,
        "rounds": args.rounds,
        "baseline_rev": args.baseline_rev,
    }
    with tempfile.TemporaryDirectory() as tmp:
        baseline = None
        if args.baseline_rev is not None:
            baseline = baseline_package(args.baseline_rev, Path(tmp))
        results["activations"] = bench_prox_speed(args.rounds, baseline)
    results["ratio"] = {k: v["ratio"] for k, v in results["activations"].items()}
    if baseline is not None:
        results["ratio_baseline"] = {k: v["ratio_baseline"] for k, v in results["activations"].items()}
    write_results(results, args.json)
    return results


if __name__ == "__main__":
    main()
