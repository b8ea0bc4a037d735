"""Elementary affine operators: one torch module seen as x ↦ W x + b (MATH.md §1).

:class:`~lbinv.operators.AffineMap` composes these ops; the table of
:mod:`~lbinv.operators.registry` says which module type each one reads. Every op offers ``forward`` (exact module
semantics, eval mode), ``linear`` (W x, no bias), ``adjoint`` (Wᵀ y: explicit transposed
operators, ``torch.func.vjp`` only where no clean closed form exists) and ``tensors`` (the
parameters and buffers it reads). Shapes exclude the batch dimension; ``set_shapes`` is called
after a dry forward, so that ops can precompute what their adjoint needs: once per
:class:`~lbinv.operators.AffineMap` holding the op, and a graph's maps may share an op (always with
the same shapes), so it must give the same result when called again.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lbinv._checks import Shape
from lbinv.operators.conv_polyphase import PolyphaseConvAdjoint, use_polyphase

__all__ = [
    "AffineOp",
    "AvgPoolOp",
    "BatchNormOp",
    "ConvOp",
    "ConvTransposeOp",
    "IdentityOp",
    "LinearOp",
    "ReshapeOp",
    "ScaleShift",
    "ScaleShiftOp",
    "VjpOp",
    "avg_pool_op",
]

_CONV = {1: F.conv1d, 2: F.conv2d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}


def _tuple(v: int | tuple[int, ...] | list[int] | str, n: int) -> tuple[int, ...]:
    """A size argument of a torch layer (one number or one per dimension) as ``n`` numbers."""
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n


ModuleT = TypeVar("ModuleT", bound=nn.Module)


class AffineOp(Generic[ModuleT]):
    """One affine module seen as ``x ↦ Wx + b``. ``where`` names it in error messages.

    A subclass implements ``linear`` (W x) and ``adjoint`` (Wᵀ y), and ``forward`` when the module has a
    bias (by default W x); ``AffineOp[nn.Linear]`` types ``self.module``."""

    isometry = False  # True when W is the identity or a reshape, so that ‖W‖ = 1
    in_shape: Shape
    out_shape: Shape

    def __init__(self, module: ModuleT, where: str) -> None:
        self.module, self.where = module, where

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)

    def linear(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_shapes(self, in_shape: Shape, out_shape: Shape) -> None:
        """Called after the dry forward of each map holding the op (always the same shapes); ops that
        need the shapes precompute here."""
        self.in_shape, self.out_shape = in_shape, out_shape

    def check_input(self, in_shape: Shape) -> None:
        """Raise a ValueError if ``in_shape`` cannot be this op's input (before the dry run)."""

    def tensors(self) -> list[Tensor]:
        m = self.module
        if m._modules:  # not a leaf (e.g. a parametrized module): let torch walk it
            return list(m.parameters()) + list(m.buffers())
        # a leaf: read its dicts directly. AffineMap asks for these on every call (dtype, device),
        # and the generators of parameters()/buffers() cost ~10 µs each, per op and call
        return [t for t in chain(m._parameters.values(), m._buffers.values()) if t is not None]


class IdentityOp(AffineOp[nn.Module]):
    """nn.Identity and Dropout (eval semantics): W = I."""

    isometry = True

    def linear(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        return y


class ReshapeOp(AffineOp[nn.Module]):
    """Flatten / Unflatten: a permutation-free reshape, adjoint = reshape back."""

    isometry = True

    def linear(self, x: Tensor) -> Tensor:
        m = self.module  # what Flatten/Unflatten.forward compute, without nn.Module.__call__
        if type(m) is nn.Flatten:
            return x.flatten(m.start_dim, m.end_dim)
        if type(m) is nn.Unflatten:
            return x.unflatten(m.dim, m.unflattened_size)
        return m(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], *self.in_shape)


class ScaleShift(nn.Module):
    """x ↦ scale·x + shift with numbers ``scale`` and ``shift``: arithmetic such as ``x * 2 - 1`` or
    ``x / 255`` in a traced forward (:mod:`lbinv.tracing`) becomes this module."""

    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = float(scale), float(shift)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale + self.shift

    def extra_repr(self) -> str:
        return f"scale={self.scale}, shift={self.shift}"


class ScaleShiftOp(AffineOp["ScaleShift"]):
    """:class:`ScaleShift`: W = scale·I (self-adjoint), b = shift."""

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x)

    def linear(self, x: Tensor) -> Tensor:
        return x * self.module.scale

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self.module.scale


class LinearOp(AffineOp[nn.Linear]):
    """nn.Linear on the last dim: W x + b; adjoint y ↦ y W."""

    def check_input(self, in_shape: Shape) -> None:
        n = self.module.in_features
        if len(in_shape) == 0 or in_shape[-1] != n:
            raise ValueError(
                f"{self.where} expects inputs whose last dimension is in_features={n} "
                f"(e.g. input_shape ({n},)), but got shape {tuple(in_shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.module.weight, self.module.bias)

    def linear(self, x: Tensor) -> Tensor:
        return F.linear(x, self.module.weight)

    def adjoint(self, y: Tensor) -> Tensor:
        return torch.matmul(y, self.module.weight)


class ConvBase(AffineOp[nn.modules.conv._ConvNd]):
    """What ConvNd and ConvTransposeNd share: zeros padding only, the input check, and
    forward / linear as one call with or without the bias."""

    def __init__(self, module: nn.modules.conv._ConvNd, where: str) -> None:
        if module.padding_mode != "zeros":
            raise ValueError(
                f"{where} has padding_mode='{module.padding_mode}'; only padding_mode='zeros' "
                "is supported (it keeps the layer affine with an exact transposed adjoint), "
                "use padding_mode='zeros'"
            )
        super().__init__(module, where)
        self.dim = len(module.kernel_size)

    def check_input(self, in_shape: Shape) -> None:
        d, c = self.dim, self.module.in_channels
        if len(in_shape) != d + 1 or in_shape[0] != c:
            spatial = "H, W" if d == 2 else "L"
            raise ValueError(
                f"{self.where} expects input_shape (in_channels={c}, {spatial}) (no batch dimension), but got shape {tuple(in_shape)}"
            )

    def _apply(self, x: Tensor, bias: Tensor | None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        return self._apply(x, self.module.bias)

    def linear(self, x: Tensor) -> Tensor:
        return self._apply(x, None)


class ConvOp(ConvBase):
    """ConvNd. Adjoint: conv_transposeNd with the output_padding that restores the input
    size (asymmetric 'same' padding: transpose without padding, then crop)."""

    def _apply(self, x: Tensor, bias: Tensor | None) -> Tensor:
        m = self.module
        return _CONV[self.dim](x, m.weight, bias, m.stride, m.padding, m.dilation, m.groups)

    def set_shapes(self, in_shape: Shape, out_shape: Shape) -> None:
        super().set_shapes(in_shape, out_shape)
        m, d = self.module, self.dim
        k, s, dil = _tuple(m.kernel_size, d), _tuple(m.stride, d), _tuple(m.dilation, d)
        if m.padding == "valid":
            left = right = (0,) * d
        elif m.padding == "same":  # total dil*(k-1), the extra one on the right (as ATen does)
            total = [dl * (kk - 1) for dl, kk in zip(dil, k)]
            left = tuple(t // 2 for t in total)
            right = tuple(t - t // 2 for t in total)
        else:
            left = right = _tuple(m.padding, d)
        self.symmetric, self.left = left == right, left
        # symmetric: transpose with the same padding; otherwise without, then crop
        self.t_padding = left if self.symmetric else (0,) * d
        n_in, n_out, pad = in_shape[1:], out_shape[1:], self.t_padding
        full = [n_in[i] + (0 if self.symmetric else left[i] + right[i]) for i in range(d)]
        self.t_output_padding = tuple(full[i] - ((n_out[i] - 1) * s[i] - 2 * pad[i] + dil[i] * (k[i] - 1) + 1) for i in range(d))
        plain = d == 2 and m.groups == 1 and all(dl == 1 for dl in dil)
        self.polyphase = PolyphaseConvAdjoint((k[0], k[1]), (s[0], s[1]), in_shape, out_shape, (left[0], left[1])) if plain else None

    def adjoint(self, y: Tensor) -> Tensor:
        m = self.module
        if self.polyphase is not None and use_polyphase(y):
            return self.polyphase(y, m.weight)
        x = _CONV_T[self.dim](y, m.weight, None, m.stride, self.t_padding, self.t_output_padding, m.groups, m.dilation)
        if not self.symmetric:
            x = x[(Ellipsis,) + tuple(slice(lf, lf + n) for lf, n in zip(self.left, self.in_shape[1:]))]
        return x


class ConvTransposeOp(ConvBase):
    """ConvTransposeNd. Adjoint: convNd with the same stride/padding/dilation/groups,
    cropped to the input size (needed only when output_padding ≥ stride)."""

    def _apply(self, x: Tensor, bias: Tensor | None) -> Tensor:
        m = self.module
        return _CONV_T[self.dim](x, m.weight, bias, m.stride, _tuple(m.padding, self.dim), m.output_padding, m.groups, m.dilation)

    def adjoint(self, y: Tensor) -> Tensor:
        m = self.module
        x = _CONV[self.dim](y, m.weight, None, m.stride, _tuple(m.padding, self.dim), m.dilation, m.groups)
        return x[(Ellipsis,) + tuple(slice(0, n) for n in self.in_shape[1:])]


class AvgPoolOp(AffineOp["nn.AvgPool1d | nn.AvgPool2d"]):
    """AvgPoolNd without ceil_mode and without excluded padding: a per-channel convolution
    with the constant kernel 1/divisor. Adjoint: conv_transposeNd with that kernel."""

    def __init__(self, module: nn.AvgPool1d | nn.AvgPool2d, where: str) -> None:
        super().__init__(module, where)
        self.dim = 1 if isinstance(module, nn.AvgPool1d) else 2

    def linear(self, x: Tensor) -> Tensor:
        return self.module(x)

    def set_shapes(self, in_shape: Shape, out_shape: Shape) -> None:
        super().set_shapes(in_shape, out_shape)
        m, d = self.module, self.dim
        self.k = _tuple(m.kernel_size, d)
        self.s = _tuple(m.stride if m.stride is not None else m.kernel_size, d)
        self.p = _tuple(m.padding, d)
        self.scale = 1.0 / (getattr(m, "divisor_override", None) or math.prod(self.k))
        n_in, n_out = in_shape[-d:], out_shape[-d:]
        self.t_output_padding = tuple(n_in[i] - ((n_out[i] - 1) * self.s[i] - 2 * self.p[i] + self.k[i]) for i in range(d))

    def adjoint(self, y: Tensor) -> Tensor:
        d = self.dim
        kernel = torch.full((1, 1, *self.k), self.scale, dtype=y.dtype, device=y.device)
        yy = y.reshape(-1, 1, *y.shape[-d:])
        x = _CONV_T[d](yy, kernel, None, self.s, self.p, self.t_output_padding)
        return x.reshape(y.shape[0], *self.in_shape)


class VjpOp(AffineOp[nn.Module]):
    """A parameter-free linear module without a clean closed-form adjoint (AvgPool with
    ceil_mode or count_include_pad=False, adaptive average pooling): Wᵀ y by torch.func.vjp.
    Works under torch.no_grad() and torch.inference_mode() callers."""

    def linear(self, x: Tensor) -> Tensor:
        return self.module(x)

    def adjoint(self, y: Tensor) -> Tensor:
        with torch.inference_mode(False), torch.enable_grad():
            if y.is_inference():
                y = y.clone()  # a normal tensor, usable by autograd
            x0 = torch.zeros((y.shape[0], *self.in_shape), dtype=y.dtype, device=y.device)
            pullback = torch.func.vjp(self.module, x0)[1]
            (x,) = pullback(y)
        return x


def avg_pool_op(module: nn.AvgPool1d | nn.AvgPool2d, where: str) -> AffineOp:
    """Average pooling is a fixed convolution unless ceil_mode or excluded padding makes the
    divisor vary at the borders: then the adjoint comes from vjp."""
    if module.ceil_mode or (not module.count_include_pad and any(_tuple(module.padding, 1))):
        return VjpOp(module, where)
    return AvgPoolOp(module, where)


class BatchNormOp(AffineOp[nn.modules.batchnorm._BatchNorm]):
    """BatchNorm in eval mode: per-channel x ↦ s·x + (β − s·μ), s = γ / sqrt(σ² + ε).
    Self-adjoint linear part (a diagonal scaling)."""

    def __init__(self, module: nn.modules.batchnorm._BatchNorm, where: str) -> None:
        if module.training:
            raise ValueError(
                f"{where} is in training mode, where it normalises with batch statistics and "
                "is not a fixed affine map; call .eval() on the module (or the whole encoder) "
                "first so its running statistics are used"
            )
        if module.running_mean is None or module.running_var is None:
            raise ValueError(
                f"{where} has track_running_stats=False, so it always uses batch statistics and "
                "is not an affine map; use a BatchNorm with track_running_stats=True, in eval mode"
            )
        super().__init__(module, where)

    def check_input(self, in_shape: Shape) -> None:
        m = self.module
        dims, want = ((1, 2), "(C,) or (C, L)") if isinstance(m, nn.BatchNorm1d) else ((3,), "(C, H, W)")
        if len(in_shape) not in dims or in_shape[0] != m.num_features:
            raise ValueError(
                f"{self.where} expects input_shape {want} with C = num_features = {m.num_features} "
                f"(no batch dimension), but got shape {tuple(in_shape)}"
            )

    def _scale(self) -> Tensor:
        m = self.module
        assert m.running_var is not None  # refused in __init__
        s = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            s = m.weight * s
        return s.reshape(-1, *([1] * (len(self.in_shape) - 1)))

    def forward(self, x: Tensor) -> Tensor:
        m = self.module
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    def linear(self, x: Tensor) -> Tensor:
        return x * self._scale()

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self._scale()
