"""What the inversion callback shows in TensorBoard: scalar tags, the custom-scalars layout, the
image grids and the PSNR-vs-σ figure, and :func:`write`, which writes one inversion's worth. Every
tag the callback writes is named here; when and from which rank (and ``pl_module.log`` without a
TensorBoard logger) is the callback's business.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor

#: Per-level numbers of the summary, logged as ``inversion/{name}/sigma_{s:g}``.
LEVEL_SCALARS = (
    "psnr_inverted", "psnr_decoded", "delta2", "delta2_bregman", "alpha", "iterations", "converged_fraction", "bregman_sym"
)
FIGURE_TAG = "inversion/psnr_vs_sigma"
#: The final inversion's table (:func:`final_table`), as text.
FINAL_TAG = "inversion/final"


def scalars(summary: dict[str, Any]) -> dict[str, float]:
    """The scalar tags and values of a summary (see :func:`lbinv.probe.summarize`); levels left out
    of the inversion and numbers that are ``None`` (no finite sample) are left out."""
    values: dict[str, float] = {}
    for level in summary["levels"]:
        if not level.get("inverted", True):
            continue
        for name in LEVEL_SCALARS:
            if level[name] is not None:
                values[f"inversion/{name}/sigma_{level['sigma']:g}"] = level[name]
    values["inversion/seconds"] = summary["seconds"]
    return values


def write(
    writer: Any,
    step: int,
    summary: dict[str, Any],
    probe: Tensor,
    out: dict[str, Tensor],
    noise_levels: Sequence[float],
    data_range: tuple[float, float],
    *,
    has_decoder: bool,
    log_images: bool,
    layout: bool,
    final: bool = False,
) -> bool:
    """Write one inversion to a TensorBoard ``SummaryWriter`` at ``step``: the custom-scalars layout
    (with ``layout``, once per run), the scalars, with ``log_images`` the image grids and the
    PSNR-vs-σ figure, and with ``final`` the table of :func:`final_table`. Returns whether image
    grids were written (False: the inputs are not images)."""
    if layout:
        writer.add_custom_scalars(custom_scalars_layout(has_decoder))
    for tag, value in scalars(summary).items():
        writer.add_scalar(tag, value, global_step=step)
    grids = None
    if log_images:
        inverted = [level.get("inverted", True) for level in summary["levels"]]
        grids = image_grids(probe, out, summary["index"], noise_levels, data_range, inverted)
        for tag, grid in (grids or {}).items():
            writer.add_image(tag, grid, global_step=step)
        writer.add_figure(FIGURE_TAG, psnr_figure(summary, has_decoder), global_step=step, close=True)
    if final:
        writer.add_text(FINAL_TAG, final_table(summary["levels"], has_decoder), global_step=step)
    writer.flush()
    return grids is not None


def custom_scalars_layout(has_decoder: bool) -> dict[str, Any]:
    """Charts of the "CUSTOM SCALARS" tab: one line per noise level in each."""
    charts = {
        "PSNR inverted (dB)": ["Multiline", [r"inversion/psnr_inverted/.*"]],
        "PSNR decoded (dB)": ["Multiline", [r"inversion/psnr_decoded/.*"]],
        "PSNR inverted vs decoded (dB)": ["Multiline", [r"inversion/psnr_(inverted|decoded)/.*"]],
        "delta^2 = |y_delta - y|^2": ["Multiline", [r"inversion/delta2/.*"]],
        "delta^2 as B_Psi(y_delta, W x + b)": ["Multiline", [r"inversion/delta2_bregman/.*"]],
        "alpha": ["Multiline", [r"inversion/alpha/.*"]],
        "iterations": ["Multiline", [r"inversion/iterations/.*"]],
        "share of the probe converged": ["Multiline", [r"inversion/converged_fraction/.*"]],
        "symmetric Bregman distance of TV (one-layer encoders)": ["Multiline", [r"inversion/bregman_sym/.*"]],
    }
    if not has_decoder:
        del charts["PSNR decoded (dB)"], charts["PSNR inverted vs decoded (dB)"]
    return {"inversion": charts}


def image_grids(
    probe: Tensor,
    out: dict[str, Tensor],
    index: Tensor,
    noise_levels: Sequence[float],
    data_range: tuple[float, float],
    inverted: Optional[Sequence[bool]] = None,
) -> Optional[dict[str, Tensor]]:
    """Per noise level (of those ``inverted``, default all), a grid whose rows are truth / decoder /
    inversion at the chosen α (``index``), drawn with the fixed ``data_range`` (NaN pixels as its
    low end); ``None`` when the inputs are not images: ``(H, W)`` or ``(C, H, W)`` with C in (1, 3)."""
    from torchvision.utils import make_grid

    shape = tuple(probe.shape[1:])
    if not (len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3))):
        return None
    lo, hi = data_range
    grids = {}
    for i, s in enumerate(noise_levels):
        if inverted is not None and not inverted[i]:
            continue
        rows = [probe.float()]
        if "x_dec" in out:
            rows.append(out["x_dec"][i].float().cpu())
        rows.append(out["x_inv"][i, :, index[i]].float().cpu())
        tiles = torch.cat(rows).nan_to_num(nan=lo)
        if len(shape) == 2:
            tiles = tiles.unsqueeze(1)  # one channel
        grid = make_grid(tiles, nrow=probe.shape[0], padding=1, normalize=True, value_range=(lo, hi), pad_value=1.0)
        grids[f"inversion/images/sigma_{s:g}"] = grid
    return grids


def psnr_figure(summary: dict[str, Any], has_decoder: bool) -> Any:
    """Mean PSNR of the inversion (and of the decoder) against the noise level σ."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    levels = summary["levels"]
    sigma = [level["sigma"] for level in levels]

    def curve(name: str) -> list[float]:
        return [math.nan if level[name] is None else level[name] for level in levels]

    ax.plot(sigma, curve("psnr_inverted"), "o-", label="inversion")
    if has_decoder:
        ax.plot(sigma, curve("psnr_decoded"), "s--", label="decoder")
    ax.set_xlabel("noise std σ on the code")
    ax.set_ylabel("PSNR (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    figure.tight_layout()
    return figure


def final_table(levels: Sequence[dict[str, Any]], has_decoder: bool) -> str:
    """The final inversion's numbers per noise level as a Markdown table: σ, δ² (mean ‖y^δ − y‖²),
    α, PSNR of the inversion and of the decoder (dB), and the converged fraction."""

    def number(value: Optional[float], spec: str) -> str:
        return "–" if value is None else format(value, spec)

    head = ["σ", "δ²", "α", "PSNR inverted"] + (["PSNR decoded"] if has_decoder else []) + ["converged"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for level in levels:
        cells = [f"{level['sigma']:g}", number(level["delta2"], ".3g"), number(level["alpha"], ".3g"),
                 number(level["psnr_inverted"], ".2f")]
        cells += [number(level["psnr_decoded"], ".2f")] if has_decoder else []
        cells += [number(level["converged_fraction"], ".2f")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
