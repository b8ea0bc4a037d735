"""Total variation on images and box constraints (MATH.md §4).

The gradient is the forward-difference operator with Neumann boundary (zero difference in the
last row/column), applied per channel to the last two dimensions of a batched tensor
``x`` of shape ``(B, ..., H, W)``. Gradients are stacked on a new dimension 1:
``grad(x)`` has shape ``(B, 2, ..., H, W)``, entry 0 the vertical and entry 1 the horizontal
difference. ``div = -gradᵀ`` exactly, and ``‖grad‖₂² ≤ 8``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["TotalVariation", "project_box", "project_box_"]


class TotalVariation:
    """Isotropic (``Σ‖(∇x)_ij‖₂``) or anisotropic (``Σ‖(∇x)_ij‖₁``) total variation.

    Parameters
    ----------
    isotropic
        ``True`` for the paper's isotropic TV (p = 2), ``False`` for the anisotropic one.
    """

    #: Upper bound on the operator norm ‖∇‖₂ of the forward-difference gradient.
    NORM_BOUND: float = math.sqrt(8.0)

    def __init__(self, isotropic: bool = True) -> None:
        self.isotropic = bool(isotropic)

    def __repr__(self) -> str:
        return f"TotalVariation(isotropic={self.isotropic})"

    @staticmethod
    def zero_dual(x: Tensor) -> Tensor:
        """A zero field with the shape of ``∇x``, ``(B, 2, …)``: the start of every TV dual."""
        return x.new_zeros((x.shape[0], 2, *x.shape[1:]))

    @staticmethod
    def grad(x: Tensor) -> Tensor:
        """Forward differences ``(∇x)_{i,j} = (x_{i+1,j} − x_{i,j}, x_{i,j+1} − x_{i,j})``, 0 at the far edge."""
        g = TotalVariation.zero_dual(x)
        g[:, 0, ..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
        g[:, 1, ..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
        return g

    @staticmethod
    def div(p: Tensor) -> Tensor:
        """Discrete divergence, the negative adjoint of :meth:`grad`: ``⟨∇x, p⟩ = −⟨x, div p⟩``."""
        h, w = p.shape[-2:]
        pv, ph = p.unbind(1)
        d = torch.zeros_like(pv)
        # narrow, not d[..., :-1, :]: on small images the cost is the number and kind of torch calls
        rows, cols = pv.narrow(-2, 0, h - 1), ph.narrow(-1, 0, w - 1)
        d.narrow(-2, 0, h - 1).add_(rows)
        d.narrow(-2, 1, h - 1).sub_(rows)
        d.narrow(-1, 0, w - 1).add_(cols)
        d.narrow(-1, 1, w - 1).sub_(cols)
        return d

    def pointwise_norm(self, p: Tensor) -> Tensor:
        """Per-pixel norm of a gradient field: ℓ2 over the two directions (iso) or ℓ1 (aniso)."""
        if self.isotropic:
            return torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2)
        return p[:, 0].abs() + p[:, 1].abs()

    def value(self, x: Tensor) -> Tensor:
        """TV(x) per sample, shape ``(B,)``."""
        return self.pointwise_norm(self.grad(x)).flatten(1).sum(1)

    def project_dual(self, p: Tensor) -> Tensor:
        """Projection onto the unit ball of the dual norm per pixel: the prox of (TV)* composed with ∇.

        Isotropic: ``p_ij / max(1, ‖p_ij‖₂)``; anisotropic: clamp each entry to [−1, 1].
        """
        return self.project_dual_(p.clone())

    def project_dual_(self, p: Tensor) -> Tensor:
        """:meth:`project_dual` in place, for a tensor the caller owns (a solver's fresh iterate);
        returns ``p``."""
        if self.isotropic:
            pv, ph = p.unbind(1)
            inverse = torch.mul(pv, pv).addcmul_(ph, ph).clamp_min_(1.0).rsqrt_()  # 1/max(1, ‖p_ij‖₂)
            return p.mul_(inverse.unsqueeze(1))
        return p.clamp_(-1.0, 1.0)


def project_box(x: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    """Euclidean projection onto the box ``lo ≤ x ≤ hi`` (identity when ``bounds`` is None)."""
    if bounds is None:
        return x
    lo, hi = bounds
    return x.clamp(min=None if math.isinf(lo) else lo, max=None if math.isinf(hi) else hi)


def project_box_(x: Tensor, bounds: tuple[float, float] | None) -> Tensor:
    """:func:`project_box` in place, for a tensor the caller owns; returns ``x``."""
    if bounds is None:
        return x
    lo, hi = bounds
    return x.clamp_(min=None if math.isinf(lo) else lo, max=None if math.isinf(hi) else hi)
