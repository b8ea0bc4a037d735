"""The checks of :class:`~lbinv.lightning.callback.InversionCallback`'s own arguments.

The generic checks (numbers, integers, shapes, intervals) are :mod:`lbinv._checks`; what is here is
what only the callback has: noise levels, α and its rules, accessors, solver options. Every check
runs inside :func:`callback_arguments`, so that each message starts with ``InversionCallback:`` and
then names the argument, what was expected and what came.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Union

from torch import nn

from lbinv._checks import check_bool, check_number
from lbinv.probe import ALPHA_RULES, DEFAULT_ALPHA_GRID
from lbinv.solvers import METHODS, OPTIONS
from lbinv.solvers.inversion import check_options

#: invert() arguments that come from the callback's own arguments or its probe.
_OWN_ARGUMENTS = ("alpha", "input_shape", "method", "max_iter", "tol", "max_seconds", "eta")
#: ``solver_options`` keys the callback sets itself (noise_level: the measured δ of each code; x_init:
#: the arguments ``start`` and ``warm_start``; dual_init: a resumed solve's TV dual, which only a solve of
#: the same batch can give).
_RESERVED_OPTIONS = ("model", "y", *_OWN_ARGUMENTS, "noise_level", "x_init", "dual_init")
#: Where an inversion without a warm start starts (the argument ``start``).
STARTS = ("decoder", "zeros")


@contextmanager
def callback_arguments() -> Iterator[None]:
    """Prefix the ``ValueError`` of any check run in the block with ``InversionCallback:``."""
    try:
        yield
    except ValueError as err:
        raise ValueError(f"InversionCallback: {err}") from None


def _is_sequence(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def check_noise_levels(noise_levels: Any) -> tuple[float, ...]:
    if not _is_sequence(noise_levels) or not noise_levels:
        raise ValueError(f"noise_levels: expected a non-empty sequence of floats >= 0, got {noise_levels!r}")
    levels = tuple(check_number("every noise level", s, minimum=0.0) for s in noise_levels)
    names = [f"{s:g}" for s in levels]
    if len(set(names)) != len(names):
        raise ValueError(f"noise_levels: expected distinct values (they name the logged tags), got {levels!r}")
    return levels


def check_alpha(alpha: Any, levels: int) -> Union[float, tuple[float, ...], str]:
    if isinstance(alpha, str):
        if alpha not in ALPHA_RULES:
            raise ValueError(f"alpha: expected a float > 0, one float > 0 per noise level, or one of {ALPHA_RULES}; got {alpha!r}")
        return alpha
    if _is_sequence(alpha):
        values = tuple(alpha)
        if len(values) != levels:
            raise ValueError(f"alpha: expected one value per noise level ({levels}), got {len(values)}: {values!r}")
        return tuple(check_number("alpha", a, minimum=0.0, strict=True) for a in values)
    return check_number("alpha", alpha, minimum=0.0, strict=True)


def check_alpha_grid(grid: Any) -> tuple[float, ...]:
    if grid is None:
        return DEFAULT_ALPHA_GRID
    if not _is_sequence(grid) or not grid:
        raise ValueError(f"alpha_grid: expected a non-empty sequence of floats > 0, got {grid!r}")
    return tuple(sorted({check_number("alpha_grid", a, minimum=0.0, strict=True) for a in grid}))


def check_method(method: Any, alpha: Union[float, tuple[float, ...], str], eta: float) -> str:
    """One of :data:`lbinv.solvers.METHODS`. Landweber stops by the discrepancy principle (with
    ``eta``, which it needs ≥ 1) and ignores α, so a grid rule would solve one problem per grid value
    (the default "auto" is ignored)."""
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "landweber" and isinstance(alpha, str) and alpha != "auto":  # "auto" (the default): ignored
        raise ValueError(
            f"alpha: method='landweber' ignores alpha (it stops by the discrepancy principle itself), so "
            f"alpha={alpha!r} would solve the same problem for every grid value; pass a float"
        )
    if method == "landweber" and eta < 1.0:
        raise ValueError(f"eta: method='landweber' stops at ‖N(x) − y^δ‖ <= eta·δ and needs eta >= 1, got {eta!r}")
    return method


def check_share(share: Any) -> float:
    """A share of the run's time: a number strictly between 0 and 1."""
    value = check_number("time_share", share, minimum=0.0, strict=True)
    if value >= 1.0:
        raise ValueError(f"time_share: expected a number in (0, 1), a share of the run's time, got {share!r}")
    return value


def check_warm_start(warm_start: Any, method: str) -> bool:
    """A warm start is the previous inversion's solution as ``x_init``: the method must take one.
    None: a warm start where the method takes one."""
    if warm_start is None:
        return "x_init" in OPTIONS[method]
    check_bool("warm_start", warm_start)
    if warm_start and "x_init" not in OPTIONS[method]:
        raise ValueError(f"warm_start: method={method!r} takes no starting point (x_init); pass warm_start=False")
    return warm_start


def check_start(start: Any, method: str, decoder: Any) -> str:
    """Where an inversion without a warm start begins: one of :data:`STARTS`; the decoder's output
    needs a decoder and a method that takes a starting point. None: the decoder's where possible."""
    takes_start = "x_init" in OPTIONS[method]
    if start is None:
        return "decoder" if takes_start and decoder is not None else "zeros"
    if start not in STARTS:
        raise ValueError(f"start: expected one of {STARTS} or None, got {start!r}")
    if start == "decoder" and not takes_start:
        raise ValueError(f"start: method={method!r} takes no starting point (x_init); pass start='zeros' or None")
    if start == "decoder" and decoder is None:
        raise ValueError("start: 'decoder' needs a decoder, and decoder=None; pass start='zeros' or a decoder")
    return start


def check_accessor(name: str, value: Any, allow_none: bool) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, str) and value:
        return value
    if callable(value) and not isinstance(value, nn.Module):
        return value
    also = ", or None" if allow_none else ""
    raise ValueError(
        f"{name}: expected an attribute name (str) of the LightningModule or a callable `pl_module -> {name}`{also}; got {value!r:.80}"
    )


def check_output(name: str, value: Any) -> Union[int, str, None]:
    """Which item of a tuple, list or dict output is the code: an index, a key, or None."""
    if value is None or (isinstance(value, (int, str)) and not isinstance(value, bool)):
        return value
    raise ValueError(f"{name}: expected None, an index (int) or a key (str) of the encoder's output, got {value!r}")


def check_solver_options(options: Any, method: str) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"solver_options: expected None or a dict with str keys, got {options!r}")
    if "discrepancy_tau" in options:
        raise ValueError("solver_options: 'discrepancy_tau' is now the callback's own argument eta (InversionCallback(eta=…))")
    reserved = sorted(set(options) & set(_RESERVED_OPTIONS))
    if reserved:
        raise ValueError(
            f"solver_options: must not set {reserved}: use the callback's own arguments "
            f"({', '.join(_OWN_ARGUMENTS)}, start and warm_start for x_init; noise_level is the measured delta "
            "of each noisy code; dual_init resumes a solve of the same batch)"
        )
    allowed = {"regularizer", "bounds", "check_every", *OPTIONS[method]} - set(_RESERVED_OPTIONS)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"solver_options: option(s) {unknown} that invert(method={method!r}) does not accept; valid: {sorted(allowed)}")
    try:  # invert's own checks of the values (solver, step_rule, families, integers, …)
        check_options(method, {k: v for k, v in options.items() if k not in ("regularizer", "bounds", "check_every")})
    except (TypeError, ValueError) as err:
        raise ValueError(f"solver_options: {err}") from None
    return dict(options)
