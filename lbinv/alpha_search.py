"""The α of ``alpha="auto"``, searched locally on a log grid as the encoder trains
(:class:`AlphaSearch`), and the warm starts it moves between (:class:`WarmStarts`): what the probe
carries from one inversion to the next. Plain PyTorch, like :mod:`lbinv.probe`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import Tensor

from lbinv.probe import per_image

#: α grid of "auto": three values a decade, from 1e-6 to 1.
SEARCH_GRID = tuple(float(f"{10.0 ** (e / 3):.3g}") for e in range(-18, 1))
#: Where "auto" starts, in the middle of the α that served the encoders tried (docs/monitor.md).
SEARCH_START = 1e-3


class AlphaSearch:
    """α="auto": per noise level, the α of a log grid with the best mean probe PSNR (the paper's
    choice for Fig. 7: the probe has ground truth), searched locally so that it follows the encoder
    as it trains at about the cost of one α.

    Each inversion solves, per level, three columns (:meth:`alphas`): the current α on every probe
    image, and the grid values ``stride`` steps below and above it on a few (:meth:`counts`), each
    from the nearest solution of the last inversions (:class:`WarmStarts`). :meth:`best` then names
    the column with the best mean PSNR over the images all three solved, and :meth:`move` goes there
    (a pattern search): a second move the same way doubles the stride (up to :attr:`MAX_STRIDE`), so
    a far optimum is reached in a few inversions; staying halves it, turning back resets it to 1.
    A neighbour beyond the grid's ends is its last value, or NaN (no column) at the end itself.
    """

    #: The largest stride, in grid steps (4 steps of the default grid: a factor 21.5 in α).
    MAX_STRIDE = 4

    def __init__(self, levels: int, grid: Sequence[float] = SEARCH_GRID, start: float = SEARCH_START) -> None:
        self.grid = tuple(sorted(grid))
        nearest = min(range(len(self.grid)), key=lambda i: abs(math.log(self.grid[i] / start)))
        self.index = torch.full((levels,), nearest, dtype=torch.long)
        self.stride = torch.ones(levels, dtype=torch.long)
        self.direction = torch.zeros(levels, dtype=torch.long)  # of the last move: -1, 0 (stayed), +1

    def _neighbours(self) -> tuple[Tensor, Tensor]:
        """Grid indices of the lower and upper neighbours (−1 / len(grid): none)."""
        last = len(self.grid) - 1
        lower = torch.where(self.index == 0, -1, (self.index - self.stride).clamp_min(0))
        upper = torch.where(self.index == last, last + 1, (self.index + self.stride).clamp_max(last))
        return lower, upper

    def alphas(self) -> Tensor:
        """``(levels, 3)`` float64: the current α, the lower and the upper neighbour (NaN: none)."""
        grid = torch.tensor((math.nan, *self.grid, math.nan), dtype=torch.float64)
        lower, upper = self._neighbours()
        return torch.stack([grid[self.index + 1], grid[lower + 1], grid[upper + 1]], dim=1)

    def counts(self, k: int, neighbours: int, levels: Optional[Tensor] = None) -> Tensor:
        """``(levels, 3)``: every one of the ``k`` images at the current α, the first ``neighbours`` at
        each neighbour; 0 beyond the grid and for the levels off in the bool mask ``levels``."""
        counts = torch.tensor([k, neighbours, neighbours]).expand(len(self.index), 3).clone()
        counts[torch.isnan(self.alphas())] = 0
        if levels is not None:
            counts[~levels.cpu()] = 0
        return counts

    def best(self, psnr: Tensor, solved: Tensor) -> Tensor:
        """``(levels,)`` the column (0: current, 1: lower, 2: higher) with the best mean PSNR over
        the images every solved column has, from ``psnr`` and ``solved`` ``(levels, n, 3)``; a tie, a
        non-finite score or nothing to compare keeps column 0."""
        psnr, solved = psnr.double().cpu(), solved.cpu() > 0
        present = solved.any(dim=1, keepdim=True)  # (levels, 1, 3)
        common = (solved | ~present).all(dim=2, keepdim=True) & present  # (levels, n, 3)
        score = torch.where(common, torch.nan_to_num(psnr, nan=-math.inf), 0.0).sum(dim=1)
        score = torch.where(common.any(dim=1), score / common.sum(dim=1).clamp_min(1), -math.inf)
        score = torch.nan_to_num(score, nan=-math.inf)
        better = score > score[:, :1]
        return torch.where(better.any(dim=1), score.argmax(dim=1), 0)

    def move(self, column: Tensor) -> None:
        """Go to ``column`` ``(levels,)`` of :meth:`alphas` and adapt the stride (class docstring)."""
        column = column.cpu()
        lower, upper = self._neighbours()
        target = torch.stack([self.index, lower, upper], dim=1).gather(1, column.unsqueeze(1)).squeeze(1)
        direction = torch.tensor([0, -1, 1])[column]
        again = (direction != 0) & (direction == self.direction)
        self.stride = torch.where(
            direction == 0, (self.stride // 2).clamp_min(1), torch.where(again, (2 * self.stride).clamp_max(self.MAX_STRIDE), 1)
        )
        self.index, self.direction = target.clamp(0, len(self.grid) - 1), direction

    def state_dict(self) -> dict[str, Any]:
        return {"grid": self.grid, "index": self.index.tolist(), "stride": self.stride.tolist(), "direction": self.direction.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume where a checkpoint left the search (ignored when its grid or levels differ)."""
        if tuple(state.get("grid", ())) == self.grid and len(state.get("index", ())) == len(self.index):
            self.index = torch.tensor(state["index"], dtype=torch.long)
            self.stride = torch.tensor(state.get("stride", [1] * len(self.index)), dtype=torch.long)
            self.direction = torch.tensor(state.get("direction", [0] * len(self.index)), dtype=torch.long)


class WarmStarts:
    """The probe's last solutions per noise level and α (the whole probe, on the CPU), and the starting
    points of the next inversion: for each image, the solution at the nearest α (in log α) that has
    one, NaN where none does (:func:`lbinv.probe.invert_probe` then starts from its ``start``)."""

    def __init__(self, levels: int) -> None:
        self.solutions: list[dict[float, Tensor]] = [{} for _ in range(levels)]

    def update(self, alphas: Tensor, x_inv: Tensor, solved: Tensor) -> None:
        """Keep the finite solutions of ``x_inv`` ``(levels, n, G, ...)`` where ``solved`` ``(levels, n, G)``."""
        x_inv, solved = x_inv.detach().cpu(), solved.cpu() > 0
        finite = solved & torch.isfinite(x_inv.flatten(3)).all(dim=3)
        for level, kept in enumerate(self.solutions):
            for column, alpha in enumerate(alphas[level].tolist()):
                ok = finite[level, :, column]
                if not bool(ok.any()):
                    continue
                new = x_inv[level, :, column].clone()
                old = kept.get(alpha)
                keep = per_image(ok, new)
                new = torch.where(keep, new, math.nan if old is None else old)
                kept[alpha] = new

    def starts(self, alphas: Tensor, images: Tensor) -> Optional[Tensor]:
        """``(levels, k, G, ...)`` starting points for ``alphas`` ``(levels, G)`` and the probe images
        of index ``images`` ``(k,)``; None before any solution was kept."""
        if not any(self.solutions):
            return None
        some = next(x for kept in self.solutions for x in kept.values())
        levels, grid = alphas.shape
        out = torch.full((levels, len(images), grid, *some.shape[1:]), math.nan, dtype=some.dtype)
        for level, kept in enumerate(self.solutions):
            for column, alpha in enumerate(alphas[level].tolist()):
                if math.isnan(alpha) or not kept:
                    continue
                start = out[level, :, column]
                for known in sorted(kept, key=lambda a: abs(math.log(a / alpha))):
                    candidate = kept[known][images]
                    start = torch.where(torch.isnan(start), candidate, start)
                out[level, :, column] = start
        return out

    def clear(self) -> None:
        self.solutions = [{} for _ in self.solutions]

    def state_dict(self) -> dict[str, Any]:
        return {"solutions": [dict(kept) for kept in self.solutions]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from a checkpoint's solutions (ignored when the number of levels differs)."""
        solutions = state.get("solutions")
        if solutions is not None and len(solutions) == len(self.solutions):
            self.solutions = [{float(a): x.detach().cpu() for a, x in kept.items()} for kept in solutions]
