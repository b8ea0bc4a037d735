r"""Smooth proximal activations with an unbounded range and σ⁻¹ in closed form: softplus and
log-sigmoid (MATH.md §2, derived here); ELU and CELU are in :mod:`~lbinv.proximal.explinear`,
tanhshrink, whose σ⁻¹ has none, in :mod:`~lbinv.proximal.tanhshrink`. Import the classes from
:mod:`lbinv.proximal`.

Each σ is nondecreasing and 1-Lipschitz, hence σ = prox_Ψ with Ψ'(u) = σ⁻¹(u) − u on the range
of σ, and Φ = (½(·)² + Ψ)^* has Φ' = σ and Φ(z) = zσ(z) − ½σ(z)² − Ψ(σ(z)) (Fenchel–Young).
Ψ is normalised by Ψ(0) = 0, so Φ(0) = 0 where σ(0) = 0 (all but softplus, whose Φ(z) → 0 as
z → −∞ instead). prox_{tΨ} is, for a Python float t, a fast solver (a Wright omega guess and a
few Halley/Newton steps, in each class's docstring), and otherwise the safeguarded Newton solve of
:class:`~lbinv.proximal.smooth_solver._SmoothProx` with the bracket an unbounded range gets. Each
``_bregman_elem`` is written so that no term overflows for large ``|z|`` and the large terms of
``½y² + Φ(z) − yz`` do not cancel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lbinv._checks import check_step
from lbinv.proximal._dilog import ZETA2, li2_exp_neg, li2_exp_neg_folded, li2_neg_exp, li2_series
from lbinv.proximal._roots import halley_denominator_, newton_steps, omega_
from lbinv.proximal.base import ProxActivation, StepSize, is_unit_step, softplus
from lbinv.proximal.smooth_solver import _SmoothProx

__all__ = ["SOFTPLUS_MIN_THRESHOLD", "LogSigmoidProx", "SoftplusProx"]

#: the least ``threshold`` of nn.Softplus accepted: above it the switch to the identity moves σ by
#: log(1 + e^{−threshold})/β, relatively ≤ e^{−15}/15 ≈ 2e−8 < half a float32 ulp
SOFTPLUS_MIN_THRESHOLD = 15.0
_LOG2 = math.log(2.0)


class SoftplusProx(_SmoothProx):
    r"""Softplus σ(x) = log(1 + e^{βx})/β, β > 0, on dom Ψ = [0, ∞).

    With Li₂ the dilogarithm (:mod:`lbinv.proximal._dilog`) and σ⁻¹(u) = u + log(1 − e^{−βu})/β:

    - Ψ(u) = (Li₂(e^{−βu}) − π²/6)/β², from Ψ'(u) = log(1 − e^{−βu})/β and Ψ(0) = 0
      (Ψ(∞) = −π²/(6β²); Ψ ≤ 0 is decreasing, and Ψ → ι_{u≥0}, ReLU's, as β → ∞);
    - Φ(z) = −Li₂(−e^{βz})/β², i.e. ½z² + (π²/6 + Li₂(−e^{−βz}))/β² for z > 0;
    - with x = βz, ŷ = βy: for z > 0, β²B = ½(ŷ − x)² + Li₂(e^{−ŷ}) + Li₂(−e^{−x}); for
      z ≤ 0, β²B = ½ŷ² − ŷx + (Li₂(e^{−ŷ}) − π²/6) − Li₂(−eˣ). No term exceeds
      ``O(ŷ² + |ŷx|)`` and for z > 0 the large ½ŷ² + ½x² − ŷx is one square.

    prox_{tΨ}(v) is the root of (1 − t)u + t·σ⁻¹(u) = v (Newton in w, u = σ(w); for a float t < 1
    from the guess and steps of ``_solve``).

    torch's nn.Softplus returns x itself where βx > ``threshold``, which lowers σ there by
    log(1 + e^{−threshold})/β ≤ e^{−threshold}/β (≈ 2e−9/β for the default 20) and makes it
    very slightly non-monotone, so not a proximal map. lbinv models the exact softplus: Ψ, Φ,
    B_Ψ and prox_{tΨ} for t ≠ 1 (also a tensor t equal to 1) are the exact ones, so
    ∇_z B_Ψ = softplus_β(z) − y; only ``prox(v, 1.0)`` (σ itself, ``act(z)``) returns the
    module's output bit for bit, so that the lifted network reproduces the module. Thresholds
    below :data:`SOFTPLUS_MIN_THRESHOLD` are refused (the difference would show in float32).

    Parameters
    ----------
    beta : float
        The sharpness β > 0.
    threshold : float
        nn.Softplus's switch to the identity, at least :data:`SOFTPLUS_MIN_THRESHOLD`.
    """

    domain = (0.0, math.inf)

    def __init__(self, beta: float = 1.0, threshold: float = 20.0) -> None:
        b, th = float(beta), float(threshold)
        if not (b > 0.0 and math.isfinite(b)):
            raise ValueError(
                f"SoftplusProx: beta must be a finite number > 0, got {beta} (LogSigmoid is the reflected softplus with beta = 1)"
            )
        if not th >= SOFTPLUS_MIN_THRESHOLD:
            raise ValueError(
                f"SoftplusProx: threshold must be >= {SOFTPLUS_MIN_THRESHOLD:g} (torch switches to the identity "
                f"above beta*x > threshold, lowering the output by up to log(1 + e^-threshold)/beta, which "
                f"would not be a proximal map to float32 accuracy), got {threshold}"
            )
        self.beta, self.threshold = b, th

    def _forward(self, v: Tensor) -> Tensor:
        return F.softplus(v, self.beta, self.threshold)

    def _has_fast_solver(self, t: float) -> bool:
        return t < 1.0

    def _solve(self, v: Tensor, t: float, want_w: bool) -> tuple[Tensor, Tensor | None]:
        # In x = βv and βw: h(w) = a·softplus(w) + tw − x, a = 1 − t, is increasing and convex. Its
        # root is started from the larger of two lower bounds, from softplus(w) ≤ e^w (the root
        # of a·e^w + tw = x, log ω(x/t + log(a/t)) − log(a/t) with ω the Wright omega function)
        # and from softplus(w) ≤ max(w, 0) + log 2 (min(y, y/t), y = x − a·log 2); then Halley
        # steps (two in float64) and a final Newton step, with softplus(w) = max(w, 0) −
        # log1p(−σ(−|w|)) and σ(−|w|) = min(σ(w), 1 − σ(w)) (relatively accurate: for a small t the
        # terms of h are of the order of t).
        beta = self.beta
        x = v if beta == 1.0 else v * beta
        a = 1.0 - t
        log_k = math.log(a / t)
        w = omega_(torch.mul(x, 1.0 / t).add_(log_k)).log_().sub_(log_k)
        y = torch.sub(x, a * _LOG2)
        f = y.mul(1.0 / t)
        torch.maximum(w, torch.minimum(y, f, out=y), out=w)
        s, sp, h, d1 = y, torch.empty_like(w), torch.empty_like(w), torch.empty_like(w)
        steps = 2 + newton_steps(v.dtype)
        for step in range(steps):
            torch.sigmoid(w, out=s)
            torch.minimum(s, torch.mul(s, -1.0, out=f).add_(1.0), out=f)  # σ(−|w|)
            torch.clamp(w, min=0.0, out=sp).sub_(f.neg_().log1p_())  # softplus(w)
            torch.mul(sp, a, out=h).add_(w, alpha=t).sub_(x)  # h
            torch.mul(s, a, out=d1).add_(t)  # h' = aσ + t
            if step < steps - 1:  # Halley, h'' = aσ(1 − σ)
                halley_denominator_(d1, h, torch.addcmul(s, s, s, value=-1.0, out=f).mul_(a), s)
                w.sub_(h.div_(d1))
        h.div_(d1)
        u = sp.addcmul_(s, h, value=-1.0)  # softplus(w − δ) to first order
        if beta != 1.0:
            u.mul_(1.0 / beta)
        return u, (w.sub_(h).mul_(1.0 / beta) if want_w else None)

    @property
    def _curvature(self) -> float:  # type: ignore[override]
        return self.beta  # σ'' = β·σ'(1 − σ')

    def _newton_parts(self, w: Tensor, v: Tensor, t: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        # softplus(±x) = max(±x, 0) + log1p(e^{−|x|}), the last −log1p(−σ(−|x|)): one exponential, one logarithm
        b = self.beta
        x = w if b == 1.0 else w * b
        ds = torch.sigmoid(x)
        tail = torch.minimum(ds, torch.sub(1.0, ds)).neg_().log1p_().neg_()
        s = torch.clamp(x, min=0.0).add_(tail)
        shift = x.neg().clamp_(min=0.0).add_(tail)  # softplus(−x) = softplus(x) − x
        if b != 1.0:
            s.mul_(1.0 / b)
            shift.mul_(1.0 / b)
        h = (s - v).sub_(shift, alpha=t)
        return s, h, ds.mul(1.0 - t).add_(t), ds

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
        xp = torch.relu(x)
        xn = x - xp  # derivative 1 at x = 0, where the second form is taken
        li2_y, psi_y = li2_exp_neg(yb)  # Li₂(e^{−ŷ}) and β²Ψ(y)
        tail = li2_series(-softplus(xn - xp))  # Li₂(−e^{−|x|}): Li₂(−e^{−x}) for x > 0, Li₂(−eˣ) else
        pos = 0.5 * (yb - xp) ** 2 + li2_y + tail
        neg = yb * (0.5 * yb - xn) + psi_y - tail
        return torch.where(x > 0, pos, neg) / b**2

    def _bregman_given_sigma(self, y: Tensor, z: Tensor, s: Tensor) -> Tensor:
        # _bregman_elem's two forms in one, σ unused: with ŷ = βy, x = βz, x± its parts, β²B =
        # ½(ŷ − x⁺)² − ŷx⁻ + Li₂(e^{−ŷ}) − [x ≤ 0]·π²/6 ± Li₂(−e^{−|x|}) (+ for x > 0), where π²/6
        # cancels exactly in the shifted form li2_exp_neg_folded gives (ŷ < log 2, x ≤ 0)
        b = self.beta
        yb, x = (y, z) if b == 1.0 else (y * b, z * b)
        li2_y, near = li2_exp_neg_folded(yb)
        xp = torch.relu(x)
        pos = xp.sign()  # 1 where x > 0, else 0
        tail = li2_series(torch.abs(x).neg_().exp_().log1p_().neg_())  # Li₂(−e^{−|x|})
        out = torch.sub(yb, xp).square_().mul_(0.5).addcmul_(yb, x.sub(xp), value=-1.0).add_(li2_y)
        out.add_(near.add_(pos).sub_(1.0), alpha=ZETA2).addcmul_(pos.mul_(2.0).sub_(1.0), tail)
        return out if b == 1.0 else out.mul_(1.0 / b**2)


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

    def prox_and_preimage(self, v: Tensor, t: StepSize, start: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        u, w = self._sp.prox_and_preimage(-v, t, None if start is None else -start)
        return -u, None if w is None else -w

    def _psi_elem(self, u: Tensor) -> Tensor:
        return self._sp._psi_elem(-u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        return self._sp._phi_elem(-z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return self._sp._bregman_elem(-y, -z)

    def _bregman_given_sigma(self, y: Tensor, z: Tensor, s: Tensor) -> Tensor:
        return self._sp._bregman_given_sigma(-y, -z, -s)
