"""The argument checks lbinv shares, written once, and the facts they rest on (the dtypes lbinv
refuses, when a module may be read by its type).

Each check returns the normalised value or raises ``ValueError`` (``TypeError`` for a step size of
the wrong type) whose message starts with the argument's name and says what was expected and what
came: ``"max_iter: expected an integer >= 1, got 0"``. Callers that need more context (the
inversion callback) prefix the message.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, TypeGuard, TypeVar

import torch
from torch import Tensor, nn

Shape = tuple[int, ...]

#: Dtypes :func:`lbinv.invert` refuses (the callback inverts a float32 copy of such encoders).
HALF_PRECISION = (torch.float16, torch.bfloat16)


def check_number(name: str, value: Any, *, minimum: float = -math.inf, strict: bool = False) -> float:
    """A finite number ``>= minimum`` (``> minimum`` when ``strict``), as a float."""
    relation = ">" if strict else ">="
    bound = "" if minimum == -math.inf else f" {relation} {minimum:g}"
    number = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not number or value < minimum or (strict and value == minimum):
        raise ValueError(f"{name}: expected a finite number{bound}, got {value!r}")
    return float(value)


def check_int(name: str, value: Any, *, minimum: int | None = 1) -> int:
    """An integer (not a bool) ``>= minimum`` (any integer when ``minimum`` is None)."""
    if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
        what = "an integer" if minimum is None else f"an integer >= {minimum}"
        raise ValueError(f"{name}: expected {what}, got {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """A bool (not 0 or 1, nor a numpy bool)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected a bool, got {value!r}")
    return value


def check_interval(name: str, value: Any, *, finite: bool = False) -> tuple[float, float] | None:
    """A pair ``(lo, hi)`` of numbers with ``lo < hi`` (either may be ±inf unless ``finite``);
    ``None`` passes through (no interval)."""
    if value is None:
        return None
    try:
        lo, hi = value  # exactly two
        if not all(isinstance(b, numbers.Real) and not isinstance(b, bool) for b in (lo, hi)):
            raise TypeError
        lo, hi = float(lo), float(hi)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected None or a pair (lo, hi) of numbers, got {value!r}") from None
    if finite and not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name}: expected finite numbers (lo, hi), got ({lo}, {hi})")
    if not lo < hi:  # also false when either is NaN
        raise ValueError(f"{name}: expected lo < hi, got ({lo}, {hi})")
    return lo, hi


def check_shape(name: str, value: Any) -> Shape:
    """The shape of one sample: a non-empty sequence (tuple, list, array) of positive whole numbers
    (``8`` or ``8.0``, not ``8.5``); an int ``n`` is ``(n,)``."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    message = f"{name}: expected a non-empty tuple of positive ints (no batch dimension), got {value!r}"
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(message)
    items = list(value)
    whole = [
        isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and float(s).is_integer() and float(s) > 0
        for s in items
    ]
    if not items or not all(whole):
        raise ValueError(message)
    return tuple(int(s) for s in items)


def check_step(t: float | Tensor) -> None:
    """A step size ``t`` of a proximal map: a finite number > 0; tensors are not checked (that
    would synchronise with the device)."""
    if isinstance(t, Tensor):
        return
    if not isinstance(t, numbers.Real) or isinstance(t, bool):
        raise TypeError(f"t: expected a float > 0 or a tensor, got {type(t).__name__}")
    if not (float(t) > 0 and math.isfinite(t)):
        raise ValueError(f"t: expected a finite step size > 0, got {float(t)}")


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def is_plain(module: nn.Module, base: type[ModuleT]) -> TypeGuard[ModuleT]:
    """``module`` is a ``base`` whose ``forward`` no subclass overrides: lbinv may then read it by
    its type (a subclass with its own forward computes something else)."""
    return isinstance(module, base) and type(module).forward is base.forward
