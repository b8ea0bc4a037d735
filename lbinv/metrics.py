"""Image-quality and regularity measures, per sample (shape ``(B,)``)."""

from __future__ import annotations

import torch
from torch import Tensor

from lbinv.regularizers import TotalVariation

__all__ = ["psnr", "relative_error", "tv_isotropic", "tv_anisotropic"]


def psnr(x: Tensor, x_true: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(range² / MSE)`` in dB, per sample."""
    mse = (x - x_true).flatten(1).pow(2).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def relative_error(x: Tensor, x_true: Tensor) -> Tensor:
    """``‖x − x†‖ / ‖x†‖`` per sample."""
    return (x - x_true).flatten(1).norm(dim=1) / x_true.flatten(1).norm(dim=1)


def tv_isotropic(x: Tensor) -> Tensor:
    """Isotropic total variation ``Σ‖(∇x)_ij‖₂`` per sample (MATH.md §4)."""
    return TotalVariation(isotropic=True).value(x)


def tv_anisotropic(x: Tensor) -> Tensor:
    """Anisotropic total variation ``Σ‖(∇x)_ij‖₁`` per sample (the paper's reported TV numbers)."""
    return TotalVariation(isotropic=False).value(x)
