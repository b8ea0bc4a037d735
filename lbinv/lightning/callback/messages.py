"""What the inversion callback tells a user: :class:`InversionWarning` (from the global rank zero),
and console lines (:func:`say`, through the progress bar when there is one)."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # either namespace's Trainer
    from lightning.pytorch import Trainer

__all__ = ["InversionWarning", "Notices", "say", "warn_on_rank_zero"]


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


class Notices:
    """Messages a callback gives once per run of its life (the keys given so far)."""

    def __init__(self) -> None:
        self.given: set[str] = set()

    def first(self, key: str) -> bool:
        """Whether ``key`` is given for the first time (it is then recorded)."""
        new = key not in self.given
        self.given.add(key)
        return new

    def warn(self, trainer: Trainer, key: str, message: str) -> None:
        """:func:`warn_on_rank_zero` the first time for ``key``."""
        if self.first(key):
            warn_on_rank_zero(trainer, message)

    def say(self, trainer: Trainer, key: str, message: str) -> None:
        """:func:`say` the first time for ``key``."""
        if self.first(key):
            say(trainer, message)
