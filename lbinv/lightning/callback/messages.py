"""What the inversion callback tells a user: :class:`InversionWarning` (from the global rank zero),
and console lines (:func:`say`): INFO records of the logger ``lbinv.lightning.callback``.

As Lightning does for its own logger, that logger gets a console handler of its own when the
program has not configured logging (the root logger has no handler): it prints to stdout, through
the progress bar when there is one, so that a line does not break the bar. A program that
configures logging receives the records like any others.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # either namespace's Trainer
    from lightning.pytorch import Trainer

__all__ = ["LOGGER", "InversionWarning", "Notices", "say", "warn_on_rank_zero"]

#: The logger of the callback's console lines.
LOGGER = logging.getLogger("lbinv.lightning.callback")


class _Console(logging.Handler):
    """Prints a record's message through the progress bar it carries (``progress_bar``), else to stdout."""

    def emit(self, record: logging.LogRecord) -> None:
        bar, message = getattr(record, "progress_bar", None), self.format(record)
        if bar is None:
            print(message, flush=True)
        else:
            bar.print(message)


LOGGER.setLevel(logging.INFO)
if not logging.getLogger().hasHandlers():
    LOGGER.addHandler(_Console())
    LOGGER.propagate = False


class InversionWarning(UserWarning):
    """A problem of the inversion callback that does not stop the training (solver failure, NaN,
    missing TensorBoard logger, a probe smaller than asked)."""


def warn_on_rank_zero(trainer: Trainer, message: str) -> None:
    """An :class:`InversionWarning` from the global rank zero only (the others would repeat it)."""
    if trainer.is_global_zero:
        warnings.warn(message, InversionWarning, stacklevel=3)


def say(trainer: Trainer, message: str) -> None:
    """A console line from rank zero: an INFO record of :data:`LOGGER` (carrying the trainer's
    progress bar, for the console handler)."""
    if trainer.is_global_zero:
        LOGGER.info(message, extra={"progress_bar": trainer.progress_bar_callback})


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
