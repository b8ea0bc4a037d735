"""Convergence of multi-layer lifted inversion on a trained conv AE (issue 16): the paper's coordinate
descent (``solver="pdhg"``) against the inertial one (``solver="fista"``, the default) and the same
without hidden blocks that follow their inputs (``fista_no_follow``, the previous default), and
against Adam through the network and the decoder under code noise.

    python benchmarks/multilayer.py --json benchmarks/results_multilayer_cpu.json

The conv AE (MATH.md §9) is trained here with the conv config's optimiser (SGD 0.3, momentum 0.9,
batch 32) on 4,000 of the bundled MNIST digits; the probe is 8 held-out digits, box [0, 1], float64,
one thread.

- ``sweeps_to_1e-3`` (``run.py``'s ``multilayer_sweeps_to_1e-3``): per variant, the sweeps until every
  sample's objective is within 1e−3 (relative) of the best of the two solvers' ``reference_sweeps``
  runs (σ = 0, α = 2e−3), from x = 0 and from the decoder's output; with the seconds to get there
  (one timed 3,000-sweep run, prorated) and the gap after 300 sweeps.
- ``noise_psnr``: σ = 0.1, mean PSNR for each α of a small grid (each method's best marked), the
  lifted solvers and Adam (``method="gradient"``) with the same iteration budget, and the decoder.
- ``random_encoders``: two small random float64 encoders of 16×16 squares (conv → ReLU → conv → ReLU →
  linear → ReLU; a LeakyReLU body with a linear head), zero noise, α = 1e−6, 3,000 iterations from
  x = 0: the largest relative code residual ``‖N(x̂) − y‖ / ‖y‖`` and the seconds, per method.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from timing import log, machine, write_results  # first: it puts the repository on sys.path

from lbinv import LiftedNetwork, invert
from lbinv.lightning.data import load_mnist_5k
from lbinv.lightning.models import ConvAutoencoder
from lbinv.metrics import psnr
from lbinv.solvers.accelerated_cd import AcceleratedCoordinateDescent

SOLVERS = ("pdhg", "fista")  # the paper's coordinate descent, the inertial one
#: the variants timed for sweeps to 1e−3 and on the random encoders: (name, solver, following on)
VARIANTS = (("pdhg", "pdhg", True), ("fista", "fista", True), ("fista_no_follow", "fista", False))


@contextlib.contextmanager
def following(on: bool) -> Iterator[None]:
    """The inertial sweep as it is (``on``), or with hidden blocks that do not follow their inputs."""
    if on:
        yield
        return
    original = AcceleratedCoordinateDescent.__init__

    def without(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.follow.zero_()
        self.follow_floor = [0.0] * len(self.follow_floor)

    AcceleratedCoordinateDescent.__init__ = without
    try:
        yield
    finally:
        AcceleratedCoordinateDescent.__init__ = original


def trained_conv_ae(epochs: int, seed: int = 0) -> tuple[ConvAutoencoder, torch.Tensor]:
    """The conv AE after ``epochs`` of SGD on 4,000 bundled digits; returns it (float64, eval) and 8 held-out digits."""
    digits, _ = load_mnist_5k()
    order = torch.randperm(digits.shape[0], generator=torch.Generator().manual_seed(seed))
    images = digits[order].float() / 255.0
    train, probe = images[:4000], images[4000:4008]
    torch.manual_seed(seed)
    ae = ConvAutoencoder()
    opt = torch.optim.SGD(ae.parameters(), lr=0.3, momentum=0.9)
    for _ in range(epochs):
        for batch in train[torch.randperm(4000)].split(32):
            opt.zero_grad()
            torch.nn.functional.mse_loss(ae(batch), batch).backward()
            opt.step()
    return ae.double().eval(), probe.double()


def objective_trace(net: LiftedNetwork, y: torch.Tensor, alpha: float, solver: str, sweeps: int,
                    x_init: torch.Tensor | None) -> tuple[torch.Tensor, float]:
    """Per-check objectives ``(checks, B)`` of ``sweeps`` sweeps (every 10), and the seconds taken."""
    start = time.perf_counter()
    res = invert(net, y, alpha=alpha, bounds=(0.0, 1.0), max_iter=sweeps, tol=0.0, solver=solver,
                 x_init=x_init, record_history=True)
    return res.history["objective"], time.perf_counter() - start


def bench_multilayer(quick: bool) -> dict[str, Any]:
    reference_sweeps = 3000 if quick else 10_000
    ae, images = trained_conv_ae(2 if quick else 8)
    net = LiftedNetwork.from_module(ae.encoder, (1, 28, 28))
    with torch.no_grad():
        code = ae.encoder(images)
    alpha = 2e-3
    log(f"multilayer: references, {reference_sweeps} sweeps per solver")
    best = torch.stack([objective_trace(net, code, alpha, s, reference_sweeps, None)[0][-1] for s in SOLVERS]).amin(0)
    out: dict[str, Any] = {"reference_sweeps": reference_sweeps, "alpha": alpha, "sweeps_to_1e-3": {}}
    starts = {"zero": None, "decoder": ae.decoder(code).detach().clamp(0.0, 1.0)}
    for start, x_init in starts.items():
        for name, solver, on in VARIANTS:
            with following(on):
                trace, seconds = objective_trace(net, code, alpha, solver, 3000, x_init)
            gap = ((trace - best) / best).amax(1)  # the worst sample, per check
            within = (gap <= 1e-3).nonzero()
            sweeps = int(10 * (within[0, 0] + 1)) if len(within) else None  # None: not within 3,000
            out["sweeps_to_1e-3"][f"{name}_from_{start}"] = {
                "sweeps": sweeps,
                "seconds": None if sweeps is None else seconds * sweeps / 3000,
                "gap_after_300": float(gap[29]),
            }
            log(f"multilayer: {name} from {start}: {sweeps} sweeps to 1e-3, gap {float(gap[29]):.2e} after 300")
    out["noise_psnr"] = noise_psnr(ae, net, images, sweeps=1500 if quick else 3000)
    out["random_encoders"] = random_encoders()
    return out


def random_encoders(iterations: int = 3000) -> dict[str, Any]:
    """Code residuals of the lifted solvers and Adam on two small random encoders (see the module docstring)."""
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, 2, 1), nn.ReLU(), nn.Conv2d(4, 8, 3, 2, 1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(128, 32), nn.ReLU())
    torch.manual_seed(1)
    leaky = nn.Sequential(nn.Flatten(), nn.Linear(256, 64), nn.LeakyReLU(0.1), nn.Linear(64, 32), nn.LeakyReLU(0.1),
                          nn.Linear(32, 16))
    x = torch.zeros(4, 1, 16, 16, dtype=torch.float64)
    for i, (r, c) in enumerate([(2, 3), (6, 1), (1, 8), (8, 8)]):
        x[i, 0, r : r + 6, c : c + 6] = 1.0
    out: dict[str, Any] = {"iterations": iterations}
    for name, encoder in {"conv_relu": conv, "leaky_linear_head": leaky}.items():
        encoder = encoder.double().eval()
        with torch.no_grad():
            y = encoder(x)
        out[name] = {}
        runs = {"lifted_fista": ({}, True), "lifted_fista_no_follow": ({}, False), "lifted_pdhg": ({"solver": "pdhg"}, True),
                "adam": ({"method": "gradient"}, True)}
        for method, (kwargs, on) in runs.items():
            start = time.perf_counter()
            with following(on):
                res = invert(encoder, y, alpha=1e-6, input_shape=(1, 16, 16), max_iter=iterations, tol=0.0, **kwargs)
            seconds = time.perf_counter() - start
            with torch.no_grad():
                residual = ((encoder(res.x) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).max()
            out[name][method] = {"code_residual": float(residual), "seconds": seconds}
            log(f"multilayer: {name} {method}: code residual {float(residual):.2e}")
    return out


def noise_psnr(ae: ConvAutoencoder, net: LiftedNetwork, images: torch.Tensor, sweeps: int, sigma: float = 0.1) -> dict[str, Any]:
    """Mean PSNR at code noise σ for each α of a grid: both lifted solvers, Adam, and the decoder."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        code = ae.encoder(images)
        noisy = (code + sigma * torch.randn(code.shape, generator=g, dtype=code.dtype)).clamp_min(0.0)
        decoded = ae.decoder(noisy).clamp(0.0, 1.0)
    grid = (3e-3, 1e-2, 3e-2)
    n = images.shape[0]
    stacked = noisy.repeat(len(grid), 1)
    alphas = torch.tensor(grid, dtype=code.dtype).repeat_interleave(n)
    truth = images.repeat(len(grid), 1, 1, 1)
    out: dict[str, Any] = {"sigma": sigma, "sweeps": sweeps, "alpha_grid": list(grid), "decoder": float(psnr(decoded, images).mean())}
    runs = {f"lifted_{s}": {"solver": s} for s in SOLVERS} | {"adam": {"method": "gradient"}}
    for name, kwargs in runs.items():
        res = invert(net, stacked, alpha=alphas, bounds=(0.0, 1.0), max_iter=sweeps, tol=0.0, **kwargs)
        per_alpha = psnr(res.x, truth).reshape(len(grid), n).mean(1)
        out[name] = {"psnr_per_alpha": per_alpha.tolist(), "best_psnr": float(per_alpha.max()),
                     "best_alpha": grid[int(per_alpha.argmax())]}
        log(f"multilayer: σ={sigma} {name}: best {float(per_alpha.max()):.2f} dB")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 training epochs and 3,000-sweep references")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    info = machine(torch.device("cpu"), 1)
    result = {"machine": info, "quick": args.quick, "multilayer": bench_multilayer(args.quick)}
    write_results(result, args.json)
    return result


if __name__ == "__main__":
    main()
