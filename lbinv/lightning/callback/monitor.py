"""What the inversion callback carries from one inversion to the next: the α rule and its columns,
the warm starts, what an inversion costs, and which noise levels it inverted last.

An inversion solves, per noise level, one or more α *columns* (:func:`lbinv.probe.invert_probe`): a
fixed α (one column), the whole grid of ``"oracle"``/``"discrepancy"``, or the three columns of
``"auto"``'s local search (:class:`lbinv.alpha_search.AlphaSearch`). Plain PyTorch, like :mod:`lbinv.probe`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Optional, Union

import torch
from torch import Tensor

from lbinv.alpha_search import AlphaSearch, WarmStarts
from lbinv.lightning.callback.schedule import Cost
from lbinv.probe import PER_SAMPLE, ProbeResult

__all__ = ["FINAL_ROUNDS", "Monitor", "NEIGHBOUR_SHARE", "Rounds"]

#: The share of the probe images that ``"auto"``'s neighbour columns solve at each inversion.
NEIGHBOUR_SHARE = 0.25
#: Most rounds of a final inversion: each solves the columns of ``"auto"`` to ``tol`` and moves α one step.
FINAL_ROUNDS = 12


class Monitor:
    """The state of the inversions of one callback (kept in checkpoints: the α search and the warm starts)."""

    def __init__(
        self,
        levels: int,
        alpha: Union[float, tuple[float, ...], str],
        alpha_grid: Sequence[float],
        warm_start: bool,
    ) -> None:
        self.levels = levels
        self.alpha = alpha
        self.alpha_grid = tuple(alpha_grid)
        self.search = AlphaSearch(levels) if alpha == "auto" else None
        self.warm = WarmStarts(levels) if warm_start else None
        self.cost = Cost()
        self.inversions = 0
        self.inverted_at = [-1] * levels  # the inversion at which each level was last inverted

    def columns(self, k: int, on: Tensor) -> tuple[Tensor, Tensor]:
        """``(alphas, counts)`` ``(levels, G)`` of an inversion of the levels ``on`` (bool ``(levels,)``)
        over this rank's ``k`` images: ``"auto"``'s neighbours solve :data:`NEIGHBOUR_SHARE` of them,
        every other column solves every image."""
        levels = self.levels
        if self.search is not None:
            return self.search.alphas(), self.search.counts(k, max(1, math.ceil(NEIGHBOUR_SHARE * k)), on)
        if isinstance(self.alpha, str):
            alphas = torch.tensor(self.alpha_grid, dtype=torch.float64).expand(levels, -1).clone()
        elif isinstance(self.alpha, tuple):
            alphas = torch.tensor(self.alpha, dtype=torch.float64).reshape(levels, 1)
        else:
            alphas = torch.full((levels, 1), float(self.alpha), dtype=torch.float64)
        counts = torch.full(alphas.shape, k, dtype=torch.long)
        counts[~on.cpu()] = 0
        return alphas, counts

    def rule(self) -> str:
        """The rule of :func:`lbinv.probe.summarize` (``"auto"`` logs its current α, column 0)."""
        return self.alpha if isinstance(self.alpha, str) else "fixed"

    def starts(self, alphas: Tensor, images: Tensor, final: bool) -> Optional[Tensor]:
        """Warm starts ``(levels, k, G, ...)`` for the probe images of index ``images``, or None. During
        fit every column of a level starts where its first does, so that ``"auto"`` compares its α
        from one point after the same sweeps; a final inversion starts each from its nearest α's
        solution (its rounds run to ``tol``)."""
        if self.warm is None:
            return None
        if final:
            return self.warm.starts(alphas, images)
        first = self.warm.starts(alphas[:, :1], images)
        return None if first is None else first.expand(-1, -1, alphas.shape[1], *first.shape[3:])

    def learn(self, alphas: Tensor, out: ProbeResult) -> Tensor:
        """Keep the solutions of ``out`` (gathered: the whole probe) for the next warm start and move
        ``"auto"``'s search; returns the column each level moved to ``(levels,)`` (0: none)."""
        if self.warm is not None:
            self.warm.update(alphas, out.x_inv, out.solved)
        if self.search is None:
            return torch.zeros(self.levels, dtype=torch.long)
        column = self.search.best(out.psnr_inv, out.solved)
        self.search.move(column)
        return column

    def rotation(self, count: int) -> Tensor:
        """Bool ``(levels,)``: the ``count`` levels inverted least recently (ties: in order)."""
        order = sorted(range(self.levels), key=lambda level: (self.inverted_at[level], level))
        on = torch.zeros(self.levels, dtype=torch.bool)
        on[order[:count]] = True
        return on

    def inverted(self, on: Tensor) -> None:
        """Record an inversion of the levels ``on``."""
        self.inversions += 1
        for level in on.nonzero().flatten().tolist():
            self.inverted_at[level] = self.inversions

    def state_dict(self) -> dict[str, Any]:
        return {
            "search": None if self.search is None else self.search.state_dict(),
            "warm": None if self.warm is None else self.warm.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.search is not None and state.get("search") is not None:
            self.search.load_state_dict(state["search"])
        if self.warm is not None and state.get("warm") is not None:
            self.warm.load_state_dict(state["warm"])


class Rounds:
    """The results of the rounds of one final inversion per noise level and α (gathered: the whole
    probe), so that a column solved to ``tol`` in an earlier round is not solved again when the
    search re-centres on a neighbour: it is :meth:`known`, and :meth:`assemble` takes it from here."""

    def __init__(self, levels: int) -> None:
        self.records: list[dict[float, dict[str, Tensor]]] = [{} for _ in range(levels)]

    def known(self, alphas: Tensor, counts: Tensor, per_rank: int, n: int) -> Tensor:
        """Bool ``(levels, G)``: columns a record has solved, to convergence, on every image that
        ``counts`` asks of each rank (the first ``counts`` of each rank's ``per_rank`` images)."""
        known = torch.zeros(alphas.shape, dtype=torch.bool)
        position = torch.arange(n) % per_rank  # each probe image's index in its rank's share
        for level, kept in enumerate(self.records):
            for column, alpha in enumerate(alphas[level].tolist()):
                record = kept.get(alpha)
                if record is None or counts[level, column] == 0:
                    continue
                needed = position < int(counts[level, column])
                solved = record["solved"].cpu() > 0
                converged = record["converged"].nan_to_num(0.0).cpu() > 0
                known[level, column] = bool((solved & converged)[needed].all())
        return known

    def add(self, alphas: Tensor, out: ProbeResult) -> None:
        """Keep the columns ``out`` solved (every per-sample field of :class:`~lbinv.probe.ProbeResult`)."""
        solved = out.solved > 0
        for level, kept in enumerate(self.records):
            for column, alpha in enumerate(alphas[level].tolist()):
                if bool(solved[level, :, column].any()):
                    kept[alpha] = {name: getattr(out, name)[level, :, column].clone() for name in ProbeResult.names(PER_SAMPLE)}

    def assemble(self, alphas: Tensor, out: ProbeResult) -> ProbeResult:
        """``out`` with the columns it did not solve filled in from the records."""
        solved = out.solved > 0

        def fill(value: Tensor, name: str) -> Tensor:
            value = value.clone()
            for level, kept in enumerate(self.records):
                for column, alpha in enumerate(alphas[level].tolist()):
                    record = kept.get(alpha)
                    if record is not None and not bool(solved[level, :, column].any()):
                        value[level, :, column] = record[name].to(value.device, value.dtype)
            return value

        return replace(out, **{name: fill(getattr(out, name), name) for name in ProbeResult.names(PER_SAMPLE)})
