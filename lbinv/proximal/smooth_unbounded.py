r"""Smooth proximal activations with an unbounded range and σ⁻¹ in closed form: softplus,
log-sigmoid, ELU and CELU (MATH.md §2, derived here); tanhshrink, whose σ⁻¹ has none, is in
:mod:`~lbinv.proximal.tanhshrink`. Import the classes from :mod:`lbinv.proximal`.

Each σ is nondecreasing and 1-Lipschitz, hence σ = prox_Ψ with Ψ'(u) = σ⁻¹(u) − u on the range
of σ, and Φ = (½(·)² + Ψ)^* has Φ' = σ and Φ(z) = zσ(z) − ½σ(z)² − Ψ(σ(z)) (Fenchel–Young).
Ψ is normalised by Ψ(0) = 0, so Φ(0) = 0 where σ(0) = 0 (all but softplus, whose Φ(z) → 0 as
z → −∞ instead). prox_{tΨ} is the safeguarded Newton solve of
:class:`~lbinv.proximal.smooth._SmoothProx`, with the bracket an unbounded range gets. Each ``_bregman_elem`` is written so that no term overflows for large ``|z|`` and the
large terms of ``½y² + Φ(z) − yz`` do not cancel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lbinv._checks import check_step
from lbinv.proximal._dilog import li2_exp_neg, li2_neg_exp, li2_series
from lbinv.proximal.base import ProxActivation, StepSize, is_unit_step, softplus, split
from lbinv.proximal.smooth import _SmoothProx

__all__ = ["SOFTPLUS_MIN_THRESHOLD", "CELUProx", "ELUProx", "LogSigmoidProx", "SoftplusProx"]

#: the least ``threshold`` of nn.Softplus accepted: above it the switch to the identity moves σ by
#: log(1 + e^{−threshold})/β, relatively ≤ e^{−15}/15 ≈ 2e−8 < half a float32 ulp
SOFTPLUS_MIN_THRESHOLD = 15.0


class SoftplusProx(_SmoothProx):
    r"""Softplus σ(x) = log(1 + e^{βx})/β, β > 0, on dom Ψ = [0, ∞).

    With Li₂ the dilogarithm (:mod:`lbinv.proximal._dilog`) and σ⁻¹(u) = u + log(1 − e^{−βu})/β:

    - Ψ(u) = (Li₂(e^{−βu}) − π²/6)/β², from Ψ'(u) = log(1 − e^{−βu})/β and Ψ(0) = 0
      (Ψ(∞) = −π²/(6β²); Ψ ≤ 0 is decreasing, and Ψ → ι_{u≥0}, ReLU's, as β → ∞);
    - Φ(z) = −Li₂(−e^{βz})/β², i.e. ½z² + (π²/6 + Li₂(−e^{−βz}))/β² for z > 0;
    - with x = βz, ŷ = βy: for z > 0, β²B = ½(ŷ − x)² + Li₂(e^{−ŷ}) + Li₂(−e^{−x}); for
      z ≤ 0, β²B = ½ŷ² − ŷx + (Li₂(e^{−ŷ}) − π²/6) − Li₂(−eˣ). No term exceeds
      O(ŷ² + |ŷx|) and for z > 0 the large ½ŷ² + ½x² − ŷx is one square.

    prox_{tΨ}(v) is the root of (1 − t)u + t·σ⁻¹(u) = v (Newton in w, u = σ(w)).

    torch's nn.Softplus returns x itself where βx > ``threshold``, which lowers σ there by
    log(1 + e^{−threshold})/β ≤ e^{−threshold}/β (≈ 2e−9/β for the default 20) and makes it
    very slightly non-monotone, so not a proximal map. lbinv models the exact softplus: Ψ, Φ,
    B_Ψ and prox_{tΨ} for t ≠ 1 (also a tensor t equal to 1) are the exact ones, so
    ∇_z B_Ψ = softplus_β(z) − y; only ``prox(v, 1.0)`` (σ itself, ``act(z)``) returns the
    module's output bit for bit, so that the lifted network reproduces the module. Thresholds
    below :data:`SOFTPLUS_MIN_THRESHOLD` are refused (the difference would show in float32).
    """

    domain = (0.0, math.inf)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        b, th = float(beta), float(threshold)
        if not (b > 0.0 and math.isfinite(b)):
            raise ValueError(f"SoftplusProx: beta must be a finite number > 0, got {beta} "
                             "(LogSigmoid is the reflected softplus with beta = 1)")
        if not th >= SOFTPLUS_MIN_THRESHOLD:
            raise ValueError(
                f"SoftplusProx: threshold must be >= {SOFTPLUS_MIN_THRESHOLD:g} (torch switches to the identity "
                f"above beta*x > threshold, lowering the output by up to log(1 + e^-threshold)/beta, which "
                f"would not be a proximal map to float32 accuracy), got {threshold}"
            )
        self.beta, self.threshold = b, th

    def _forward(self, v: Tensor) -> Tensor:
        return F.softplus(v, self.beta, self.threshold)

    def _sigma(self, w: Tensor) -> Tensor:
        return softplus(self.beta * w) / self.beta

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        return torch.sigmoid(self.beta * w)

    def _shift(self, s: Tensor, w: Tensor) -> Tensor:
        return softplus(-self.beta * w) / self.beta  # σ(w) − w

    def _psi_elem(self, u: Tensor) -> Tensor:
        return li2_exp_neg(self.beta * u)[1] / self.beta**2

    def _phi_elem(self, z: Tensor) -> Tensor:
        return -li2_neg_exp(self.beta * z) / self.beta**2

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        b = self.beta
        yb, x = b * y, b * z
        xp, xn = split(x)
        li2_y, psi_y = li2_exp_neg(yb)  # Li₂(e^{−ŷ}) and β²Ψ(y)
        pos = 0.5 * (yb - xp) ** 2 + li2_y + li2_series(-softplus(-xp))  # Li₂(−e^{−x})
        neg = yb * (0.5 * yb - xn) + psi_y - li2_series(-softplus(xn))  # − Li₂(−eˣ)
        return torch.where(x > 0, pos, neg) / b**2


class LogSigmoidProx(ProxActivation):
    r"""Log-sigmoid σ(x) = log(1/(1 + e^{−x})) = −softplus(−x), on dom Ψ = (−∞, 0].

    σ is softplus (β = 1) reflected through the origin, so it is the prox of Ψ(u) = Ψ_sp(−u):
    Ψ(u) = Li₂(e^{u}) − π²/6, Φ(z) = Φ_sp(−z) = −Li₂(−e^{−z}), B(y, z) = B_sp(−y, −z) and
    prox_{tΨ}(v) = −prox_{tΨ_sp}(−v), all from :class:`SoftplusProx` (exact, torch's
    nn.LogSigmoid has no threshold).
    """

    domain = (-math.inf, 0.0)

    def __init__(self) -> None:
        self._sp = SoftplusProx(1.0, math.inf)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if is_unit_step(t):
            return F.logsigmoid(v)
        return -self._sp.prox(-v, t)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return self._sp._psi_elem(-u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        return self._sp._phi_elem(-z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return self._sp._bregman_elem(-y, -z)


class _ExpLinearProx(_SmoothProx):
    r"""σ(x) = x for x > 0, α(e^{x/c} − 1) for x ≤ 0, with α/c ≤ 1 (ELU: c = 1; CELU: c = α).

    On dom Ψ = [−α, ∞), with p = α + min(u, 0) and σ⁻¹(u) = c·log(1 + u/α) for u < 0:

    - Ψ(u) = c·p·log(p/α) − c·u − ½u² for u < 0, 0 for u ≥ 0 (C¹, ≥ 0, Ψ(−α) = cα − ½α²);
    - Φ(z) = ½z² for z > 0, αc(e^{z/c} − 1) − αz for z ≤ 0;
    - for z > 0 (σ(z) = z): B = ½(y − z)² + Ψ(y); for z ≤ 0, with q = αe^{z/c} = α + σ(z)
      and y⁺ = max(y, 0): B = ½(y⁺)² − y⁺z + c·[p·log(p/q) − p + q], a sum of non-negative
      terms (the bracket is the generalised Kullback–Leibler divergence of p from q),
      evaluated as ½(y⁺)² − y⁺z + c·p·log1p(min(y, 0)/α) − p·z + c(σ(z) − min(y, 0)).

    prox_{tΨ}(v) = v for v ≥ 0; for v < 0 it is the root of (1 − t)u + t·c·log(1 + u/α) = v.
    """

    _c: float

    def __init__(self, alpha: float) -> None:
        self.alpha = float(alpha)

    @property
    def domain(self) -> tuple[float, float]:
        return (-self.alpha, math.inf)

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        return torch.where(w > 0, torch.ones_like(w), torch.exp(w.clamp(max=0.0) / self._c) * (self.alpha / self._c))

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
        a, c = self.alpha, self._c
        zp, zn = split(z)
        yp = split(y)[0]
        yn, p, plogp = self._psi_neg(y)
        pos = 0.5 * (y - zp) ** 2 + (plogp - c * yn - 0.5 * yn * yn)
        neg = yp * (0.5 * yp - zn) + plogp - p * zn + c * (a * torch.expm1(zn / c) - yn)
        return torch.where(z > 0, pos, neg)


class ELUProx(_ExpLinearProx):
    r"""ELU σ(x) = x (x > 0), α(eˣ − 1) (x ≤ 0) with α ∈ (0, 1]; see :class:`_ExpLinearProx` (c = 1):
    Ψ(u) = (α + u)log(1 + u/α) − u − ½u² on [−α, 0], Φ(z) = α(e^z − 1 − z) for z ≤ 0.

    Its slope just below 0 is α: α > 1 is expansive (not a proximal map); α = 0 is ReLU.
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
    """

    def __init__(self, alpha: float = 1.0) -> None:
        a = float(alpha)
        if not (a > 0.0 and math.isfinite(a)):
            raise ValueError(f"CELUProx: alpha must be a finite number > 0, got {alpha} "
                             "(for alpha < 0 its slope exceeds 1: not a proximal map)")
        super().__init__(a)

    @property
    def _c(self) -> float:  # type: ignore[override]
        return self.alpha

    def _sigma(self, w: Tensor) -> Tensor:
        return F.celu(w, self.alpha)
