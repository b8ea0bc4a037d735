"""torch.fx graph nodes → the modules they apply: functional forms of activations and max pooling
(``F.relu`` → ``nn.ReLU``; those of affine layers, ``F.linear(x, w, b)`` → an ``nn.Linear`` holding ``w``
and ``b``, are in the table of :mod:`lbinv.operators.registry`), reshapes, arithmetic with numbers, and the
names that refusals use. Used by :mod:`lbinv.tracing.graph`."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from lbinv.operators.module_ops import ScaleShift
from lbinv.operators.registry import ModuleBuilder, Refusal, functional_form, module_from_arguments


def _prelu(weight: Tensor) -> nn.Module:
    """``F.prelu(x, weight)`` as an ``nn.PReLU`` holding the user's ``weight`` (shared: lifting copies it)."""
    if not isinstance(weight, Tensor):
        raise Refusal(f"prelu needs its weight as a tensor of slopes, got {type(weight).__name__}")
    module = nn.PReLU(weight.numel(), device="meta")
    module._parameters["weight"] = weight  # type: ignore[assignment]  # torch types the slot as Parameter; a tensor works
    return module


def _clamp(min=None, max=None) -> nn.Module:
    return nn.Hardtanh(-math.inf if min is None else float(min), math.inf if max is None else float(max))


def _max_pool(kind: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False) -> nn.Module:
        if return_indices:
            raise Refusal("max pooling with return_indices=True returns two tensors; lbinv reads the pooled values only")
        return kind(kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)

    return build


# function or method name -> builder of the equivalent module from the non-input arguments
FUNCTIONS: dict[Any, ModuleBuilder] = {
    F.max_pool1d: _max_pool(nn.MaxPool1d),
    F.max_pool2d: _max_pool(nn.MaxPool2d),
    torch.max_pool1d: _max_pool(nn.MaxPool1d),
    torch.max_pool2d: _max_pool(nn.MaxPool2d),
    F.relu: module_from_arguments(nn.ReLU),
    torch.relu: module_from_arguments(nn.ReLU),
    torch.relu_: module_from_arguments(nn.ReLU),
    F.relu_: module_from_arguments(nn.ReLU),
    "relu": module_from_arguments(nn.ReLU),
    "relu_": module_from_arguments(nn.ReLU),
    F.relu6: module_from_arguments(nn.ReLU6),
    F.leaky_relu: module_from_arguments(nn.LeakyReLU, "negative_slope"),
    F.leaky_relu_: module_from_arguments(nn.LeakyReLU, "negative_slope"),
    F.prelu: _prelu,  # F.prelu is torch.prelu
    "prelu": _prelu,
    F.hardtanh: module_from_arguments(nn.Hardtanh, "min_val", "max_val"),
    F.hardtanh_: module_from_arguments(nn.Hardtanh, "min_val", "max_val"),
    torch.clamp: _clamp,
    torch.clip: _clamp,
    torch.clamp_: _clamp,
    "clamp": _clamp,
    "clamp_": _clamp,
    "clip": _clamp,
    "clip_": _clamp,
    torch.clamp_min: lambda min: _clamp(min=min),
    "clamp_min": lambda min: _clamp(min=min),
    torch.clamp_max: lambda max: _clamp(max=max),
    "clamp_max": lambda max: _clamp(max=max),
    torch.sigmoid: module_from_arguments(nn.Sigmoid),
    F.sigmoid: module_from_arguments(nn.Sigmoid),
    "sigmoid": module_from_arguments(nn.Sigmoid),
    "sigmoid_": module_from_arguments(nn.Sigmoid),
    torch.tanh: module_from_arguments(nn.Tanh),
    F.tanh: module_from_arguments(nn.Tanh),
    "tanh": module_from_arguments(nn.Tanh),
    "tanh_": module_from_arguments(nn.Tanh),
    F.softshrink: module_from_arguments(nn.Softshrink, "lambd"),
    F.softplus: module_from_arguments(nn.Softplus, "beta", "threshold"),
    F.elu: module_from_arguments(nn.ELU, "alpha"),
    F.celu: module_from_arguments(nn.CELU, "alpha"),
    F.softsign: module_from_arguments(nn.Softsign),
    F.tanhshrink: module_from_arguments(nn.Tanhshrink),
    F.logsigmoid: module_from_arguments(nn.LogSigmoid),
    F.hardsigmoid: module_from_arguments(nn.Hardsigmoid),
    # refused by proximal_activation, which says why and what to use instead
    F.gelu: module_from_arguments(nn.GELU, "approximate"),
    F.silu: module_from_arguments(nn.SiLU),
    F.mish: module_from_arguments(nn.Mish),
    F.selu: module_from_arguments(nn.SELU),
    F.hardswish: module_from_arguments(nn.Hardswish),
}

#: Operations that only reshape a sample (the batch dimension kept): read as Flatten / Unflatten.
RESHAPES = {
    torch.flatten,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.unflatten,
    "view",
    "reshape",
    "flatten",
    "unflatten",
    "squeeze",
    "unsqueeze",
    "view_as",
    "reshape_as",
}
#: Operations that return their input's values unchanged.
IDENTITIES = {"contiguous", "clone", "detach", torch.clone, torch.detach}
#: Arithmetic with a number: x ↦ s·x + c.
ARITHMETIC = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.neg,
    operator.pos,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
    "add",
    "sub",
    "mul",
    "div",
    "neg",
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
}


def reshape(in_shape: Sequence[int], out_shape: Sequence[int]) -> list[nn.Module]:
    """A batch-preserving reshape ``(B, *in) → (B, *out)`` as Flatten, then Unflatten to ``out``."""
    if out_shape[0] != in_shape[0]:
        raise Refusal(
            f"the reshape to {tuple(out_shape)} changes the batch dimension (input {tuple(in_shape)}); "
            "keep the batch dimension first, e.g. x.view(x.size(0), -1)"
        )
    out = tuple(out_shape[1:])
    return [nn.Flatten()] if len(out) == 1 else [nn.Flatten(), nn.Unflatten(1, out)]


def scale_shift(target: Any, args: Sequence[Any], kwargs: Mapping[str, Any], x_first: bool) -> nn.Module:
    """``x·s + c`` from arithmetic of the input with numbers (``x * 2 - 1``, ``x / 255``, ``-x``, ``1 - x``):
    ``target`` applied to the values ``args`` and ``kwargs``, the input first when ``x_first``."""
    name = target if isinstance(target, str) else target.__name__.strip("_").lstrip("i")
    args = list(args) + [kwargs[k] for k in ("other",) if k in kwargs]
    if name in ("neg", "pos"):
        return ScaleShift(-1.0 if name == "neg" else 1.0, 0.0)
    number = args[1] if x_first else args[0]
    alpha = kwargs.get("alpha", 1)
    if not isinstance(number, (int, float)) or isinstance(number, bool) or not isinstance(alpha, (int, float)):
        raise Refusal(
            f"{name} with {type(number).__name__} {number!r:.40}: lbinv reads arithmetic of the input with numbers "
            "only; a tensor constant (a per-channel mean, say) is not supported yet"
        )
    number = float(number) * (alpha if name in ("add", "sub") else 1)
    if name == "add":
        return ScaleShift(1.0, number)
    if name == "sub":
        return ScaleShift(1.0, -number) if x_first else ScaleShift(-1.0, number)
    if name == "mul":
        return ScaleShift(number, 0.0)
    if name in ("truediv", "div") and x_first and kwargs.get("rounding_mode") is None:
        return ScaleShift(1.0 / number, 0.0)
    raise Refusal(f"{name} of a number by the input is not affine")


_OPERATORS = {
    operator.add: "+",
    operator.iadd: "+=",
    operator.sub: "-",
    operator.isub: "-=",
    operator.mul: "*",
    operator.imul: "*=",
    operator.truediv: "/",
    operator.itruediv: "/=",
    operator.neg: "unary -",
    operator.matmul: "@",
    operator.getitem: "indexing [...]",
    operator.pow: "**",
}


def callable_name(node: fx.Node) -> str:
    """How the user wrote the operation: ``F.relu``, ``torch.cat``, ``the operator +``, ``the method .view()``."""
    target = node.target
    if isinstance(target, str):
        return f"the method .{target}()"
    if target in _OPERATORS:
        return f"the operator {_OPERATORS[target]}"
    for prefix, namespace in (("F.", F), ("torch.", torch)):
        name = getattr(target, "__name__", None)
        if name is not None and getattr(namespace, name, None) is target:
            return prefix + name
    return getattr(target, "__name__", repr(target))


def module_builder(target: Any) -> ModuleBuilder | None:
    """The builder of the module that the function or method ``target`` applies: an affine layer's
    functional form (:func:`~lbinv.operators.registry.functional_form`) or one of :data:`FUNCTIONS`."""
    return functional_form(target) or FUNCTIONS.get(target)
