"""When the inversion callback inverts and for how long: the last epoch of a fit, what an inversion
costs (the time it may take is :mod:`~lbinv.lightning.callback.clock`'s), and the console lines of
inversions that take long."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

from lbinv.lightning.callback.messages import say

if TYPE_CHECKING:  # either namespace's Trainer
    from lightning.pytorch import Trainer

__all__ = ["ANNOUNCE_AFTER_SECONDS", "MIN_BUDGET_SECONDS", "MIN_SWEEPS", "Cost", "FitRecord", "Progress", "last_epoch"]

#: An inversion that took longer than this says so, and the next one says when it starts.
ANNOUNCE_AFTER_SECONDS = 1.0
#: The least solver budget ``time_share`` gives (the solve then stops after its first sweep).
MIN_BUDGET_SECONDS = 1e-3
#: Sweeps an inversion under ``time_share`` must afford for a noise level to be inverted at all.
MIN_SWEEPS = 5
#: Before the first inversion, a sweep's cost per code is guessed as this many forward passes of the
#: encoder per image (a forward and a backward pass, twice: measured 1.9–2.5× forward + backward).
SWEEP_FORWARDS = 6.0


def last_epoch(trainer: Trainer) -> bool:
    """Whether fit ends after this epoch by its budget: ``max_epochs`` or ``max_steps`` reached.
    Only what every rank shares is read (a stop request is not: ranks agree on it only after
    validation; the callback inverts a fit that stopped otherwise at its end)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return (max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs) or (
        max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps
    )


class FitRecord:
    """What a fit has validated and inverted so far, for the inversion of its final model at its end.
    Only what every rank shares is kept (epochs and global steps), so every rank decides alike."""

    def __init__(self) -> None:
        self.validated: Optional[tuple[int, int]] = None  # (epoch, global_step) of the last validation
        self.inverted_at: Optional[int] = None  # global_step of the last inversion (None: none yet)
        self.final_done = False  # whether the last inversion was the final one

    def validation(self, trainer: Trainer) -> None:
        """A validation epoch of the fit ended."""
        self.validated = (trainer.current_epoch, trainer.global_step)

    def inversion(self, trainer: Trainer, final: bool) -> None:
        """An inversion of the fit runs (``final``: the final one)."""
        self.inverted_at, self.final_done = trainer.global_step, final

    def final_model_epoch(self, trainer: Trainer, has_final: bool) -> Optional[int]:
        """At the end of fit: the step (an epoch) of the final model's inversion, or None when the last
        inversion was it. The final model is inverted when it trained since the last inversion (a fit
        that stopped early, at ``max_steps`` or off the interval), or when the last inversion was not
        the final one and there is one (``has_final``); at the epoch of the last validation, or the
        next one when it trained past it."""
        if self.validated is None or (self.inverted_at == trainer.global_step and (self.final_done or not has_final)):
            return None
        epoch, step = self.validated
        return epoch if step == trainer.global_step else epoch + 1


class Cost:
    """What an inversion costs, learned from the last one: the solver's seconds per sweep and per
    code, and the seconds of the inversion outside it, before the solve (encoding, lifting,
    decoding) and after it (measures, images, the figure)."""

    def __init__(self) -> None:
        self.per_code_sweep: Optional[float] = None
        self.before_solve = 0.0
        self.after_solve = 0.0

    def guess(self, forward_seconds_per_image: float) -> None:
        """Before any inversion: a sweep costs about :data:`SWEEP_FORWARDS` forward passes per code."""
        if self.per_code_sweep is None:
            self.per_code_sweep = SWEEP_FORWARDS * forward_seconds_per_image

    def learn(self, solver_seconds: float, codes: int, sweeps: float, before_solve: float, after_solve: float) -> None:
        """Measured: ``sweeps`` (the most any sample ran) over ``codes`` in ``solver_seconds``."""
        if codes > 0 and sweeps > 0 and math.isfinite(sweeps):
            self.per_code_sweep = solver_seconds / (codes * sweeps)
        self.before_solve, self.after_solve = before_solve, after_solve

    def levels(self, allowance: float, codes_per_level: int, levels: int) -> int:
        """How many noise levels an inversion may take on: each must afford :data:`MIN_SWEEPS` sweeps
        of its ``codes_per_level`` codes within ``allowance`` less the time outside the solver; all
        of them while the cost is unknown."""
        if self.per_code_sweep is None:
            return levels
        per_level = MIN_SWEEPS * codes_per_level * self.per_code_sweep
        room = allowance - self.before_solve - self.after_solve
        if per_level <= 0.0:
            return levels if room > 0 else 0
        return max(0, min(levels, math.floor(room / per_level)))


class Progress:
    """Console lines, from rank zero through the progress bar when there is one: the first
    inversion says when it starts; one that took over :data:`ANNOUNCE_AFTER_SECONDS` says how long,
    and the next one says when it starts (so that a long inversion is not taken for a hang); the
    final inversion (``always``), which may run for ``final_seconds``, says both."""

    def __init__(self) -> None:
        self.announce = True

    def starting(self, trainer: Trainer, epoch: int, what: str, always: bool = False) -> None:
        if self.announce or always:
            say(trainer, f"InversionCallback: inverting {what} at epoch {epoch}…")

    def finished(self, trainer: Trainer, epoch: int, seconds: float, converged: int, total: int, always: bool = False) -> None:
        self.announce = seconds > ANNOUNCE_AFTER_SECONDS
        if self.announce or always:
            say(trainer, f"InversionCallback: epoch {epoch} inverted in {seconds:.1f} s; {converged}/{total} converged.")
