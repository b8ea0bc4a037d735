"""When the inversion callback inverts and for how long: the last epoch of a fit, the solver's time
budget (``max_seconds``, ``time_share``), and the console lines of inversions that take long."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # either namespace's Trainer
    from lightning.pytorch import Trainer

__all__ = ["ANNOUNCE_AFTER_SECONDS", "MIN_BUDGET_SECONDS", "Progress", "last_epoch", "solver_budget"]

#: An inversion that took longer than this says so, and the next one says when it starts.
ANNOUNCE_AFTER_SECONDS = 1.0
#: The least solver budget ``time_share`` gives (the solve then stops at its first check).
MIN_BUDGET_SECONDS = 1e-3


def last_epoch(trainer: Trainer) -> bool:
    """Whether fit ends after this epoch by its budget: ``max_epochs`` or ``max_steps`` reached.
    Only what every rank shares is read (a stop request is not: ranks agree on it only after
    validation; the callback inverts a fit that stopped otherwise at its end)."""
    max_epochs, max_steps = trainer.max_epochs, trainer.max_steps
    return (max_epochs is not None and max_epochs >= 0 and trainer.current_epoch + 1 >= max_epochs) or (
        max_steps is not None and max_steps >= 0 and trainer.global_step >= max_steps
    )


def solver_budget(
    max_seconds: Optional[float], time_share: Optional[float], train_seconds: Optional[float], overhead_seconds: float
) -> Optional[float]:
    """Seconds the solver may take: ``max_seconds``, or less by ``time_share`` when the training
    seconds since the last inversion are known. The share covers the whole inversion, so the previous inversion's
    time outside the solver (encoding, images, figure) comes off: ``time_share / (1 − time_share) ×
    train_seconds − overhead_seconds``, at least :data:`MIN_BUDGET_SECONDS`. None: no budget."""
    if time_share is None or train_seconds is None:
        return max_seconds
    share = max(time_share / (1.0 - time_share) * train_seconds - overhead_seconds, MIN_BUDGET_SECONDS)
    return share if max_seconds is None else min(max_seconds, share)


class Progress:
    """Console lines, from rank zero through the progress bar when there is one: the first
    inversion says when it starts; one that took over :data:`ANNOUNCE_AFTER_SECONDS` says how long,
    and the next one says when it starts (so that a long inversion is not taken for a hang)."""

    def __init__(self) -> None:
        self.announce = True

    def starting(self, trainer: Trainer, epoch: int, what: str) -> None:
        if self.announce:
            say(trainer, f"InversionCallback: inverting {what} at epoch {epoch}…")

    def finished(self, trainer: Trainer, epoch: int, seconds: float, converged: int, total: int) -> None:
        self.announce = seconds > ANNOUNCE_AFTER_SECONDS
        if self.announce:
            say(trainer, f"InversionCallback: epoch {epoch} inverted in {seconds:.1f} s; "
                         f"{converged}/{total} converged.")


def say(trainer: Trainer, message: str) -> None:
    """A line on the console from rank zero, through the progress bar when there is one."""
    if trainer.is_global_zero:
        bar = trainer.progress_bar_callback
        (print if bar is None else bar.print)(message)
