"""One home per operation: the table of the torch layers lbinv reads as affine operators (MATH.md §1),
with their functional forms, and of the layers it refuses, with the advice to give.

Everything else reads this table: :class:`~lbinv.operators.AffineMap` and :mod:`lbinv.lifting` find a
module's op here (:func:`affine_op`), :mod:`lbinv.tracing` reads a functional form such as
``F.avg_pool2d`` as the module named here (:func:`functional_form`) and keeps registered layers whole,
and every refusal text lists the layers from here (:func:`supported_affine_layers`, :func:`refusal`).

:func:`register_affine` adds a row: a user's layer becomes liftable by one call in the user's own file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch.nn.functional as F
from torch import Tensor, nn

from lbinv._checks import is_plain
from lbinv.operators.module_ops import (
    AffineOp,
    BatchNormOp,
    ConvOp,
    ConvTransposeOp,
    IdentityOp,
    LinearOp,
    ReshapeOp,
    ScaleShift,
    ScaleShiftOp,
    VjpOp,
    avg_pool_op,
)

__all__ = [
    "Refusal",
    "affine_op",
    "functional_affine_forms",
    "functional_form",
    "is_identity",
    "is_registered",
    "module_from_arguments",
    "refusal",
    "register_affine",
    "supported_affine_layers",
]

ModuleT = TypeVar("ModuleT", bound=nn.Module)
#: Builds the module that a functional form applies, from its arguments after the input.
ModuleBuilder = Callable[..., nn.Module]

_OPS: dict[type[nn.Module], Callable[[Any, str], AffineOp]] = {}
_LABELS: dict[type[nn.Module], str] = {}
_FUNCTIONAL: dict[Any, tuple[type[nn.Module], ModuleBuilder]] = {}  # form -> (its module's type, builder)
_REFUSED: dict[type[nn.Module], str] = {}


class Refusal(ValueError):
    """A construct lbinv cannot lift; the caller adds where it is."""


def register_affine(
    module_type: type[ModuleT],
    op: Callable[[ModuleT, str], AffineOp],
    *,
    label: str | None = None,
    functions: Mapping[Any, ModuleBuilder] | None = None,
) -> None:
    """Read every module of ``module_type`` as the affine operator ``op(module, where)``.

    Parameters
    ----------
    module_type : a subclass of ``nn.Module`` whose ``forward`` is affine, ``x ↦ Wx + b``. Its
        subclasses that override ``forward`` are not matched (they compute something else). Tracing
        keeps such a module whole inside a traced ``forward``.
    op : usually a subclass of :class:`~lbinv.operators.AffineOp` (``AffineOp[module_type]``) with
        ``linear`` (W x), ``adjoint`` (Wᵀ y) and, for a module with a bias, ``forward``; ``where`` names
        the module in error messages. Check its adjoint with :func:`~lbinv.operators.adjointness_test`
        (≤ 1e−10 in float64).
    label : how refusal texts list the layer (default: the type's name).
    functions : functional forms that tracing reads as a ``module_type``: a function (``F.avg_pool2d``)
        or a method name (``"relu"``) → a builder of the module from the call's arguments after the
        input (:func:`module_from_arguments`).

    A later registration of the same type replaces the earlier one.

    Examples
    --------
    >>> class Scaled(nn.Module):                       # x ↦ c x
    ...     def __init__(self, c): super().__init__(); self.c = c
    ...     def forward(self, x): return self.c * x
    >>> class ScaledOp(AffineOp[Scaled]):              # W = c I is self-adjoint
    ...     def linear(self, x): return self.module.c * x
    ...     def adjoint(self, y): return self.module.c * y
    >>> register_affine(Scaled, ScaledOp)
    """
    if not (isinstance(module_type, type) and issubclass(module_type, nn.Module)):
        raise ValueError(f"module_type: expected a subclass of nn.Module, got {module_type!r}")
    if not callable(op):
        raise ValueError(f"op: expected an AffineOp subclass or a callable (module, where) -> AffineOp, got {op!r}")
    if label is not None and not isinstance(label, str):
        raise ValueError(f"label: expected None or a str, got {label!r}")
    forms = dict(functions or {})
    bad = next((f for f, build in forms.items() if not callable(build) or not (callable(f) or isinstance(f, str))), None)
    if bad is not None:
        raise ValueError(f"functions: expected {{function or method name: module builder}}, got the entry {bad!r}")
    _REFUSED.pop(module_type, None)
    _OPS[module_type] = op
    _LABELS[module_type] = label or module_type.__name__
    _FUNCTIONAL.update({f: (module_type, build) for f, build in forms.items()})


def _refuse(module_type: type[nn.Module], advice: str, functions: Mapping[Any, ModuleBuilder] | None = None) -> None:
    """Refuse every module of ``module_type`` with ``advice`` (why, and what to use instead)."""
    _REFUSED[module_type] = advice
    _FUNCTIONAL.update({f: (module_type, build) for f, build in (functions or {}).items()})


def _matching(module: nn.Module, table: Mapping[type[nn.Module], Any]) -> type[nn.Module] | None:
    """The most specific type of ``table`` that ``module`` is a plain instance of (its ``forward`` not
    overridden): a registered subclass of ``nn.Linear`` is read by its own op."""
    return next((t for t in type(module).__mro__ if t in table and is_plain(module, t)), None)


def affine_op(module: nn.Module, where: str) -> AffineOp | None:
    """The op of an affine module, None if the module is not a registered affine type (or is a subclass of
    one that overrides ``forward``). Raises ValueError for refused configurations of affine types
    (BatchNorm in training mode, padding_mode other than 'zeros')."""
    base = _matching(module, _OPS)
    return None if base is None else _OPS[base](module, where)


def is_identity(module: nn.Module) -> bool:
    """``module`` is read as the identity (``nn.Identity``, dropout in eval mode)."""
    base = _matching(module, _OPS)
    return base is not None and _OPS[base] is IdentityOp


def is_registered(module: nn.Module) -> bool:
    """``module`` is read by this table: an affine layer, or one refused with advice."""
    return _matching(module, _OPS) is not None or _matching(module, _REFUSED) is not None


def refusal(module: nn.Module) -> str | None:
    """Why ``module`` is refused and what to use instead, if this table refuses its type."""
    base = _matching(module, _REFUSED)
    return None if base is None else _REFUSED[base]


def functional_form(target: Any) -> ModuleBuilder | None:
    """The builder of the module that the function or method ``target`` applies, if registered here."""
    entry = _FUNCTIONAL.get(target)
    return None if entry is None else entry[1]


def supported_affine_layers() -> str:
    """The affine layers of the table, in words, for error messages."""
    return ", ".join(dict.fromkeys(_LABELS.values()))


def functional_affine_forms() -> str:
    """The functional forms of the table, in words (``F.linear, F.conv1d, ...``)."""
    names = [getattr(form, "__name__", "") for form, (kind, _) in _FUNCTIONAL.items() if kind in _OPS]
    return ", ".join(f"F.{name}" for name in names if name)


# --------------------------------------------------------------------------------------------
# functional forms: the module a call applies, holding the user's own tensors
# --------------------------------------------------------------------------------------------
def module_from_arguments(kind: type[nn.Module], *names: str) -> ModuleBuilder:
    """A builder of the module ``kind`` from a functional form's arguments ``names`` (``inplace`` dropped)."""

    def build(*args: Any, inplace: bool = False, **kwargs: Any) -> nn.Module:
        values = dict(zip(names, args), **kwargs)
        values.pop("inplace", None)
        return kind(**values)

    return build


def _holding(module: ModuleT, weight: Tensor, bias: Tensor | None) -> ModuleT:
    """``module`` with the user's own weight and bias tensors (shared, not copied)."""
    module._parameters["weight"] = weight  # type: ignore[assignment]  # torch types these slots as Parameter
    module._parameters["bias"] = bias  # type: ignore[assignment]  # a plain tensor is what F.conv2d reads too
    return module


def _conv(n: int) -> ModuleBuilder:
    kind = {1: nn.Conv1d, 2: nn.Conv2d}[n]

    def build(
        weight: Tensor, bias: Tensor | None = None, stride: Any = 1, padding: Any = 0, dilation: Any = 1, groups: int = 1
    ) -> nn.Module:
        out_ch, in_per_group, *kernel = weight.shape
        kernel_size: Any = tuple(kernel)  # a tuple of n sizes; torch types it as _size_Nd
        conv = kind(in_per_group * groups, out_ch, kernel_size, stride, padding, dilation, groups, bias=bias is not None, device="meta")
        return _holding(conv, weight, bias)

    return build


def _linear(weight: Tensor, bias: Tensor | None = None) -> nn.Module:
    return _holding(nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta"), weight, bias)


def _dropout(p: float = 0.5, training: bool = True, inplace: bool = False) -> nn.Module:
    if training:
        raise Refusal("dropout in training mode (training=True) is random; call .eval() on the module first")
    return nn.Identity()


def _adaptive_max_pool_advice(n: int) -> str:
    return (
        "adaptive max pooling has windows that vary with the input size, so it has no lifted Bregman form; use "
        f"nn.MaxPool{n}d (F.max_pool{n}d) with a fixed kernel, or average pooling (nn.AdaptiveAvgPool{n}d, "
        f"nn.AvgPool{n}d or their F. forms), which is linear"
    )


# --------------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------------
register_affine(nn.Linear, LinearOp, functions={F.linear: _linear})
register_affine(nn.Conv1d, ConvOp, functions={F.conv1d: _conv(1)})
register_affine(nn.Conv2d, ConvOp, functions={F.conv2d: _conv(2)})
register_affine(nn.ConvTranspose1d, ConvTransposeOp)
register_affine(nn.ConvTranspose2d, ConvTransposeOp)
register_affine(
    nn.AvgPool1d,
    avg_pool_op,
    functions={
        F.avg_pool1d: module_from_arguments(nn.AvgPool1d, "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    },
)
register_affine(
    nn.AvgPool2d,
    avg_pool_op,
    functions={
        F.avg_pool2d: module_from_arguments(
            nn.AvgPool2d,
            "kernel_size",
            "stride",
            "padding",
            "ceil_mode",
            "count_include_pad",
            "divisor_override",
        )
    },
)
register_affine(
    nn.AdaptiveAvgPool1d,
    VjpOp,
    functions={
        F.adaptive_avg_pool1d: module_from_arguments(nn.AdaptiveAvgPool1d, "output_size"),
    },
)
register_affine(
    nn.AdaptiveAvgPool2d,
    VjpOp,
    functions={
        F.adaptive_avg_pool2d: module_from_arguments(nn.AdaptiveAvgPool2d, "output_size"),
    },
)
register_affine(nn.Flatten, ReshapeOp)
register_affine(nn.Unflatten, ReshapeOp)
register_affine(nn.BatchNorm1d, BatchNormOp, label="BatchNorm1d/BatchNorm2d (eval mode)")
register_affine(nn.BatchNorm2d, BatchNormOp, label="BatchNorm1d/BatchNorm2d (eval mode)")
register_affine(nn.Dropout, IdentityOp, functions={F.dropout: _dropout})
register_affine(nn.Dropout1d, IdentityOp, label="Dropout", functions={F.dropout1d: _dropout})
register_affine(nn.Dropout2d, IdentityOp, label="Dropout", functions={F.dropout2d: _dropout})
register_affine(nn.AlphaDropout, IdentityOp, label="Dropout")
register_affine(nn.Identity, IdentityOp)
register_affine(ScaleShift, ScaleShiftOp)

_refuse(
    nn.AdaptiveMaxPool1d,
    _adaptive_max_pool_advice(1),
    {
        F.adaptive_max_pool1d: module_from_arguments(nn.AdaptiveMaxPool1d, "output_size", "return_indices"),
    },
)
_refuse(
    nn.AdaptiveMaxPool2d,
    _adaptive_max_pool_advice(2),
    {
        F.adaptive_max_pool2d: module_from_arguments(nn.AdaptiveMaxPool2d, "output_size", "return_indices"),
    },
)
_refuse(nn.FractionalMaxPool2d, "its random windows have no lifted Bregman form; use nn.MaxPool2d, or nn.AvgPool2d")
_refuse(
    nn.LPPool1d,
    "its pooling has no lifted Bregman form; use nn.MaxPool1d, or nn.AvgPool1d",
    {
        F.lp_pool1d: module_from_arguments(nn.LPPool1d, "norm_type", "kernel_size", "stride", "ceil_mode"),
    },
)
_refuse(
    nn.LPPool2d,
    "its pooling has no lifted Bregman form; use nn.MaxPool2d, or nn.AvgPool2d",
    {
        F.lp_pool2d: module_from_arguments(nn.LPPool2d, "norm_type", "kernel_size", "stride", "ceil_mode"),
    },
)
