"""Cost of one inner step of the TV prox (issue 26, item 3).

    python benchmarks/tv_prox_speed.py --json benchmarks/results_tv_prox_cpu.json

The one-layer FISTA spends most of its time in the FGP steps of its TV prox
(:class:`lbinv.solvers.tv_prox.TVProx`): on the paper's 64×64 circle, 57 inner steps per outer
iteration. This times ``STEPS`` steps of ``TVProx`` against the same FGP written out with the public
operators (``TotalVariation.grad``, ``div``, ``project_dual_``: the implementation before the padded
buffers, the same arithmetic), per shape and dtype, warm-started from the same dual, isotropic TV, no
box. ``ratio`` is written-out seconds over ``TVProx`` seconds; ``us_per_step`` the ``TVProx`` seconds
per step in microseconds. Rounds interleaved, median (``timing.interleaved``); one CPU thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from timing import interleaved, log, machine, write_results  # first: it puts the repository on sys.path

from lbinv.regularizers import TotalVariation
from lbinv.solvers.loop import next_momentum
from lbinv.solvers.tv_prox import TVProx

#: key -> image batch shape: the circle instances of peers.py, a batch of MNIST-sized images, a colour batch
SHAPES = {"circle32": (1, 1, 32, 32), "circle64": (1, 1, 64, 64), "mnist80": (80, 1, 28, 28), "colour16": (16, 3, 32, 32)}
STEPS = 100


def written_out(tv: TotalVariation, lam: torch.Tensor, step: torch.Tensor, v: torch.Tensor, p: torch.Tensor, steps: int) -> torch.Tensor:
    """FGP with the public operators (tv_prox's module docstring), no box."""
    q, t = p, 1.0
    for _ in range(steps):
        x = v.addcmul(lam, tv.div(q))
        p_new = tv.project_dual_(q.addcmul(step, tv.grad(x)))
        t_new = next_momentum(t)
        q = p_new.lerp(p, (1.0 - t) / t_new)
        p, t = p_new, t_new
    return v.addcmul(lam, tv.div(p))


def run(rounds: int) -> dict[str, Any]:
    tv, out = TotalVariation(), {}
    for dtype in (torch.float64, torch.float32):
        for key, shape in SHAPES.items():
            g = torch.Generator().manual_seed(0)
            v = torch.rand(shape, generator=g, dtype=dtype)
            prox = TVProx(tv, None, torch.full((shape[0],), 0.02, dtype=dtype), v)
            _, p = prox(v, tv.zero_dual(v), 50)  # a warm dual, as inside a solve
            seconds = interleaved(
                {
                    "lbinv": lambda prox=prox, v=v, p=p: prox(v, p, STEPS),
                    "written_out": lambda prox=prox, v=v, p=p: written_out(tv, prox.lam, prox.dual_step, v, p, STEPS),
                },
                torch.device("cpu"),
                rounds,
            )
            name = f"{key}_{str(dtype).removeprefix('torch.')}"
            out[name] = {
                "seconds": seconds,
                "ratio": seconds["written_out"] / seconds["lbinv"],
                "us_per_step": 1e6 * seconds["lbinv"] / STEPS,
            }
            log(f"  {name}: {out[name]['us_per_step']:.0f} us a step, written out / lbinv {out[name]['ratio']:.2f}")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (median; default 15)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"machine": machine(torch.device("cpu"), args.threads), "steps": STEPS, "shapes": run(args.rounds)}
    write_results(results, args.json)
    return results


if __name__ == "__main__":
    main()
