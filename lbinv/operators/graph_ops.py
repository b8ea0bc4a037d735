"""The linear operators that lifting a graph adds (:mod:`lbinv.lifting`): the entries of pooling windows
(:class:`WindowGather`, for max pooling written with ReLUs), a value's place in a concatenation
(:class:`Embed`, for ``torch.cat``), and the linear part of an op (:class:`LinearPartOp`, for a layer
applied to a sum whose bias must count once). Each has an explicit adjoint.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lbinv._checks import Shape
from lbinv.operators.module_ops import AffineOp

__all__ = ["WindowGather", "Embed", "GatherOp", "EmbedOp", "LinearPartOp", "pooling_windows"]


class WindowGather(nn.Module):
    """``(B, C, *spatial) → (B, C, *out_spatial)``: at each output position, one entry of the input
    (``index`` into the flattened spatial dimensions); a linear selection.

    ``key`` describes what the index was made from (the pooling, the shape, the offset): the index is
    a private constant, not a buffer, so that caches keyed by the module's configuration
    (:mod:`lbinv.operators.cache`) find it again when the network is traced anew.
    """

    def __init__(self, index: Tensor, out_spatial: Shape, key: tuple) -> None:
        super().__init__()
        self._index = {index.device: index}
        self.out_spatial, self.key = tuple(out_spatial), key

    def index(self, device: torch.device) -> Tensor:
        if device not in self._index:
            with torch.inference_mode(False):  # a normal tensor, usable by autograd later
                self._index[device] = next(iter(self._index.values())).to(device)
        return self._index[device]

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(2).index_select(2, self.index(x.device)).reshape(*x.shape[:2], *self.out_spatial)


class GatherOp(AffineOp):
    """:class:`WindowGather`: Wᵀ y adds each output entry back onto the input entry it came from."""

    def linear(self, x: Tensor) -> Tensor:
        return self.module(x)

    def adjoint(self, y: Tensor) -> Tensor:
        channels = self.in_shape[0]
        x = y.new_zeros((y.shape[0], channels, math.prod(self.in_shape[1:])))
        x.index_add_(2, self.module.index(y.device), y.reshape(y.shape[0], channels, -1))
        return x.reshape(y.shape[0], *self.in_shape)


def pooling_windows(pool: nn.Module, in_shape: Shape) -> list[WindowGather]:
    """One :class:`WindowGather` per offset in the window of max pooling ``pool`` (``nn.MaxPool1d`` or
    ``nn.MaxPool2d``) on inputs of shape ``in_shape`` = (C, *spatial): the k-th picks the k-th entry of
    every window. Where that entry lies in the padding (which max pooling fills with −∞, so it never
    wins) it picks the window's first entry inside the input instead, which leaves the maximum unchanged.
    """
    with torch.inference_mode(False):  # the indices must stay usable by autograd (method="gradient")
        return _pooling_windows(pool, tuple(in_shape))


def _pooling_windows(pool: nn.Module, in_shape: Shape) -> list[WindowGather]:
    spatial = tuple(in_shape[1:])
    dims = len(spatial)
    with torch.no_grad():
        out_spatial = tuple(pool(torch.zeros(1, *in_shape)).shape[2:])

    def per_dim(value) -> tuple[int, ...]:
        return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * dims

    kernel, stride = per_dim(pool.kernel_size), per_dim(pool.stride if pool.stride is not None else pool.kernel_size)
    padding, dilation = per_dim(pool.padding), per_dim(pool.dilation)
    grids = torch.meshgrid(*[torch.arange(n) for n in out_spatial], indexing="ij")
    positions, inside = [], []
    for offset in itertools.product(*[range(k) for k in kernel]):
        coords = [g * s - p + o * d for g, s, p, o, d in zip(grids, stride, padding, offset, dilation)]
        valid = torch.stack([(c >= 0) & (c < n) for c, n in zip(coords, spatial)]).all(dim=0)
        flat = torch.zeros_like(coords[0])
        for c, n in zip(coords, spatial):
            flat = flat * n + c.clamp(0, n - 1)
        positions.append(flat)
        inside.append(valid)
    positions_t, inside_t = torch.stack(positions), torch.stack(inside)
    first_inside = positions_t.gather(0, inside_t.long().argmax(dim=0, keepdim=True))[0]
    config = (kernel, stride, padding, dilation, tuple(in_shape))
    return [
        WindowGather(torch.where(ok, pos, first_inside).flatten(), out_spatial, (*config, k))
        for k, (pos, ok) in enumerate(zip(positions_t, inside_t))
    ]


class Embed(nn.Module):
    """``x ↦`` zeros of size ``total`` along the sample dimension ``dim`` (batch not counted), with ``x``
    at ``[offset, offset + n)``: one part of a ``torch.cat``."""

    def __init__(self, dim: int, offset: int, total: int) -> None:
        super().__init__()
        self.dim, self.offset, self.total = dim, offset, total

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[self.dim + 1]
        after = x.dim() - 2 - self.dim  # F.pad lists (before, after) pairs from the last dimension on
        return F.pad(x, (0, 0) * after + (self.offset, self.total - self.offset - n))


class EmbedOp(AffineOp):
    """:class:`Embed`: Wᵀ y is the part of ``y`` that ``x`` filled; ‖W‖ = 1."""

    isometry = True

    def linear(self, x: Tensor) -> Tensor:
        return self.module(x)

    def adjoint(self, y: Tensor) -> Tensor:
        m = self.module
        return y.narrow(m.dim + 1, m.offset, self.in_shape[m.dim])


class LinearPartOp(AffineOp):
    """The linear part ``x ↦ Wx`` of another op (its bias left out)."""

    def __init__(self, inner: AffineOp) -> None:
        super().__init__(inner.module, inner.where)
        self.inner, self.isometry = inner, inner.isometry

    def forward(self, x: Tensor) -> Tensor:
        return self.inner.linear(x)

    def linear(self, x: Tensor) -> Tensor:
        return self.inner.linear(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return self.inner.adjoint(y)

    def set_shapes(self, in_shape: Shape, out_shape: Shape) -> None:
        super().set_shapes(in_shape, out_shape)
        self.inner.set_shapes(in_shape, out_shape)

    def check_input(self, in_shape: Shape) -> None:
        self.inner.check_input(in_shape)

    def tensors(self) -> list[Tensor]:
        return self.inner.tensors()
