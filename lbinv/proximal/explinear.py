r"""ELU and CELU as proximal maps (MATH.md §2, derived here): σ(x) = x above 0, α(e^{x/c} − 1) below,
with the Ψ, Φ, B_Ψ and fast prox_{tΨ} of :class:`_ExpLinearProx` (the general remarks on smooth
σ with an unbounded range: :mod:`~lbinv.proximal.smooth_unbounded`). Import the classes from
:mod:`lbinv.proximal`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lbinv.proximal._roots import halley_denominator_, lowest_log, newton_steps, omega_
from lbinv.proximal.base import horner, split
from lbinv.proximal.smooth_solver import _SmoothProx

__all__ = ["CELUProx", "ELUProx"]


#: 1/n! for n = 2..17: expm1(q) − q = Σ_{n≥2} qⁿ/n!, to round-off in float64 for |q| < ½
_EXPM1_SERIES = tuple(1.0 / math.factorial(n) for n in range(2, 18))


def _expm1_minus(q: Tensor, em1: Tensor) -> Tensor:
    """expm1(q) − q given em1 = expm1(q), by its Taylor series where ``|q| < ½`` (no cancellation)."""
    small = q.abs() < 0.5
    qs = torch.where(small, q, torch.zeros_like(q))
    series = qs * qs * horner(_EXPM1_SERIES, qs)
    return torch.where(small, series, em1 - q)


class _ExpLinearProx(_SmoothProx):
    r"""σ(x) = x for x > 0, α(e^{x/c} − 1) for x ≤ 0, with α/c ≤ 1 (ELU: c = 1; CELU: c = α).

    On dom Ψ = [−α, ∞), with p = α + min(u, 0) and σ⁻¹(u) = c·log(1 + u/α) for u < 0:

    - Ψ(u) = c·p·log(p/α) − c·u − ½u² for u < 0, 0 for u ≥ 0 (C¹, ≥ 0, Ψ(−α) = cα − ½α²);
    - Φ(z) = ½z² for z > 0, αc(e^{z/c} − 1) − αz for z ≤ 0;
    - for z > 0 (σ(z) = z): B = ½(y − z)² + Ψ(y); for z ≤ 0, with q = αe^{z/c} = α + σ(z)
      and y⁺ = max(y, 0): B = ½(y⁺)² − y⁺z + c·[p·log(p/q) − p + q], a sum of non-negative
      terms (the bracket is the generalised Kullback–Leibler divergence of p from q),
      evaluated as ½(y⁺)² − y⁺z + c·p·log1p(min(y, 0)/α) − p·z + c(σ(z) − min(y, 0)).

    prox_{tΨ}(v) = v for v ≥ 0; for v < 0 it is the root of (1 − t)u + t·c·log(1 + u/α) = v, solved
    (for a Python float t) in q = log(1 + u/α) = w/c ≤ 0, u = α·expm1(q): with A = (1 − t)α,
    B = tc, the root of h(q) = A·expm1(q) + Bq − v, which is increasing (h' = A·e^q + B ≥
    min(A + B, B) > 0).

    - t < 1 (A > 0, h convex): x = (A/B)e^q solves x + log x = L := v/B + A/B + log(A/B), i.e.
      x = ω(L), the Wright omega function; q = log x − log(A/B) (no cancellation), from the guess of
      :func:`~lbinv.proximal._roots.omega_` (≤ 4.2%), clipped into [v/B, v/(A + B)] (which makes
      q = 0 exact at v = 0 and catches an underflow of x), then a Halley step (and a Newton step
      in float64) on h in its expm1 form, which keeps small ``|q|`` relatively exact;
    - t > 1 (A < 0, h concave): from the root of the quadratic (A + B)q + Aq²/2 = v (an upper bound,
      exact to second order near 0, where h is nearly quadratic for a large t) clipped into
      [max(v/(A + B), (v + A)/B), v/B], Halley steps on h = (A + B)q + A·(expm1(q) − q) − v with
      expm1(q) − q by its series for ``|q| < ½`` (no cancellation between A·expm1(q) and Bq when
      A ≈ −B);
    - a final Newton step on the expm1 form gives q to round-off, relatively also near 0, and u is
      returned as α·(expm1(q) − (1 + expm1(q))δ), δ that step, without another exponential.
    """

    _c: float

    def __init__(self, alpha: float) -> None:
        self.alpha = float(alpha)

    @property
    def domain(self) -> tuple[float, float]:
        return (-self.alpha, math.inf)

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        return torch.where(w > 0, torch.ones_like(w), torch.exp(w.clamp(max=0.0) / self._c) * (self.alpha / self._c))

    def _has_fast_solver(self, t: float) -> bool:
        return True

    def _solve(self, v: Tensor, t: float, want_w: bool) -> tuple[Tensor, Tensor | None]:
        alpha, c = self.alpha, self._c
        A, B = (1.0 - t) * alpha, t * c
        AB = (1.0 - t) * alpha + t * c  # A + B > 0: σ is 1-Lipschitz (α/c ≤ 1)
        vn = v.clamp(max=0.0)
        if t < 1.0:
            q, em1, h, d1 = self._q_below_one(vn, A, B, AB)
            torch.expm1(q, out=em1)
            torch.mul(em1, A, out=h).add_(q, alpha=B).sub_(vn)  # h = A·expm1(q) + Bq − v
        else:
            q = self._q_above_one(vn, A, B, AB)
            em1 = torch.expm1(q)
            h = _expm1_minus(q, em1).mul_(A).add_(q, alpha=AB).sub_(vn)  # (A + B)q + A(expm1(q) − q) − v
            d1 = torch.empty_like(q)
        # the final Newton step, δ = h/h': q − δ is the root to round-off. h' = A·e^q + B, summed
        # without cancellation: as it stands for t < 1, as A·expm1(q) + (A + B) for t > 1
        e = torch.add(em1, 1.0, out=d1)  # e^q, exactly 0 where q ≪ 0
        delta = h.div_(e.mul(A).add_(B) if t < 1.0 else em1.mul(A).add_(AB))
        # u = α·expm1(q − δ) to first order in δ, α(expm1(q) − e^q·δ) (the error, of order δ², is
        # below round-off)
        un = em1.addcmul_(e, delta, value=-1.0)
        vp = v.clamp(min=0.0)  # u = v = w above 0, where q = 0
        w = q.sub_(delta).mul_(c).add_(vp) if want_w else None
        return vp.add_(un, alpha=alpha), w

    def _q_below_one(self, vn: Tensor, A: float, B: float, AB: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """q for t < 1 to the accuracy of the Halley steps (class docstring), and three work tensors."""
        k = A / B
        lo = vn * (1.0 / B)
        hi = vn * (1.0 / AB)
        q = omega_(lo + (k + math.log(k)))
        q.log_().sub_(math.log(k)).clamp_(min=lo, max=hi)
        em1, h, d1, r = torch.empty_like(q), lo, hi, torch.empty_like(q)  # lo, hi are free now
        low = lowest_log(vn.dtype)  # e^q below it is 0 to round-off (and exp is slow there on CPUs)
        for step in range(1 + newton_steps(vn.dtype)):
            torch.clamp(q, min=low, out=em1).expm1_()
            torch.mul(em1, A, out=h).add_(q, alpha=B).sub_(vn)  # h = A·expm1(q) + Bq − v
            ae = em1.add_(1.0).mul_(A)  # h'' = A·e^q
            torch.add(ae, B, out=d1)  # h' = A·e^q + B > 0 (A·expm1(q) + A + B would cancel for t ≪ 1)
            if step == 0:  # Halley: q − h/(h' − h·h''/(2h')); then Newton
                halley_denominator_(d1, h, ae, r)
            q.sub_(h.div_(d1))
        return q, em1, h, d1

    def _q_above_one(self, vn: Tensor, A: float, B: float, AB: float) -> Tensor:
        """q for t > 1, to the accuracy of the Halley steps (see the class docstring)."""
        lo = torch.maximum(vn / AB, (vn + A) / B)
        # the root of (A + B)q + Aq²/2 = v closer to 0, 2v/((A + B) + √((A + B)² + 2Av)) (2Av ≥ 0)
        hi = torch.minimum(vn / B, 2.0 * vn / (torch.sqrt(vn * (2.0 * A) + AB * AB) + AB))
        q = hi.clone()
        for _ in range(2 + newton_steps(vn.dtype)):  # Halley steps
            em1 = torch.expm1(q)
            h = _expm1_minus(q, em1).mul_(A).add_(q, alpha=AB).sub_(vn)
            d1 = em1 * A + AB
            d2 = (em1 + 1.0) * A
            q = q - h / (d1 - 0.5 * (h / d1) * d2)
            q = torch.minimum(torch.maximum(q, lo), hi)
        return q

    def _shift(self, s: Tensor, w: Tensor) -> Tensor:
        return torch.where(w > 0, torch.zeros_like(w), s - w)  # exactly 0 where σ(w) = w

    def _psi_neg(self, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(min(y, 0), p, c·p·log(p/α)) for y ∈ [−α, ∞)."""
        yn = split(y)[1]
        p = self.alpha + yn
        return yn, p, self._c * torch.special.xlog1py(p, yn / self.alpha)

    def _psi_elem(self, u: Tensor) -> Tensor:
        un, _, plogp = self._psi_neg(u)
        return plogp - self._c * un - 0.5 * un * un

    def _phi_elem(self, z: Tensor) -> Tensor:
        zp, zn = split(z)
        a, c = self.alpha, self._c
        return 0.5 * zp * zp + a * c * torch.expm1(zn / c) - a * zn

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return self._bregman(y, z, None)

    def _bregman_given_sigma(self, y: Tensor, z: Tensor, s: Tensor) -> Tensor:
        return self._bregman(y, z, s)

    def _bregman(self, y: Tensor, z: Tensor, s: Tensor | None) -> Tensor:
        """B of the class docstring in one formula for both signs of z, a sum of non-negative terms:

            ½(y⁺ − z⁺)² − y⁻z⁺ − (y + α)z⁻ + c·[p·log1p(y⁻/α) + (min(σ(z), 0) − y⁻)],

        y⁺ = max(y, 0), y⁻ = min(y, 0), likewise z; min(σ(z), 0) = α·expm1(z⁻/c) (from ``s`` = σ(z)
        when given). z⁻ = z − z⁺ has derivative 1 at z = 0 (z⁺ = relu(z) has 0), which keeps
        ∂_z B = σ(z) − y there. log1p's argument is kept above −1, so that p = 0 gives 0."""
        a, c = self.alpha, self._c
        zp = torch.relu(z)
        zn = z - zp
        yp = torch.relu(y)
        yn = y - yp
        tiny = torch.finfo(y.dtype).eps / 2  # −1 + tiny is the number next to −1: only y = −α moves
        kl = torch.log1p((yn / a).clamp(min=tiny - 1.0)).mul_(yn + a)  # p·log(p/α)
        kl = kl.add_(s.clamp(max=0.0) if s is not None else torch.expm1(zn / c) * a).sub_(yn)
        d = yp - zp
        out = torch.mul(d, d).mul_(0.5).sub_(yn * zp).sub_((y + a) * zn)
        return out.add_(kl, alpha=c) if c != 1.0 else out.add_(kl)


class ELUProx(_ExpLinearProx):
    r"""ELU σ(x) = x (x > 0), α(eˣ − 1) (x ≤ 0) with α ∈ (0, 1]; see :class:`_ExpLinearProx` (c = 1):
    Ψ(u) = (α + u)log(1 + u/α) − u − ½u² on [−α, 0], Φ(z) = α(e^z − 1 − z) for z ≤ 0.

    Its slope just below 0 is α: α > 1 is expansive (not a proximal map); α = 0 is ReLU.

    Parameters
    ----------
    alpha : float
        α ∈ (0, 1].
    """

    _c = 1.0

    def __init__(self, alpha: float = 1.0) -> None:
        a = float(alpha)
        if not (0.0 < a <= 1.0):
            raise ValueError(
                f"ELUProx: alpha must lie in (0, 1], got {alpha}: its slope just below 0 is alpha, so alpha > 1 is "
                "expansive and alpha < 0 not monotone: not a proximal map (alpha = 0 is ReLU; nn.CELU / CELUProx "
                "is a proximal map for every alpha > 0)"
            )
        super().__init__(a)

    def _sigma(self, w: Tensor) -> Tensor:
        return F.elu(w, self.alpha)


class CELUProx(_ExpLinearProx):
    r"""CELU σ(x) = max(x, 0) + min(α(e^{x/α} − 1), 0), α > 0; see :class:`_ExpLinearProx` (c = α):
    Ψ(u) = α(α + u)log(1 + u/α) − αu − ½u² on [−α, 0], Φ(z) = α²(e^{z/α} − 1) − αz for z ≤ 0.

    Its slope e^{x/α} ≤ 1 for x < 0 makes it a proximal map for every α > 0 (C¹ at 0).

    Parameters
    ----------
    alpha : float
        α > 0.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        a = float(alpha)
        if not (a > 0.0 and math.isfinite(a)):
            raise ValueError(
                f"CELUProx: alpha must be a finite number > 0, got {alpha} (for alpha < 0 its slope exceeds 1: not a proximal map)"
            )
        super().__init__(a)

    @property
    def _c(self) -> float:  # type: ignore[override]
        return self.alpha

    def _sigma(self, w: Tensor) -> Tensor:
        return F.celu(w, self.alpha)
