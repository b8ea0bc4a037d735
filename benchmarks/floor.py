"""How close lbinv runs to its floor (issue 26, item 4).

    python benchmarks/floor.py --json benchmarks/results_floor_cpu.json

Two figures, both measured in this run:

- ``sweep_vs_forward_backward``, per encoder: seconds of one lifted sweep (the default solver, a
  batch of 80 codes, float32) over seconds of one forward plus one backward pass of the encoder on
  the same batch, the floor of any method that reads every layer and its adjoint once. A sweep's
  seconds are the difference of two solves of ``sweeps[1]`` and ``sweeps[0]`` sweeps (``tol=0``),
  divided by the difference of the counts, so that the set-up (lifting, operator norms) cancels.
  Encoders: the paper's conv encoder, the UvA tutorial 9 encoder (5 convolutions + ELU, a Linear
  head, 32×32; ``projects/uva.py``), the same with ReLU and with each smooth activation lbinv
  supports (``uva_sigmoid``, …; LeakyReLU with slope 0.1, CELU with α = 0.5), timed over fewer
  sweeps (``FEW_SWEEPS``: 6 and 2; Tanhshrink, whose sweep costs tens of passes, 2 and 1).
- ``box_stop_iterations_ratio``: iterations of the one-layer solver to its certified stop at
  ``tol=1e-6`` on the paper's 64×64 circle (float64) with ``bounds=(0, 1)``, which do not bind at
  the optimum, over the iterations without bounds. Iteration counts, not timings.

Rounds are interleaved and reduced by the median (``timing.interleaved``); one CPU thread.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any, Callable

import torch
from torch import nn

from timing import interleaved, log, machine, write_results  # first: it puts the repository on sys.path

from circle import make_problem  # experiments/circle.py
from lbinv import LiftedNetwork, invert
from projects.uva import Encoder as UvAEncoder


#: the smooth activations of the UvA encoder beside ELU: key suffix -> module factory
SMOOTH: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "logsigmoid": nn.LogSigmoid,
    "celu": lambda: nn.CELU(0.5),
    "softsign": nn.Softsign,
    "tanhshrink": nn.Tanhshrink,
    "leakyrelu": lambda: nn.LeakyReLU(0.1),
}
#: the sweep counts of the added smooth encoders (fewer, to keep the run short; Tanhshrink's sweep is slow)
FEW_SWEEPS = {**{f"uva_{name}": (2, 6) for name in SMOOTH}, "uva_tanhshrink": (1, 2)}


def encoders() -> dict[str, tuple[nn.Module, tuple[int, ...]]]:
    """The encoders measured, seeded, in eval mode, with their input shapes."""
    from lbinv.lightning.models import ConvAutoencoder  # imports Lightning

    torch.manual_seed(0)
    paper = ConvAutoencoder().encoder
    uva = {act.__name__: UvAEncoder(1, 32, 128, act_fn=act) for act in (nn.ELU, nn.ReLU)}
    out = {
        "paper_conv": (paper.eval(), (1, 28, 28)),
        "uva_elu": (uva["ELU"].eval(), (1, 32, 32)),
        "uva_relu": (uva["ReLU"].eval(), (1, 32, 32)),
    }
    for name, act in SMOOTH.items():
        torch.manual_seed(0)
        out[f"uva_{name}"] = (UvAEncoder(1, 32, 128, act_fn=act).eval(), (1, 32, 32))
    return out


def bench_sweep_vs_forward_backward(
    device: torch.device, batch: int = 80, sweeps: tuple[int, int] = (3, 13), rounds: int = 5
) -> dict[str, Any]:
    out: dict[str, Any] = {"batch": batch, "sweeps": sweeps, "encoders": {}}
    default_sweeps = sweeps
    for name, (encoder, shape) in encoders().items():
        sweeps = FEW_SWEEPS.get(name, default_sweeps)
        encoder = encoder.to(device)
        x = torch.rand(batch, *shape, generator=torch.Generator().manual_seed(1)).to(device)
        with torch.no_grad():
            y = encoder(x)
        net = LiftedNetwork.from_module(encoder, shape)
        solves = {f"sweeps_{k}": functools.partial(invert, net, y, alpha=1e-3, max_iter=k, tol=0.0) for k in sweeps}

        def forward_backward(encoder=encoder, x=x):
            x = x.detach().requires_grad_(True)
            encoder(x).sum().backward()

        t = interleaved({**solves, "forward_backward": forward_backward}, device, rounds)
        sweep = (t[f"sweeps_{sweeps[1]}"] - t[f"sweeps_{sweeps[0]}"]) / (sweeps[1] - sweeps[0])
        out["encoders"][name] = {
            "sweeps": sweeps,
            "seconds": t,
            "seconds_per_sweep": sweep,
            "ratio": sweep / t["forward_backward"],
        }
        log(f"  {name}: a sweep = {out['encoders'][name]['ratio']:.2f} forward + backward passes")
    return out


def bench_box_stop(device: torch.device, tol: float = 1e-6, max_iter: int = 20_000) -> dict[str, Any]:
    perceptron, _, _, y_delta = make_problem(64, 512, 0.005, 0, str(device), torch.float64)
    solve = functools.partial(invert, perceptron, y_delta, alpha=1.5e-2, input_shape=(1, 64, 64), tol=tol, max_iter=max_iter)
    free, boxed = solve(), solve(bounds=(0.0, 1.0))
    iterations = {"unboxed": int(free.iterations), "boxed": int(boxed.iterations)}
    return {
        "problem": "circle 64x64, Linear(4096, 512) + ReLU, alpha=1.5e-2, float64",
        "tol": tol,
        "iterations": iterations,
        "converged": {"unboxed": bool(free.converged), "boxed": bool(boxed.converged)},
        "solution_range": [float(free.x.min()), float(free.x.max())],
        "ratio": iterations["boxed"] / iterations["unboxed"],
    }


def run(device: torch.device, quick: bool = False) -> dict[str, Any]:
    log("a lifted sweep against forward + backward, per encoder")
    sweep = bench_sweep_vs_forward_backward(device, rounds=3 if quick else 5)
    log("the certified stop with a box that does not bind")
    box = bench_box_stop(device)
    return {
        "sweep_vs_forward_backward": {name: e["ratio"] for name, e in sweep["encoders"].items()},
        "box_stop_iterations_ratio": box["ratio"],
        "details": {"sweep": sweep, "box": box},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = {"machine": machine(device, args.threads), **run(device, args.quick)}
    write_results(results, args.json)
    return results


if __name__ == "__main__":
    main()
