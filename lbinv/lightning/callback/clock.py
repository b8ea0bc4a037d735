"""The inversion callback's clock: the time it may take. During fit it may spend ``time_share`` of
the fit's wall time in all, each budgeted solve stops at ``max_seconds``; the final inversion runs
outside the share for at most ``final_seconds``."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

__all__ = ["Clock"]


class Clock:
    """The fit's wall time, the callback's own time within it, and the deadlines they give.

    With ``time_share`` the callback may spend that share of the fit in all, so an inversion starting
    now may take :meth:`allowance` seconds: ``(share · elapsed − spent) / (1 − share)``, what keeps
    ``spent + d ≤ share · (elapsed + d)``. Overspending (a first inversion, say) is paid back by the next.
    """

    def __init__(self, time_share: Optional[float], max_seconds: Optional[float], final_seconds: Optional[float]) -> None:
        self.time_share, self.max_seconds, self.final_seconds = time_share, max_seconds, final_seconds
        self.started: Optional[float] = None  # when the fit started (perf_counter)
        self.spent = 0.0  # the callback's seconds since

    @property
    def has_final(self) -> bool:
        """Whether there is a final inversion (``final_seconds`` is not 0)."""
        return self.final_seconds != 0

    def start(self) -> None:
        """The fit starts: nothing spent yet."""
        self.started, self.spent = time.perf_counter(), 0.0

    @contextmanager
    def charging(self, fitting: bool) -> Iterator[None]:
        """Count the block's time as the callback's when ``fitting`` (nothing before :meth:`start`)."""
        begin = time.perf_counter()
        try:
            yield
        finally:
            if fitting and self.started is not None:
                self.spent += time.perf_counter() - begin

    def shares(self, fitting: bool) -> bool:
        """Whether ``time_share`` bounds an inversion now (during fit, when one is set)."""
        return fitting and self.time_share is not None

    def allowance(self) -> float:
        """Seconds an inversion starting now may take (may be negative: spent ahead); inf without a
        share or before the fit starts."""
        if self.time_share is None or self.started is None:
            return math.inf
        elapsed = time.perf_counter() - self.started
        return (self.time_share * elapsed - self.spent) / (1.0 - self.time_share)

    def final_deadline(self, begin: float) -> Optional[float]:
        """When a final inversion that began at ``begin`` must stop (None: no cap)."""
        return None if self.final_seconds is None else begin + self.final_seconds

    def deadline(self, begin: float, seconds: float = math.inf) -> Optional[float]:
        """When a budgeted inversion that began at ``begin`` must stop: after ``max_seconds`` and after
        ``seconds`` (what the share leaves it), whichever comes first (None: neither)."""
        limit = min(math.inf if self.max_seconds is None else self.max_seconds, seconds)
        return None if limit == math.inf else begin + limit
