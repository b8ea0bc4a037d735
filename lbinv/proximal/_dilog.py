r"""The dilogarithm Li₂ on the arguments the softplus activation needs, in torch, to float64 accuracy.

Li₂(w) = −∫₀ʷ log(1 − s)/s ds = Σ_{k≥1} wᵏ/k² for ``|w| ≤ 1``. With u = −log(1 − w), i.e.
w = 1 − e^{−u}, it has the Bernoulli series (``|u| < 2π``)

    Li₂(1 − e^{−u}) = Σ_{n≥0} B_n u^{n+1}/(n+1)! = u − u²/4 + u³/36 − u⁵/3600 + …,

whose derivative in u is the Bernoulli generating function u/(eᵘ − 1), finite everywhere, so
autograd through it is accurate. Every argument below is first reduced to ``|u| ≤ log 2``, where
the terms fall by (u/2π)² ≤ 0.0122 per order and ten orders leave a relative error < 1e−19:

- Li₂(e^{−x}), x ≥ 0: for x ≥ log 2 directly, u = −log(1 − e^{−x}) ∈ (0, log 2]; for
  x < log 2 by Euler's reflection Li₂(w) + Li₂(1 − w) = π²/6 − log(w)·log(1 − w), which with
  w = e^{−x} reads Li₂(e^{−x}) = π²/6 + x·log(1 − e^{−x}) − Li₂(1 − e^{−x}), the last term
  the series at u = x itself.
- Li₂(−eˣ): for x ≤ 0 directly, u = −log(1 + eˣ) ∈ [−log 2, 0); for x > 0 by the inversion
  formula Li₂(−eˣ) = −π²/6 − x²/2 − Li₂(−e^{−x}).

The helpers are private to :mod:`lbinv.proximal` (see :class:`~lbinv.proximal.SoftplusProx`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lbinv.proximal.base import horner, softplus, split

__all__ = ["ZETA2", "li2_exp_neg", "li2_exp_neg_folded", "li2_neg_exp", "li2_series"]

#: ζ(2) = Li₂(1) = π²/6
ZETA2 = math.pi**2 / 6.0
_LOG2 = math.log(2.0)
# B_{2k}/(2k+1)! for k = 1..10 (B_2 = 1/6, B_4 = −1/30, …), from exact rational arithmetic
_COEFFS = (
    2.7777777777777776e-02,
    -2.7777777777777778e-04,
    4.7241118669690100e-06,
    -9.1857730746619640e-08,
    1.8978869988971000e-09,
    -4.0647616451442256e-11,
    8.9216910204564520e-13,
    -1.9939295860721074e-14,
    4.5189800296199180e-16,
    -1.0356517612181247e-17,
)


def li2_series(u: Tensor) -> Tensor:
    """Li₂(1 − e^{−u}) by its Bernoulli series; accurate to round-off for ``|u| ≤ log 2`` (≤ 1 is fine).

    Below float64, three of the ten orders: the first left out is below 5e−9 of the sum."""
    x = u * u
    p = horner(_COEFFS if u.dtype == torch.float64 else _COEFFS[:3], x)
    if torch.is_grad_enabled() and u.requires_grad:
        return u + x * (u * p - 0.25)
    return p.mul_(u).sub_(0.25).mul_(x).add_(u)  # the same operations in place


def li2_exp_neg(x: Tensor) -> tuple[Tensor, Tensor]:
    """(Li₂(e^{−x}), Li₂(e^{−x}) − π²/6) for x ≥ 0 (+inf allowed), each without cancellation.

    The first is accurate where it is small (large x), the second near x = 0, where it is
    x·log(1 − e^{−x}) − Li₂(1 − e^{−x}) with no π²/6 to cancel.
    """
    far, near = split(x, _LOG2)
    shifted_near = torch.xlogy(near, -torch.expm1(-near)) - li2_series(near)
    plain_far = li2_series(-torch.log1p(-torch.exp(-far)))
    is_near = x <= _LOG2
    plain = torch.where(is_near, shifted_near + ZETA2, plain_far)
    shifted = torch.where(is_near, shifted_near, plain_far - ZETA2)
    return plain, shifted


def li2_exp_neg_folded(x: Tensor) -> tuple[Tensor, Tensor]:
    """(Li₂(e^{−x}) − near·π²/6, near) for x ≥ 0, without gradients, by one series: near is 1 where
    x < U = −log(1 − e^{−x}) (x < log 2), else 0; the first is then li2_exp_neg's shifted value,
    else its plain one. U is an involution (e^{−x} + e^{−U} = 1): Euler's reflection reads
    Li₂(e^{−x}) − π²/6 = −xU − S(x), S = li2_series, and beyond log 2 Li₂(e^{−x}) = S(U); S is
    taken at min(x, U) ≤ log 2. e^{−x} is kept below 1 (U finite); its rounding gives xU an
    absolute error ≲ ε/4, so the shifted value is accurate to ε absolutely (not relatively) for
    x ≪ 1, unlike li2_exp_neg's — below the rounding of a sum of Bregman terms."""
    U = torch.neg(x).exp_().clamp_(max=1.0 - torch.finfo(x.dtype).eps / 2).neg_().log1p_().neg_()
    near = torch.sub(U, x).clamp_(min=0.0).sign_()
    series = li2_series(torch.minimum(x, U))
    return series.addcmul_(near, U.mul_(x).add_(series, alpha=2.0), value=-1.0), near


def li2_neg_exp(x: Tensor) -> Tensor:
    """Li₂(−eˣ) for every real x: −π²/12 at 0, → 0 as x → −∞, ≈ −x²/2 − π²/6 for large x."""
    pos, neg = split(x)
    direct = li2_series(-softplus(neg))
    inverted = -ZETA2 - 0.5 * pos * pos - li2_series(-softplus(-pos))
    return torch.where(x <= 0, direct, inverted)
