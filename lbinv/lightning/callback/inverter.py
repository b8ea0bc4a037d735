"""The inversions of the probe on every rank, with the callback's settings: what one does
(:class:`Plan`, the callback's decision), its rounds (:meth:`ProbeInverter.invert`: one, or while
``"auto"``'s search moves in a final inversion) and each round (:meth:`ProbeInverter.round`): the
encoder and decoder of the module at the inversion's precision, this rank's share of the probe at
the given α columns (:func:`lbinv.probe.invert_probe`), a solve that ends at a deadline, and the
gather of every rank's results. A failure on any rank warns and returns None on every rank (they
agree with ``trainer.strategy.reduce_boolean_decision``, as EarlyStopping does): training goes on."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch import Tensor

from lbinv.lifted import LiftedNetwork
from lbinv.lightning.callback.access import ModuleAccess, at_precision, inversion_target
from lbinv.lightning.callback.ddp import gather
from lbinv.lightning.callback.messages import InversionWarning, warn_on_rank_zero
from lbinv.lightning.callback.monitor import FINAL_ROUNDS, Monitor, Rounds
from lbinv.lightning.callback.probe_images import ProbeImages
from lbinv.lightning.callback.schedule import MIN_BUDGET_SECONDS
from lbinv.probe import PER_CALL, ProbeResult, ProbeSummary, Solve, invert_probe, summarize
from lbinv.solvers import InversionResult, invert
from lbinv.tracing import eval_mode

if TYPE_CHECKING:  # either namespace's classes
    from lightning.pytorch import LightningModule, Trainer

__all__ = ["FINISH_SHARE", "SEARCH_ROUND_SHARE", "Inversion", "Plan", "ProbeInverter"]

#: The share of the time left that a round of a final inversion's α search may take (``"auto"``,
#: under ``final_seconds``): rounds to ``tol`` that would take it all leave α where the fit left it.
SEARCH_ROUND_SHARE = 1.0 / 3.0
#: The share of ``final_seconds`` kept for the last round, which finishes the columns at the α found.
FINISH_SHARE = 1.0 / 3.0


@dataclass
class Plan:
    """What an inversion does, as the callback decided it: the noise levels it inverts (bool
    ``(levels,)``; none: the inversion is skipped), when its solve must stop (a ``perf_counter``
    value, or None), whether it is the final one, and the allowance of ``time_share`` it was planned in."""

    levels: Tensor
    deadline: Optional[float]
    final: bool
    allowance: float = math.inf


@dataclass
class Inversion:
    """An inversion's summary and results (gathered: the whole probe), the codes its last round
    solved and when that round's solve started and ended (``perf_counter`` values)."""

    summary: ProbeSummary
    out: ProbeResult
    codes: int
    window: list[float]

    def warn_nonfinite(self, noise_levels: Sequence[float], epoch: int) -> None:
        """Warn when some samples at the chosen α came back non-finite (they are left out of the numbers)."""
        failed = self.summary.failed  # (levels, n)
        bad = [f"sigma={s:g}: {int(failed[i].sum())}/{failed.shape[1]}" for i, s in enumerate(noise_levels) if failed[i].any()]
        if bad:
            warnings.warn(
                f"InversionCallback: the inversion returned non-finite values at epoch {epoch} "
                f"({', '.join(bad)} samples); those samples are left out of the logged numbers. Training continues.",
                InversionWarning,
                stacklevel=3,
            )

    def learn_cost(self, monitor: Monitor, begin: float) -> None:
        """Tell the monitor what this inversion, begun at ``begin`` and done now, cost (for the next plan)."""
        sweeps = float(self.out.iterations.nan_to_num(0.0).max())
        monitor.cost.learn(self.summary.seconds, self.codes, sweeps, self.window[0] - begin, time.perf_counter() - self.window[1])


class ProbeInverter:
    """The callback's settings of :func:`lbinv.invert` and of the probe, :meth:`invert` and :meth:`round`."""

    def __init__(
        self,
        access: ModuleAccess,
        noise_levels: Sequence[float],
        seed: int,
        method: str,
        max_iter: int,
        tol: float,
        eta: float,
        solver_options: dict[str, Any],
        start: str,
    ) -> None:
        self.access = access
        self.noise_levels, self.seed, self.start = tuple(noise_levels), seed, start
        self.method, self.max_iter, self.tol, self.eta, self.solver_options = method, max_iter, tol, eta, solver_options

    def invert(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        probe_images: ProbeImages,
        monitor: Monitor,
        epoch: int,
        plan: Plan,
        data_range: tuple[float, float],
        begin: float,
    ) -> Optional[Inversion]:
        """The rounds of an inversion that began at ``begin`` and their summary: one round, or for a
        final inversion rounds to ``tol`` while ``"auto"``'s search moves (at most
        :data:`~lbinv.lightning.callback.monitor.FINAL_ROUNDS`, a column solved in an earlier round not
        solved again, ``seconds`` summed). The monitor learns from each. None when a round failed (warned).

        Under a deadline, a round of the search may take :data:`SEARCH_ROUND_SHARE` of the time left,
        so that α moves more than once when rounds to ``tol`` are slow, but not the last
        :data:`FINISH_SHARE` of the cap: once α stays, or that reserve is reached, a round takes all
        the time left to finish the columns cut short (from where they stopped)."""
        assert probe_images.images is not None
        n, per_rank = probe_images.images.shape[0], probe_images.share(trainer.world_size, 0)[1]
        rounds, window = Rounds(len(self.noise_levels)), [begin, begin]
        inverted: Optional[Inversion] = None
        finishing = monitor.search is None  # a round that may take all the time left
        reserve = 0.0 if plan.deadline is None else FINISH_SHARE * (plan.deadline - begin)
        for _ in range(FINAL_ROUNDS if plan.final else 1):
            alphas, counts = monitor.columns(per_rank, plan.levels)
            if plan.final:  # a column solved to tol in an earlier round is not solved again
                counts[rounds.known(alphas, counts, per_rank, n)] = 0
            deadline = plan.deadline
            if plan.final and not finishing and deadline is not None:
                now = time.perf_counter()
                search_seconds = min(SEARCH_ROUND_SHARE * (deadline - now), deadline - now - reserve)
                finishing = search_seconds <= 0.0
                deadline = deadline if finishing else now + search_seconds
            out = self.round(trainer, pl_module, probe_images, monitor, epoch, alphas, counts, data_range, deadline, window, plan.final)
            if out is None:
                return None
            rounds.add(alphas, out)
            seconds = out.seconds if inverted is None else inverted.out.seconds + out.seconds
            out = replace(rounds.assemble(alphas, out), seconds=seconds)
            summary = summarize(out, alphas, self.noise_levels, monitor.rule(), self.eta)
            inverted = Inversion(summary, out, int(counts.sum()), window)
            moved = bool(monitor.learn(alphas, out).any())
            if plan.deadline is not None and time.perf_counter() >= plan.deadline:
                break
            if not moved:  # α stays: done, unless this round was cut short of tol
                if finishing or _all_converged(out):
                    break
                finishing = True
        monitor.inverted(plan.levels)
        return inverted

    def round(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        probe_images: ProbeImages,
        monitor: Monitor,
        epoch: int,
        alphas: Tensor,
        counts: Tensor,
        data_range: tuple[float, float],
        deadline: Optional[float],
        window: list[float],
        final: bool,
    ) -> Optional[ProbeResult]:
        """This rank's share of the probe at the α columns ``alphas`` / ``counts`` (from the monitor's
        warm starts, else its ``start``), gathered on every rank; its solve ends after the first sweep
        past ``deadline`` and records when it started and ended in ``window``. None (warned) when it
        failed on some rank."""
        probe = probe_images.images
        assert probe is not None
        n, world, rank = probe.shape[0], trainer.world_size, trainer.global_rank
        local_x, per_rank = probe_images.share(world, rank)
        images = torch.arange(rank * per_rank, (rank + 1) * per_rank).clamp(max=n - 1)
        out: Optional[ProbeResult] = None
        try:
            encoder = self.access.encoder(pl_module, tuple(probe.shape[1:]))
            decoder = self.access.decoder(pl_module)
            device, dtype = inversion_target(encoder, pl_module)
            with torch.no_grad(), eval_mode(encoder, decoder):
                encoder, decoder = at_precision(encoder, decoder, dtype)
                x = local_x.to(device, dtype)
                if monitor.cost.per_code_sweep is None:
                    monitor.cost.guess(_forward_seconds(encoder, x))
                out = invert_probe(
                    encoder,
                    decoder,
                    x,
                    noise_levels=self.noise_levels,
                    alphas=alphas,
                    seed=self.seed,
                    offset=rank * per_rank,
                    n=n,
                    data_range=data_range,
                    solve=self._solve(data_range, deadline, window),
                    subgradient=self.subgradient_rule(data_range),
                    counts=counts,
                    x_init=monitor.starts(alphas, images, final),
                    start=self.start if decoder is not None else "zeros",
                    regularizer=self.options(data_range).get("regularizer", "tv"),
                )
        except Exception as err:  # a solver failure must not stop the training
            warnings.warn(
                f"InversionCallback: the inversion failed at epoch {epoch} "
                f"(rank {rank}): {type(err).__name__}: {err}. Nothing is logged for this epoch; "
                "training continues.",
                InversionWarning,
                stacklevel=2,
            )
        # collectives on every rank, never rank-guarded: all ranks gather, or none does
        if not trainer.strategy.reduce_boolean_decision(out is not None, all=True):
            if out is not None:  # the failing ranks have warned with their reason
                warn_on_rank_zero(
                    trainer,
                    f"InversionCallback: the inversion failed at epoch {epoch} on another rank; "
                    "nothing is logged for this epoch; training continues.",
                )
            return None
        assert out is not None
        if world > 1:  # the same fields in the same order on every rank
            out = out.map(lambda value, per: gather(trainer, value, n, sample_dim=None if per == PER_CALL else 1))
        return out

    def _solve(self, data_range: tuple[float, float], deadline: Optional[float], window: list[float]) -> Solve:
        """:func:`lbinv.invert` with the callback's settings, its ``max_seconds`` what is left until
        ``deadline`` when it starts; records when it started and ended in ``window``."""

        def solve(net: LiftedNetwork, data: Tensor, **kwargs: Any) -> InversionResult:
            window[0] = time.perf_counter()
            max_seconds = None if deadline is None else max(deadline - window[0], MIN_BUDGET_SECONDS)
            result = invert(
                net,
                data,
                method=self.method,
                max_iter=self.max_iter,
                tol=self.tol,
                max_seconds=max_seconds,
                **self.options(data_range),
                **kwargs,
            )
            window[1] = time.perf_counter()
            return result

        return solve

    def options(self, data_range: tuple[float, float]) -> dict[str, Any]:
        """The options of :func:`lbinv.invert` beyond the callback's own arguments: the box
        ``data_range`` unless the user's options set ``bounds``, the user's, and η for Landweber's
        discrepancy principle."""
        landweber = {"eta": self.eta} if self.method == "landweber" else {}
        return {"bounds": data_range, **self.solver_options, **landweber}

    def subgradient_rule(self, data_range: tuple[float, float]) -> Optional[str]:
        """How ``inversion/bregman_sym`` gets its TV subgradients (used for one-layer encoders only):
        the optimality condition, or the dual variable when a box makes the optimality condition carry
        a normal-cone term; ``None`` (no tag) for methods without a TV dual."""
        options = self.options(data_range)
        if self.method not in ("lifted", "sequential") or options.get("regularizer", "tv") is None:
            return None
        return "dual" if options["bounds"] is not None else "optimality"


def _all_converged(out: ProbeResult) -> bool:
    """Whether every sample ``out`` solved (or holds from an earlier round) converged."""
    return bool(((out.converged.nan_to_num(0.0) > 0) | (out.solved <= 0)).all())


def _forward_seconds(encoder: Callable[[Tensor], Any], x: Tensor) -> float:
    """Seconds of one forward pass of ``encoder`` per image of ``x`` (for the first cost guess)."""
    begin = time.perf_counter()
    encoder(x)
    return (time.perf_counter() - begin) / max(x.shape[0], 1)
