"""What the inversion callback tells a user: :class:`InversionWarning` (from the global rank zero),
and console lines (:func:`say`, through the progress bar when there is one)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # either namespace's Trainer
    from lightning.pytorch import Trainer

__all__ = ["InversionWarning", "say", "warn_on_rank_zero"]


class InversionWarning(UserWarning):
    """A problem of the inversion callback that does not stop the training (solver failure, NaN,
    missing TensorBoard logger, a probe smaller than asked)."""


def warn_on_rank_zero(trainer: Trainer, message: str) -> None:
    """An :class:`InversionWarning` from the global rank zero only (the others would repeat it)."""
    if trainer.is_global_zero:
        warnings.warn(message, InversionWarning, stacklevel=3)


def say(trainer: Trainer, message: str) -> None:
    """A line on the console from rank zero, through the progress bar when there is one."""
    if trainer.is_global_zero:
        bar = trainer.progress_bar_callback
        (print if bar is None else bar.print)(message)
