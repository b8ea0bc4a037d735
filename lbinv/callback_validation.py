"""Argument checks of :class:`lbinv.callbacks.InversionCallback`.

Each check returns the normalised value or raises ``ValueError`` naming the argument, what was
expected and what came.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Optional, Union

from torch import nn

from lbinv.callback_inversion import ALPHA_RULES, DEFAULT_ALPHA_GRID
from lbinv.solvers import METHODS, OPTIONS

#: invert() arguments that come from the callback's own arguments or its probe.
_OWN_ARGUMENTS = ("alpha", "input_shape", "method", "max_iter", "tol")
#: ``solver_options`` keys the callback sets itself (noise_level: the measured δ of each code).
_RESERVED_OPTIONS = ("model", "y", *_OWN_ARGUMENTS, "noise_level")


def validate_noise_levels(noise_levels: Any) -> tuple[float, ...]:
    if isinstance(noise_levels, (str, bytes)) or not isinstance(noise_levels, Sequence):
        raise ValueError(
            f"InversionCallback: `noise_levels` must be a non-empty sequence of floats >= 0, got {noise_levels!r}."
        )
    levels = tuple(noise_levels)
    if not levels:
        raise ValueError("InversionCallback: `noise_levels` must be a non-empty sequence of floats >= 0, got an empty one.")
    for s in levels:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
            raise ValueError(
                f"InversionCallback: every noise level must be a finite float >= 0, got {s!r} in noise_levels={levels!r}."
            )
    names = [f"{float(s):g}" for s in levels]
    if len(set(names)) != len(names):
        raise ValueError(f"InversionCallback: `noise_levels` must be distinct (they name the logged tags), got {levels!r}.")
    return tuple(float(s) for s in levels)


def validate_alpha(alpha: Any, levels: int) -> Union[float, tuple[float, ...], str]:
    if isinstance(alpha, str):
        if alpha not in ALPHA_RULES:
            raise ValueError(
                f"InversionCallback: `alpha` must be a float > 0, one float > 0 per noise level, or one of "
                f"{ALPHA_RULES}; got {alpha!r}."
            )
        return alpha
    if isinstance(alpha, Sequence):
        values = tuple(alpha)
        if len(values) != levels:
            raise ValueError(
                f"InversionCallback: `alpha` given as a sequence needs one value per noise level ({levels}), got "
                f"{len(values)}: {values!r}."
            )
        return tuple(validate_float("alpha", a, minimum=0.0, strict=True) for a in values)
    return validate_float("alpha", alpha, minimum=0.0, strict=True)


def validate_alpha_grid(grid: Any) -> tuple[float, ...]:
    if grid is None:
        return DEFAULT_ALPHA_GRID
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or len(grid) == 0:
        raise ValueError(f"InversionCallback: `alpha_grid` must be a non-empty sequence of floats > 0, got {grid!r}.")
    return tuple(sorted({validate_float("alpha_grid", a, minimum=0.0, strict=True) for a in grid}))


def validate_method(method: Any) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"InversionCallback: `method` must be one of {METHODS}, got {method!r}.")
    return method


def validate_method_alpha(method: str, alpha: Union[float, tuple[float, ...], str]) -> None:
    """Landweber stops by the discrepancy principle and ignores α: an α rule would be pointless."""
    if method == "landweber" and isinstance(alpha, str):
        raise ValueError(
            f"InversionCallback: method='landweber' ignores alpha (it stops by the discrepancy principle "
            f"itself), so alpha={alpha!r} would solve the same problem for every grid value; pass a float."
        )


def validate_float(name: str, value: Any, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"InversionCallback: `{name}` must be a finite float, got {value!r}.")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"InversionCallback: `{name}` must be {relation} {minimum:g}, got {value!r}.")
    return float(value)


def validate_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"InversionCallback: `{name}` must be an int >= {minimum}, got {value!r}.")
    return value


def validate_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"InversionCallback: `seed` must be an int, got {seed!r}.")
    return seed


def validate_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"InversionCallback: `{name}` must be a bool, got {value!r}.")
    return value


def validate_accessor(name: str, value: Any, allow_none: bool) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, str) and value:
        return value
    if callable(value) and not isinstance(value, nn.Module):
        return value
    also = ", or None" if allow_none else ""
    raise ValueError(
        f"InversionCallback: `{name}` must be an attribute name (str) of the LightningModule or a callable "
        f"`pl_module -> {name}`{also}; got {value!r:.80}."
    )


def validate_shape(shape: Any) -> Optional[tuple[int, ...]]:
    if shape is None:
        return None
    message = f"InversionCallback: `input_shape` must be None or a sequence of ints > 0, got {shape!r}."
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) == 0:
        raise ValueError(message)
    if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
        raise ValueError(message)
    return tuple(shape)


def validate_data_range(data_range: Any) -> tuple[float, float]:
    message = f"InversionCallback: `data_range` must be a pair (lo, hi) with lo < hi, got {data_range!r}."
    if isinstance(data_range, (str, bytes)) or not isinstance(data_range, Sequence) or len(data_range) != 2:
        raise ValueError(message)
    lo = validate_float("data_range[0]", data_range[0], minimum=-math.inf, strict=False)
    hi = validate_float("data_range[1]", data_range[1], minimum=-math.inf, strict=False)
    if not lo < hi:
        raise ValueError(message)
    return lo, hi


def validate_solver_options(options: Any, method: str) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"InversionCallback: `solver_options` must be None or a dict with str keys, got {options!r}.")
    reserved = sorted(set(options) & set(_RESERVED_OPTIONS))
    if reserved:
        raise ValueError(
            f"InversionCallback: `solver_options` must not set {reserved}: use the callback's own arguments "
            f"({', '.join(_OWN_ARGUMENTS)}; noise_level is the measured delta of each noisy code)."
        )
    allowed = {"regularizer", "bounds", "check_every", *OPTIONS[method]}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"InversionCallback: `solver_options` has option(s) {unknown} that invert(method={method!r}) does not "
            f"accept; valid: {sorted(allowed)}."
        )
    return dict(options)
