"""Measurements of a linear operator given as ``forward``/``adjoint`` callables on batched tensors:
its spectral norm by power iteration, and the normalised adjointness test.

:func:`adjointness_test` is how every adjoint in lbinv is checked (≤ 1e−10 in float64), and how a
user can check an operator of their own before handing it to a solver.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["operator_norm", "adjointness_test"]


def operator_norm(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    in_shape: Sequence[int],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_vectors: int = 4,
    max_iter: int = 500,
    rtol: float = 1e-5,
    check_every: int = 10,
    seed: int = 0,
    warm: dict | None = None,
) -> float:
    """‖A‖₂ of a linear map (not squared) by block power iteration on AᵀA.

    ``n_vectors`` seeded random vectors are iterated in one batch, V ← orth(AᵀA V); every
    ``check_every`` iterations the Rayleigh–Ritz estimate λ = max eig((AV)(AV)ᵀ) is taken,
    and the loop stops once it changes by less than ``rtol`` (relative) or after
    ``max_iter`` iterations. Returns sqrt(λ). With ``warm`` (a dict, e.g.
    :func:`~lbinv.operators.cache.warm_state`) the iteration starts from the block it left there
    last time, when its shape, dtype and device fit (a map whose weights changed a little converges
    in a few checks instead of hundreds of iterations), and leaves its final block there.

    The estimate errs on the LOW side: λ is a Ritz value of AᵀA on an orthonormal subspace,
    hence ≤ ‖A‖₂² (up to rounding); callers multiply by a safety factor (e.g. 1.01).
    """
    dtype = dtype or torch.float64
    in_shape = tuple(in_shape)
    n = math.prod(in_shape)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    k = max(1, min(n_vectors, n))
    with torch.no_grad():
        v = torch.randn(k, n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        last = None if warm is None else warm.get("vectors")
        if last is not None and last.shape == v.shape and last.dtype == v.dtype and last.device == v.device:
            v = last
        v = torch.linalg.qr(v.T).Q.T
        est_prev, est = -1.0, 0.0
        for it in range(1, max_iter + 1):
            av = forward(v.reshape(k, *in_shape))
            avf = av.reshape(k, -1)
            if it % check_every == 0 or it == max_iter:
                gram = avf @ avf.T
                est = float(torch.linalg.eigvalsh(0.5 * (gram + gram.T)).max().clamp_min(0.0))
                if not math.isfinite(est):
                    raise ValueError("power iteration produced non-finite values: check the weights")
                if est == 0.0 or abs(est - est_prev) <= rtol * est:
                    break
                est_prev = est
            w = adjoint(av).reshape(k, -1)
            v = torch.linalg.qr(w.T).Q.T
        if warm is not None:
            warm["vectors"] = v
    return math.sqrt(est)


def adjointness_test(op: Any, x: Tensor, y: Tensor, *, opnorm: float | None = None) -> Tensor:
    r"""Per-sample normalised adjoint error ``|⟨Ax, y⟩ − ⟨x, Aᵀy⟩| / (‖A‖ ‖x‖ ‖y‖)``, shape ``(B,)``.

    Near the rounding unit of the dtype for an exact adjoint (≤ 1e−10 in float64 for lbinv's ops).

    Parameters
    ----------
    op : an object with ``linear(x) = Ax`` and ``adjoint(y) = Aᵀy`` on batched tensors, e.g. an
        :class:`~lbinv.operators.AffineMap` (``A = W``, the bias left out) or one of its per-module ops.
    x : ``(B, *in_shape)`` and ``y`` : ``(B, *out_shape)`` test vectors, e.g. random.
    opnorm : ‖A‖₂; by default ``op.opnorm()`` where ``op`` has it, else :func:`operator_norm`.

    A zero norm (A = 0, or x or y zero) is guarded: the error is then ``|⟨Ax, y⟩ − ⟨x, Aᵀy⟩|``
    divided by the smallest positive float, 0 for a correct adjoint.
    """
    with torch.no_grad():
        ax, aty = op.linear(x), op.adjoint(y)
        if ax.shape != y.shape or aty.shape != x.shape:
            raise ValueError(
                f"op: A x has shape {tuple(ax.shape)} for y of shape {tuple(y.shape)}, and Aᵀ y has shape "
                f"{tuple(aty.shape)} for x of shape {tuple(x.shape)}; each pair must match"
            )
        if opnorm is None:
            opnorm = (
                op.opnorm()
                if hasattr(op, "opnorm")
                else operator_norm(op.linear, op.adjoint, tuple(x.shape[1:]), dtype=x.dtype, device=x.device)
            )
        lhs = (ax * y).flatten(1).sum(1)
        rhs = (x * aty).flatten(1).sum(1)
        scale = opnorm * x.flatten(1).norm(dim=1) * y.flatten(1).norm(dim=1)
        return (lhs - rhs).abs() / scale.clamp_min(torch.finfo(scale.dtype).tiny)
