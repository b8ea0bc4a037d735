"""The adjoint of a strided Conv2d as one stride-1 convolution and an interleave (a pixel shuffle).

On the CPU with float32, oneDNN's ``conv_transpose2d`` is several times slower than this
equivalent (benchmarks/run.py, ``speed_changes.polyphase_conv_adjoint``). :func:`use_polyphase`
decides where the Conv2d ops of :mod:`lbinv.operators.module_ops` use it; :func:`conv_adjoint`
overrides that choice within a ``with`` block (benchmarks and tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor

from lbinv._checks import Shape
from lbinv.operators.cache import Snapshot

__all__ = ["PolyphaseConvAdjoint", "conv_adjoint", "use_polyphase", "CONV_ADJOINTS"]

Pair = tuple[int, int]

#: How Conv2d adjoints are computed: "auto" uses the polyphase form for float32 tensors on the CPU,
#: where oneDNN's conv_transpose2d is several times slower, and conv_transpose2d elsewhere (float64
#: on the CPU, where it wins, and CUDA, unmeasured); "transpose" and "polyphase" force one.
CONV_ADJOINTS = ("auto", "transpose", "polyphase")
_conv_adjoint: ContextVar[str] = ContextVar("lbinv_conv_adjoint", default="auto")


@contextmanager
def conv_adjoint(mode: str) -> Iterator[None]:
    """Within the block, compute Conv2d adjoints as ``mode`` says (one of :data:`CONV_ADJOINTS`)."""
    if mode not in CONV_ADJOINTS:
        raise ValueError(f"mode: expected one of {CONV_ADJOINTS}, got {mode!r}")
    token = _conv_adjoint.set(mode)
    try:
        yield
    finally:
        _conv_adjoint.reset(token)


def use_polyphase(y: Tensor) -> bool:
    """Whether the adjoint of a plain Conv2d applied to ``y`` uses :class:`PolyphaseConvAdjoint`."""
    mode = _conv_adjoint.get()
    if mode == "auto":
        return y.device.type == "cpu" and y.dtype == torch.float32
    return mode == "polyphase"


#: Size (elements) from which :class:`PolyphaseConvAdjoint` interleaves its phases by strided copies.
_STRIDED_INTERLEAVE_MIN = 16384


class PolyphaseConvAdjoint:
    """The adjoint of a Conv2d (groups 1, dilation 1, any stride and padding) as ONE stride-1
    convolution followed by an interleave of its output channels (a pixel shuffle).

    Per spatial dimension, with kernel size K, stride s and left padding p, the adjoint is
    ``x[n] = Σ_{i,k : s i − p + k = n} w[k] y[i]``. Writing ``n = s q + a`` (phase ``a < s``) gives
    ``x[s q + a] = Σ_d w[s d + a + p] y[q − d]``: for each phase a correlation of ``y`` with a
    sub-kernel. All ``s_h s_w`` phases are stacked as output channels of one conv2d (kernel
    ``(c_in s_h s_w, c_out, T_h, T_w)``, zero where a phase has fewer taps), then interleaved back
    and cropped to the input size. The kernel is a gather of ``w`` (cached while ``w`` is unchanged).
    """

    def __init__(self, kernel_size: Pair, stride: Pair, in_shape: Shape, out_shape: Shape, left: Pair) -> None:
        """``in_shape = (c_in, H, W)``, ``out_shape = (c_out, H', W')`` of the convolution (not of
        its adjoint); ``left``: its padding before the first row and column."""
        c_in, c_out = in_shape[0], out_shape[0]
        self.stride = stride
        self.in_size = tuple(in_shape[1:])
        taps, pads = [], []
        for k, s, p, n, m_out in zip(kernel_size, stride, left, in_shape[1:], out_shape[1:]):
            # d ranges over [ceil((−a−p)/s), floor((K−1−a−p)/s)] for phase a; t = d_max − d
            d_lo, d_hi = -((s - 1 + p) // s), (k - 1 - p) // s
            q = -(-n // s)  # ceil(n / s) rows per phase
            width = d_hi - d_lo + 1
            # y padded by d_hi on the left and to q + width − 1 in all (negative: cropped)
            pads += [d_hi, q + width - 1 - d_hi - m_out]
            taps.append([[s * (d_hi - t) + a + p for t in range(width)] for a in range(s)])
        th, tw = len(taps[0][0]), len(taps[1][0])
        (sh, sw), (kh_n, kw_n) = self.stride, kernel_size
        sentinel = c_out * c_in * kh_n * kw_n  # index of an appended zero
        index = torch.full((c_in, sh, sw, c_out, th, tw), sentinel, dtype=torch.long)
        for a in range(sh):
            for b in range(sw):
                for t in range(th):
                    for u in range(tw):
                        kh, kw = taps[0][a][t], taps[1][b][u]
                        if 0 <= kh < kh_n and 0 <= kw < kw_n:
                            flat = (torch.arange(c_out)[:, None] * c_in + torch.arange(c_in)[None, :]) * kh_n * kw_n
                            index[:, a, b, :, t, u] = (flat + kh * kw_n + kw).T
        self.index = index.reshape(c_in * sh * sw, c_out, th, tw)
        self.c_in = c_in
        self._cache: tuple | None = None
        top, bottom, left_w, right_w = pads
        self.pad = (left_w, right_w, top, bottom)  # F.pad order
        symmetric = top == bottom >= 0 and left_w == right_w >= 0
        self.conv_padding = (top, left_w) if symmetric else None

    def kernel(self, w: Tensor) -> Tensor:
        """The stacked phase kernel, a gather of ``w``."""
        cacheable = not w.is_inference() and not (w.requires_grad and torch.is_grad_enabled())
        if cacheable and self._cache is not None and self._cache[0].matches([w]):
            return self._cache[1]  # the common case, once per sweep: no new snapshot
        with torch.inference_mode(False), torch.no_grad() if cacheable else torch.enable_grad():
            flat = torch.cat([w.reshape(-1), w.new_zeros(1)])
            kernel = flat[self.index.to(w.device)]
        if cacheable:  # an inference tensor has no version counter: never kept
            self._cache = (Snapshot([w]), kernel)
        return kernel

    def __call__(self, y: Tensor, w: Tensor) -> Tensor:
        (sh, sw), (n_h, n_w) = self.stride, self.in_size
        if self.conv_padding is not None:  # symmetric: let the convolution pad
            out = F.conv2d(y, self.kernel(w), None, 1, self.conv_padding)
        else:
            out = F.conv2d(F.pad(y, self.pad), self.kernel(w))
        b, _, q_h, q_w = out.shape  # (B, c_in sh sw, q_h, q_w)
        phases = out.view(b, self.c_in, sh, sw, q_h, q_w)
        if out.numel() >= _STRIDED_INTERLEAVE_MIN:
            # one strided copy per phase: several times faster than pixel_shuffle's permuting copy
            # on large batches, slower on tiny ones (fixed cost per copy)
            x = out.new_empty(b, self.c_in, q_h * sh, q_w * sw)
            for a in range(sh):
                for c in range(sw):
                    x[:, :, a::sh, c::sw] = phases[:, :, a, c]
        else:
            x = phases.permute(0, 1, 4, 2, 5, 3).reshape(b, self.c_in, q_h * sh, q_w * sw)
        if q_h * sh != n_h or q_w * sw != n_w:
            x = x[..., :n_h, :n_w]
        return x
