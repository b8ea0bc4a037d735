"""Reproduce the paper's circle experiment (sec. 5.1.1, MATH.md §9).

A 64×64 disc seen through a random ReLU perceptron nn.Linear(4096, 512) with PyTorch's default
initialisation, noisy data ``clip₊(y + N(0, 0.005²))``, inverted with Landweber + discrepancy
principle and with lifted-Bregman TV-PDHG (α = 1.5e−2, the paper's solver: ``solver="pdhg"``), both
through ``lbinv.invert``.

    python experiments/circle.py --out results/circle [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from lbinv import invert
from lbinv.metrics import psnr, relative_error, tv_anisotropic, tv_isotropic

#: The paper's figures: ‖x‖ / anisotropic TV (MATH.md §9).
PAPER = {"ground_truth": (28.07, 128.0), "landweber": (6.58, 707.02), "tv": (25.69, 114.93)}


def make_disc(size: int = 64, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The disc ``X² + Y² ≤ 0.25`` on a ``linspace(−1, 1, size)²`` grid, shape (1, 1, size, size)."""
    grid = torch.linspace(-1, 1, size, dtype=dtype)
    X, Y = torch.meshgrid(grid, grid, indexing="xy")
    return (X**2 + Y**2 <= 0.25).to(dtype)[None, None]


def make_problem(size: int, measurements: int, noise_std: float, seed: int, device: str, dtype: torch.dtype):
    """Disc, ReLU perceptron (default init under ``seed``; it reads the flattened image), clean
    and noisy data."""
    torch.manual_seed(seed)
    perceptron = nn.Sequential(nn.Linear(size * size, measurements), nn.ReLU()).to(device=device, dtype=dtype)
    x_true = make_disc(size, dtype).to(device)
    with torch.no_grad():
        y = perceptron(x_true.flatten(1))
        y_delta = (y + noise_std * torch.randn_like(y)).clamp_min(0.0)
    return perceptron, x_true, y, y_delta


def measures(x: torch.Tensor, x_true: torch.Tensor) -> dict[str, float | None]:
    """‖x‖, both TVs, relative error and PSNR (None where infinite: JSON has no infinity)."""
    value = psnr(x, x_true).item()
    return {
        "l2": x.flatten(1).norm(dim=1).item(),
        "tv_iso": tv_isotropic(x).item(),
        "tv_aniso": tv_anisotropic(x).item(),
        "rel_error": relative_error(x, x_true).item(),
        "psnr": value if math.isfinite(value) else None,
    }


def run_circle(
    size: int = 64,
    measurements: int = 512,
    noise_std: float = 0.005,
    alpha: float = 1.5e-2,
    max_iter: int = 10_000,
    tol: float = 1e-5,
    seed: int = 0,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
    compare_steps: bool = True,
) -> tuple[dict, dict]:
    """Run both methods; return the results table and the tensors/histories for the figures."""
    perceptron, x_true, y, y_delta = make_problem(size, measurements, noise_std, seed, device, dtype)
    shape = (1, size, size)
    delta = (y_delta - y).norm(dim=1)
    table: dict = {"ground_truth": measures(x_true, x_true), "delta": delta.item(), "alpha": alpha}

    start = time.perf_counter()
    lw = invert(perceptron, y_delta, input_shape=shape, method="landweber", regularizer=None,
                noise_level=delta, max_iter=max_iter, tol=tol, check_every=1)
    lw_seconds = time.perf_counter() - start
    residual = (perceptron(lw.x.flatten(1)) - y_delta).norm(dim=1)
    table["landweber"] = {**measures(lw.x, x_true), "iterations": int(lw.iterations.item()),
                          "seconds": lw_seconds, "residual": residual.item(), "converged": bool(lw.converged.item())}

    start = time.perf_counter()
    pdhg = dict(alpha=alpha, input_shape=shape, max_iter=max_iter, solver="pdhg")
    tv = invert(perceptron, y_delta, tol=tol, record_history=True, **pdhg)
    tv_seconds = time.perf_counter() - start
    table["tv"] = {**measures(tv.x, x_true), "iterations": int(tv.iterations.item()), "seconds": tv_seconds,
                   "objective": tv.objective.item(), "converged": bool(tv.converged.item())}
    figures = {"x_true": x_true, "landweber": lw.x, "tv": tv.x, "histories": {"default": tv.history}}
    if compare_steps:
        paper = invert(perceptron, y_delta, tol=tol, record_history=True, step_rule="paper", **pdhg)
        figures["histories"]["paper"] = paper.history
        table["tv_paper_steps"] = {"iterations": int(paper.iterations.item()), "objective": paper.objective.item()}
        reference = invert(perceptron, y_delta, tol=1e-10, **pdhg)
        figures["optimum"] = table["optimum"] = reference.objective.item()
    return table, figures


def print_table(table: dict) -> None:
    print(f"{'':14s}{'paper ‖x‖':>11s}{'ours ‖x‖':>11s}{'paper TV':>11s}{'ours TVaniso':>14s}{'ours TViso':>12s}{'rel.err':>9s}{'iters':>7s}")
    for key in ("ground_truth", "landweber", "tv"):
        row, (pl2, ptv) = table[key], PAPER[key]
        iters = row.get("iterations", "")
        print(f"{key:14s}{pl2:11.2f}{row['l2']:11.2f}{ptv:11.2f}{row['tv_aniso']:14.2f}{row['tv_iso']:12.2f}"
              f"{row['rel_error']:9.3f}{iters:>7}")


def save_figures(figures: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = [figures[k][0, 0].cpu() for k in ("x_true", "landweber", "tv")]
    lo = min(float(im.min()) for im in images)
    hi = max(float(im.max()) for im in images)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    for ax, im, title in zip(axes, images, ("ground truth", "Landweber + discrepancy", "lifted Bregman TV-PDHG")):
        shown = ax.imshow(im, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title)
        ax.axis("off")
    fig.colorbar(shown, ax=axes, shrink=0.8)
    fig.savefig(out / "circle.png", dpi=120, bbox_inches="tight")
    plt.close(fig)

    histories = figures["histories"]
    best = min(figures["optimum"], *(h["objective"].min().item() for h in histories.values()))
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, h in histories.items():
        gap = (h["objective"][:, 0] - best).clamp_min(1e-16).cpu()
        ax.semilogy(h["iteration"], gap, label=f"{name} step rule")
    ax.set_xlabel("iteration")
    ax.set_ylabel("objective − optimum")
    ax.set_title("TV-PDHG on the circle problem")
    ax.legend()
    fig.savefig(out / "circle_convergence.png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/circle"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--alpha", type=float, default=1.5e-2)
    parser.add_argument("--max-iter", type=int, default=10_000)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (one is fastest for these small iterations)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    table, figures = run_circle(alpha=args.alpha, max_iter=args.max_iter, tol=args.tol, seed=args.seed, device=args.device)
    (args.out / "circle.json").write_text(json.dumps(table, indent=2))
    save_figures(figures, args.out)
    print_table(table)
    paper_iters = table["tv_paper_steps"]["iterations"]
    print(f"TV-PDHG: {table['tv']['iterations']} iterations with the default step rule, {paper_iters} with the paper's")
    print(f"wrote {args.out / 'circle.json'}, {args.out / 'circle.png'}, {args.out / 'circle_convergence.png'}")


if __name__ == "__main__":
    main()
