"""What the inversion callback logs, and where: the scalar tags (to every logger of the trainer),
and in TensorBoard the custom-scalars layout, the image grids, the PSNR-vs-σ figure and the final
table (:func:`write`); :class:`Publisher` logs one inversion's worth from rank zero. Every tag the
callback writes is named here; the numbers are :func:`lbinv.probe.level_numbers`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import Tensor

from lbinv.lightning.callback.messages import Notices
from lbinv.lightning.callback.namespaces import TENSORBOARD_LOGGERS
from lbinv.probe import ProbeResult, ProbeSummary, level_numbers

if TYPE_CHECKING:  # either namespace's Trainer
    from lightning.pytorch import Trainer

#: The solver's wall time of an inversion (slowest rank; a final inversion's rounds summed).
SECONDS_TAG = "inversion/seconds"
FIGURE_TAG = "inversion/psnr_vs_sigma"
#: The final inversion's table (:func:`final_table`), as text.
FINAL_TAG = "inversion/final"


class Publisher:
    """Logs the callback's inversions from rank zero: the scalars to every logger of the trainer (as
    LearningRateMonitor does), the rest to each TensorBoard logger (:func:`write`; the layout once)."""

    def __init__(self, noise_levels: Sequence[float], has_decoder: bool, log_images: bool, notices: Notices) -> None:
        self.noise_levels, self.has_decoder, self.log_images, self.notices = tuple(noise_levels), has_decoder, log_images, notices
        self.layout_written = False

    def publish(
        self,
        trainer: Trainer,
        step: int,
        summary: ProbeSummary,
        out: ProbeResult,
        probe: Tensor,
        data_range: tuple[float, float],
        final: bool,
    ) -> None:
        """Log one inversion at ``step`` (nothing on the other ranks: the results are the same on all)."""
        if not trainer.is_global_zero:
            return
        values = scalars(summary)
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)
        boards: list[Any] = [logger for logger in trainer.loggers if isinstance(logger, TENSORBOARD_LOGGERS)]
        if not boards:
            self.notices.warn(
                trainer,
                "no-tensorboard",
                "InversionCallback: no TensorBoardLogger among the trainer's loggers; the inversion scalars go to its "
                "loggers and to `last_summary`, and the images, the PSNR-vs-sigma figure and the custom-scalars layout "
                "are skipped.",
            )
        for board in boards:
            images = write(
                board.experiment,
                step,
                summary,
                probe,
                out,
                self.noise_levels,
                data_range,
                has_decoder=self.has_decoder,
                log_images=self.log_images,
                layout=not self.layout_written,
                final=final,
            )
            if self.log_images and not images:
                self.notices.warn(
                    trainer,
                    "no-images",
                    f"InversionCallback: inputs of shape {tuple(probe.shape[1:])} are "
                    "not images (C, H, W) with C in (1, 3); no image grids are logged.",
                )
        self.layout_written = self.layout_written or bool(boards)


def scalars(summary: ProbeSummary) -> dict[str, float]:
    """The scalar tags and values of a summary, ``inversion/{number}/sigma_{σ:g}`` for each of
    :func:`lbinv.probe.level_numbers`; levels left out of the inversion and numbers that are
    ``None`` (no finite sample, no decoder) are left out."""
    values: dict[str, float] = {}
    for level in summary.levels:
        if not level["inverted"]:
            continue
        for name in level_numbers():
            if level.get(name) is not None:
                values[f"inversion/{name}/sigma_{level['sigma']:g}"] = level[name]
    values[SECONDS_TAG] = summary.seconds
    return values


def write(
    writer: Any,
    step: int,
    summary: ProbeSummary,
    probe: Tensor,
    out: ProbeResult,
    noise_levels: Sequence[float],
    data_range: tuple[float, float],
    *,
    has_decoder: bool,
    log_images: bool,
    layout: bool,
    final: bool = False,
) -> bool:
    """Write what TensorBoard alone shows of one inversion to its ``SummaryWriter`` at ``step`` (the
    scalars go to every logger, :func:`scalars`): the custom-scalars layout (with ``layout``, once per
    run), with ``log_images`` the image grids and the PSNR-vs-σ figure, and with ``final`` the table
    of :func:`final_table`. Returns whether image grids were written (False: the inputs are not images)."""
    if layout:
        writer.add_custom_scalars(custom_scalars_layout(has_decoder))
    grids = None
    if log_images:
        inverted = [level["inverted"] for level in summary.levels]
        grids = image_grids(probe, out, summary.index, noise_levels, data_range, inverted)
        for tag, grid in (grids or {}).items():
            writer.add_image(tag, grid, global_step=step)
        writer.add_figure(FIGURE_TAG, psnr_figure(summary, has_decoder), global_step=step, close=True)
    if final:
        writer.add_text(FINAL_TAG, final_table(summary.levels, has_decoder), global_step=step)
    writer.flush()
    return grids is not None


def custom_scalars_layout(has_decoder: bool) -> dict[str, Any]:
    """Charts of the "CUSTOM SCALARS" tab, one per number of :func:`lbinv.probe.level_numbers` (and
    the two PSNRs together with a decoder): one line per noise level in each."""
    charts = {title: ["Multiline", [rf"inversion/{name}/.*"]] for name, title in level_numbers(has_decoder).items()}
    if has_decoder:
        charts["PSNR inverted vs decoded (dB)"] = ["Multiline", [r"inversion/psnr_(inverted|decoded)/.*"]]
    return {"inversion": charts}


def image_grids(
    probe: Tensor,
    out: ProbeResult,
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
        if out.x_dec is not None:
            rows.append(out.x_dec[i].float().cpu())
        rows.append(out.x_inv[i, :, index[i]].float().cpu())
        tiles = torch.cat(rows).nan_to_num(nan=lo)
        if len(shape) == 2:
            tiles = tiles.unsqueeze(1)  # one channel
        grid = make_grid(tiles, nrow=probe.shape[0], padding=1, normalize=True, value_range=(lo, hi), pad_value=1.0)
        grids[f"inversion/images/sigma_{s:g}"] = grid
    return grids


def psnr_figure(summary: ProbeSummary, has_decoder: bool) -> Any:
    """Mean PSNR of the inversion (and of the decoder) against the noise level σ."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.5, 3.2), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    levels = summary.levels
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
        cells = [
            f"{level['sigma']:g}",
            number(level["delta2"], ".3g"),
            number(level["alpha"], ".3g"),
            number(level["psnr_inverted"], ".2f"),
        ]
        cells += [number(level["psnr_decoded"], ".2f")] if has_decoder else []
        cells += [number(level["converged_fraction"], ".2f")]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
