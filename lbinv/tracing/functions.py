"""torch.fx graph nodes → the modules they apply: functional forms (``F.relu`` → ``nn.ReLU``,
``F.linear(x, w, b)`` → an ``nn.Linear`` holding ``w`` and ``b``), reshapes, arithmetic with numbers,
and the names that refusals use. Used by :mod:`lbinv.tracing.graph`."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from lbinv.operators.module_ops import ScaleShift

_AVERAGE_POOLING = "average pooling (nn.AvgPool2d / F.avg_pool2d), which is linear"


def _conv(n: int) -> Callable[..., nn.Module]:
    kind = {1: nn.Conv1d, 2: nn.Conv2d}[n]

    def build(weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, groups=1) -> nn.Module:
        out_ch, in_per_group, *kernel = weight.shape
        return _holding(
            kind(in_per_group * groups, out_ch, tuple(kernel), stride, padding, dilation, groups,
                 bias=bias is not None, device="meta"),
            weight, bias,
        )

    return build


def _linear(weight: Tensor, bias: Tensor | None = None) -> nn.Module:
    return _holding(nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta"), weight, bias)


def _holding(module: nn.Module, weight: Tensor, bias: Tensor | None) -> nn.Module:
    """``module`` with the user's own weight and bias tensors (shared, not copied)."""
    module._parameters["weight"] = weight
    module._parameters["bias"] = bias
    return module


def _prelu(weight: Tensor) -> nn.Module:
    """``F.prelu(x, weight)`` as an ``nn.PReLU`` holding the user's ``weight`` (shared: lifting copies it)."""
    if not isinstance(weight, Tensor):
        raise Refusal(f"prelu needs its weight as a tensor of slopes, got {type(weight).__name__}")
    module = nn.PReLU(weight.numel(), device="meta")
    module._parameters["weight"] = weight
    return module


def _clamp(min=None, max=None) -> nn.Module:
    return nn.Hardtanh(-math.inf if min is None else float(min), math.inf if max is None else float(max))


def _dropout(p: float = 0.5, training: bool = True, inplace: bool = False) -> nn.Module:
    if training:
        raise Refusal("dropout in training mode (training=True) is random; call .eval() on the module first")
    return nn.Identity()


def _adaptive_max_pool(*args: Any, **kwargs: Any) -> nn.Module:
    raise Refusal(
        "adaptive max pooling has windows that vary with the input size; use F.max_pool2d with a fixed kernel, "
        f"or {_AVERAGE_POOLING}"
    )


def _max_pool(kind: type[nn.Module]) -> Callable[..., nn.Module]:
    def build(kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False) -> nn.Module:
        if return_indices:
            raise Refusal("max pooling with return_indices=True returns two tensors; lbinv reads the pooled values only")
        return kind(kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)

    return build


def _activation(kind: type[nn.Module], *names: str) -> Callable[..., nn.Module]:
    """The module ``kind`` built from the functional form's arguments ``names`` (``inplace`` dropped)."""
    def build(*args: Any, inplace: bool = False, **kwargs: Any) -> nn.Module:
        values = dict(zip(names, args), **kwargs)
        values.pop("inplace", None)
        return kind(**values)

    return build


class Refusal(ValueError):
    """A construct lbinv cannot lift; the caller adds where it is."""


# function or method name -> builder of the equivalent module from the non-input arguments
FUNCTIONS: dict[Any, Callable[..., nn.Module]] = {
    F.linear: _linear,
    F.conv1d: _conv(1),
    F.conv2d: _conv(2),
    F.avg_pool1d: _activation(nn.AvgPool1d, "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad"),
    F.avg_pool2d: _activation(
        nn.AvgPool2d, "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"
    ),
    F.adaptive_avg_pool1d: _activation(nn.AdaptiveAvgPool1d, "output_size"),
    F.adaptive_avg_pool2d: _activation(nn.AdaptiveAvgPool2d, "output_size"),
    F.dropout: _dropout,
    F.dropout1d: _dropout,
    F.dropout2d: _dropout,
    F.max_pool1d: _max_pool(nn.MaxPool1d),
    F.max_pool2d: _max_pool(nn.MaxPool2d),
    torch.max_pool1d: _max_pool(nn.MaxPool1d),
    torch.max_pool2d: _max_pool(nn.MaxPool2d),
    F.adaptive_max_pool1d: _adaptive_max_pool,
    F.adaptive_max_pool2d: _adaptive_max_pool,
    F.relu: _activation(nn.ReLU),
    torch.relu: _activation(nn.ReLU),
    torch.relu_: _activation(nn.ReLU),
    F.relu_: _activation(nn.ReLU),
    "relu": _activation(nn.ReLU),
    "relu_": _activation(nn.ReLU),
    F.relu6: _activation(nn.ReLU6),
    F.leaky_relu: _activation(nn.LeakyReLU, "negative_slope"),
    F.leaky_relu_: _activation(nn.LeakyReLU, "negative_slope"),
    F.prelu: _prelu,  # F.prelu is torch.prelu
    "prelu": _prelu,
    F.hardtanh: _activation(nn.Hardtanh, "min_val", "max_val"),
    F.hardtanh_: _activation(nn.Hardtanh, "min_val", "max_val"),
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
    torch.sigmoid: _activation(nn.Sigmoid),
    F.sigmoid: _activation(nn.Sigmoid),
    "sigmoid": _activation(nn.Sigmoid),
    "sigmoid_": _activation(nn.Sigmoid),
    torch.tanh: _activation(nn.Tanh),
    F.tanh: _activation(nn.Tanh),
    "tanh": _activation(nn.Tanh),
    "tanh_": _activation(nn.Tanh),
    F.softshrink: _activation(nn.Softshrink, "lambd"),
    F.softplus: _activation(nn.Softplus, "beta", "threshold"),
    F.elu: _activation(nn.ELU, "alpha"),
    F.celu: _activation(nn.CELU, "alpha"),
    F.softsign: _activation(nn.Softsign),
    F.tanhshrink: _activation(nn.Tanhshrink),
    F.logsigmoid: _activation(nn.LogSigmoid),
    F.hardsigmoid: _activation(nn.Hardsigmoid),
    # refused by proximal_activation, which says why and what to use instead
    F.gelu: _activation(nn.GELU, "approximate"),
    F.silu: _activation(nn.SiLU),
    F.mish: _activation(nn.Mish),
    F.selu: _activation(nn.SELU),
    F.hardswish: _activation(nn.Hardswish),
}

#: Operations that only reshape a sample (the batch dimension kept): read as Flatten / Unflatten.
RESHAPES = {torch.flatten, torch.reshape, torch.squeeze, torch.unsqueeze, torch.unflatten,
             "view", "reshape", "flatten", "unflatten", "squeeze", "unsqueeze", "view_as", "reshape_as"}
#: Operations that return their input's values unchanged.
IDENTITIES = {"contiguous", "clone", "detach", torch.clone, torch.detach}
#: Arithmetic with a number: x ↦ s·x + c.
ARITHMETIC = {operator.add, operator.sub, operator.mul, operator.truediv, operator.neg, operator.pos,
               torch.add, torch.sub, torch.mul, torch.div, "add", "sub", "mul", "div", "neg",
               operator.iadd, operator.isub, operator.imul, operator.itruediv}
#: Reading a tensor's shape: metadata, not computation.
METADATA = {"size", "dim", "numel"}



def reshape(node: fx.Node) -> list[nn.Module]:
    """A batch-preserving reshape ``(B, *in) → (B, *out)`` as Flatten, then Unflatten to ``out``."""
    in_shape = node.args[0].meta["tensor_meta"].shape
    out_shape = node.meta["tensor_meta"].shape
    if out_shape[0] != in_shape[0]:
        raise Refusal(
            f"the reshape to {tuple(out_shape)} changes the batch dimension (input {tuple(in_shape)}); "
            "keep the batch dimension first, e.g. x.view(x.size(0), -1)"
        )
    out = tuple(out_shape[1:])
    return [nn.Flatten()] if len(out) == 1 else [nn.Flatten(), nn.Unflatten(1, out)]


def scale_shift(node: fx.Node) -> nn.Module:
    """``x·s + c`` from arithmetic of the input with numbers (``x * 2 - 1``, ``x / 255``, ``-x``, ``1 - x``)."""
    target = node.target
    name = target if isinstance(target, str) else target.__name__.strip("_").lstrip("i")
    args = list(node.args) + [node.kwargs[k] for k in ("other",) if k in node.kwargs]
    if name in ("neg", "pos"):
        return ScaleShift(-1.0 if name == "neg" else 1.0, 0.0)
    x_first = isinstance(args[0], fx.Node)
    number = args[1] if x_first else args[0]
    alpha = node.kwargs.get("alpha", 1)
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
    if name in ("truediv", "div") and x_first and node.kwargs.get("rounding_mode") is None:
        return ScaleShift(1.0 / number, 0.0)
    raise Refusal(f"{name} of a number by the input is not affine")


_OPERATORS = {operator.add: "+", operator.iadd: "+=", operator.sub: "-", operator.isub: "-=", operator.mul: "*",
              operator.imul: "*=", operator.truediv: "/", operator.itruediv: "/=", operator.neg: "unary -",
              operator.matmul: "@", operator.getitem: "indexing [...]", operator.pow: "**"}


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
