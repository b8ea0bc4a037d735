r"""The pieces the fast prox_{tΨ} solvers of the smooth activations share (issue 26).

prox_{tΨ}(v) of a smooth activation is the root of a scalar equation per entry (MATH.md §2). The
solvers in :mod:`~lbinv.proximal.smooth` and :mod:`~lbinv.proximal.smooth_unbounded` start from
a guess that is accurate to a few per cent for every v and t — built from bounds and from
asymptotic forms, which near the exponential edges of an activation are the Wright omega function
— and take a fixed, small number of Halley and Newton steps: one Halley step, one step more in
float64, and a final Newton step, without masks or synchronisation with the device. This module
holds the Wright omega guess, the bound that starts sigmoid and tanh, and the step counts.

The Wright omega function ω(L) is the root x > 0 of x + log x = L (ω(L) = W(e^L), W the Lambert
function); ω(L) ≈ e^L as L → −∞ and ≈ L − log L as L → ∞.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["halley_denominator_", "lowest_log", "newton_steps", "omega_", "tanh_root_bound"]

# ω(L) ≈ z(1 + P z)/(1 + Q z), z = e^L, for L ≤ 2.5, and ≈ L − log L + log(L)/L (the asymptotic
# series, relative error ≤ 4.2%) for L ≥ 2.5; P, Q are fitted (minimax relative error on L ≤ 2.5,
# 4.2%) under the constraint that both forms agree at L = 2.5.
_OMEGA_JOIN = 2.5
_OMEGA_P = 0.06474140690317795
_OMEGA_Q = 0.8350970107239905
_OMEGA_AT_JOIN = _OMEGA_JOIN - math.log(_OMEGA_JOIN) + math.log(_OMEGA_JOIN) / _OMEGA_JOIN


def omega_(x: Tensor) -> Tensor:
    r"""A guess of the Wright omega function ω(L), relative error ≤ 4.2% for every real L (0 at −inf),
    computed in place of ``x`` = L (returned).

    Both pieces are evaluated on L clipped to their side of L = 2.5 and multiplied, the one for the
    other side being constant there (its value at 2.5, divided out): no mask is needed, and small
    values of ω keep their relative accuracy. L is also clipped from below at :func:`lowest_log`
    (ω ≈ e^L would be subnormal there, and the CPU's exp is many times slower on such arguments):
    below, the guess is ω(lowest_log) instead. Two temporaries of the size of ``x``.
    """
    z = x.clamp(min=lowest_log(x.dtype), max=_OMEGA_JOIN).exp_()
    small = torch.addcmul(z, z, z, value=_OMEGA_P)  # z(1 + Pz), then / ((1 + Qz)·ω(2.5))
    small.div_(z.mul_(_OMEGA_Q * _OMEGA_AT_JOIN).add_(_OMEGA_AT_JOIN))
    x.clamp_(min=_OMEGA_JOIN)
    r = torch.log(x, out=z).div_(x)  # r = log(L)/L
    x.addcmul_(r, torch.sub(x, 1.0), value=-1.0)  # L − r(L − 1) = L − log L + log(L)/L
    return x.mul_(small)


def lowest_log(dtype: torch.dtype) -> float:
    """log of the smallest normal number of ``dtype``, plus 1: exp of anything above is normal."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


def halley_denominator_(d1: Tensor, h: Tensor, d2: Tensor, work: Tensor) -> Tensor:
    """Halley's step is h/(h' − h·h''/(2h')): its denominator, in place of ``d1`` = h' (> 0), kept at
    least h'/2. Far from the root, where h·h'' is large (a guess clipped at the edge of a saturating
    σ while v is huge), the step is then a damped Newton step rather than one of the wrong sign;
    near it, the clip is inactive. ``h``, ``d2`` = h'' are kept, ``work`` is overwritten."""
    torch.div(h, d1, out=work)
    torch.addcmul(d1, work, d2, value=-0.5, out=work)
    return torch.maximum(work, d1.mul_(0.5), out=d1)


def newton_steps(dtype: torch.dtype) -> int:
    """Steps the solvers take after their first (Halley) step and before their final Newton step:
    one in float64, none otherwise.

    From a guess with a relative error of a few per cent, the Halley step leaves an error of order
    1e−5 (cubic convergence) and the final Newton step squares it, below float32's round-off;
    float64 needs one Newton step more."""
    return 1 if dtype == torch.float64 else 0


def tanh_root_bound(C: Tensor, C_minus_a: Tensor, a: float, b: float) -> Tensor:
    r"""Twice an upper bound of the root W ≥ 0 of a·tanh(W) + b·W = C (a, b > 0, C ≥ 0), within a
    few per cent of it except where tanh W = 1 to round-off, where the equation is linear in W.

    ``C_minus_a`` is C − a, computed by the caller without cancellation. The bound is the
    smaller of

    - artanh(C/(a + b)): y = tanh W solves a·y + b·artanh(y) = C and artanh(y) ≥ y, so
      y ≤ C/(a + b); close where the root is not in tanh's tail, and (in effect) +inf for
      C ≥ a + b;
    - the root of a(1 − 2e^{−2W}) + bW = C (1 − tanh W ≤ 2e^{−2W}), in closed form
      W = ½(log(4a/b) − log ω(L)), L = log(4a/b) − 2(C − a)/b, ω the Wright omega function,
      i.e. (log ω = L − ω) W = ½(2(C − a)/b + ω(L)), without a logarithm: close in tanh's tail,
      where ω is small. L is clipped from below where ω would underflow (there ω is 0 to
      round-off and W = (C − a)/b).
    """
    ab = a + b
    log_k = math.log(4.0 * a / b)
    # artanh(y) = ½ log((1 + y)/(1 − y)) = ½ log((a + b + C)/(a + b − C)); both clipped, so that
    # the ratio stays finite (no inf, on which log is slow): ≤ 2/ε, a bound of ½ log(2/ε) > 34 at
    # least, where tanh is 1 to round-off
    tiny = 1e-30 if C.dtype.itemsize < 8 else 1e-300
    w_art = C.add(ab).clamp_(max=2.0 * ab)
    den = torch.sub(C, ab).clamp_(max=-tiny * ab)  # −(a + b − C)
    w_art.div_(den).neg_().log_()
    L = torch.mul(C_minus_a, -2.0 / b, out=den).add_(log_k)
    w_tail = omega_(L.clamp_(min=lowest_log(C.dtype) + 10.0)).add_(C_minus_a, alpha=2.0 / b)
    return torch.minimum(w_art, w_tail, out=w_art)  # 2W
