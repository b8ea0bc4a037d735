r"""Smooth proximal activations with a bounded range (MATH.md §2): sigmoid and tanh (prox_{tΨ} by a
few Halley/Newton steps from a close guess, on the solver of :mod:`~lbinv.proximal.smooth_solver`)
and softsign (prox_{tΨ} in closed form).

Import the classes from :mod:`lbinv.proximal`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lbinv._checks import check_step
from lbinv.proximal._roots import halley_denominator_, newton_steps, tanh_root_bound
from lbinv.proximal.base import ProxActivation, StepSize, is_unit_step, softplus
from lbinv.proximal.smooth_solver import _SmoothProx

__all__ = ["SigmoidProx", "SoftsignProx", "TanhProx"]

_LOG2 = math.log(2.0)


def _saturate(v: Tensor, t: float) -> Tensor:
    """``v`` clipped to ±t·(max/16) of its dtype, for sigmoid and tanh (t < 1): beyond, the preimage
    w ≈ v/t would overflow, and u is the edge of the range to round-off on either side of the clip."""
    bound = t * torch.finfo(v.dtype).max / 16.0
    return v.clamp(min=-bound, max=bound)


def _logcosh(z: Tensor) -> Tensor:
    """``log cosh z = |z| + softplus(−2|z|) − log 2``, finite for every finite z."""
    a = z.abs()
    return a + softplus(-2.0 * a) - _LOG2


def _xlogx(u: Tensor) -> Tensor:
    """u·log u for u ≥ 0, 0 at u = 0 (as torch.xlogy(u, u), with a plain logarithm)."""
    return u * torch.log(u.clamp(min=torch.finfo(u.dtype).tiny))


def _xlogx_(u: Tensor) -> Tensor:
    """:func:`_xlogx` in a new tensor, without gradients (fewer temporaries)."""
    return torch.clamp(u, min=torch.finfo(u.dtype).tiny).log_().mul_(u)


def _bernoulli_cross(p: Tensor, q: Tensor, x: Tensor) -> Tensor:
    """p·softplus(−x) + q·softplus(x) for p + q = 1, as p·max(−x, 0) + q·max(x, 0) + log1p(e^{−|x|}):
    non-negative terms, one exponential and one logarithm. With x⁺ = relu(x) (derivative 0 at 0) and
    x⁻ = x − x⁺ (derivative 1), |x| = x⁺ − x⁻: the derivative at x = 0 is ½ − p = sigmoid(0) − p."""
    xp = torch.relu(x)
    xn = x - xp
    return torch.log1p(torch.exp(xn - xp)).add_(q * xp).sub_(p * xn)


class SigmoidProx(_SmoothProx):
    r"""Logistic sigmoid = prox of the Fermi–Dirac entropy minus ½u² (MATH.md §2, derived).

    Ψ(u) = u log u + (1 − u) log(1 − u) − u²/2 on [0, 1], Φ(z) = softplus(z);
    prox_{tΨ}(v) is the root of (1 − t)u + t·logit(u) = v (sigmoid(v) for t = 1).
    B_Ψ is the Bernoulli Kullback–Leibler divergence KL(y ‖ sigmoid(z)):

    ``B(y, z) = y log y + (1−y) log(1−y) + y·softplus(−z) + (1−y)·softplus(z)``.
    """

    domain = (0.0, 1.0)
    _curvature = 1.0  # σ'' = σ'(1 − 2σ)

    def _has_fast_solver(self, t: float) -> bool:
        return t < 1.0

    def _solve(self, v: Tensor, t: float, want_w: bool) -> tuple[Tensor, Tensor | None]:
        # In ŵ = w/2, with a = 1 − t, (1 − t)σ(w) + tw = v reads a·tanh ŵ + 4t·ŵ = 2v − a (σ(w) =
        # (1 + tanh ŵ)/2): |ŵ| is started from the bound of tanh_root_bound, ŵ with the sign of
        # 2v − a; |2v − a| − a = max(−2v, 2(v − a)) keeps small |v| exact. Then Newton steps in w.
        v = _saturate(v, t)
        a = 1.0 - t
        c = v.mul(2.0).sub_(a)
        shift = torch.maximum(v.neg(), v.sub(a)).mul_(2.0)
        w = tanh_root_bound(c.abs(), shift, a, 4.0 * t).copysign_(c)
        s, s1, h, d1 = c, shift, torch.empty_like(w), torch.empty_like(w)  # c, shift are free now
        work = torch.empty_like(w)
        steps = 2 + newton_steps(v.dtype)  # one Halley step, Newton steps, the final Newton step
        for step in range(steps):
            torch.sigmoid(w, out=s)
            torch.addcmul(s, s, s, value=-1.0, out=s1)  # σ' = s(1 − s)
            torch.mul(w, t, out=h).sub_(v).add_(s, alpha=a)  # h = as + tw − v
            torch.mul(s1, a, out=d1).add_(t)  # h' = aσ' + t
            if step == 0:  # Halley, h'' = aσ'(1 − 2s)
                halley_denominator_(d1, h, s.mul_(-2.0 * a).add_(a).mul_(s1), work)
            h.div_(d1)
            if step == steps - 1:  # u = σ(w − δ) to first order, s − σ'δ
                return s.addcmul_(s1, h, value=-1.0), w.sub_(h) if want_w else None
            w.sub_(h)
        raise AssertionError("unreachable")

    def _sigma(self, w: Tensor) -> Tensor:
        return torch.sigmoid(w)

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        return s * (1.0 - s)

    def _psi_elem(self, u: Tensor) -> Tensor:
        q = 1.0 - u
        return torch.xlogy(u, u) + torch.xlogy(q, q) - 0.5 * u * u

    def _phi_elem(self, z: Tensor) -> Tensor:
        return softplus(z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        q = 1.0 - y
        return _xlogx(y) + _xlogx(q) + y * softplus(-z) + q * softplus(z)

    def _bregman_given_sigma(self, y: Tensor, z: Tensor, s: Tensor) -> Tensor:
        # y·softplus(−z) + q·softplus(z) = q·z⁺ − y·z⁻ + log1p(e^{−|z|}), and
        # log1p(e^{−|z|}) = −log max(s, 1 − s) (1 − s exact for s ≥ ½): one logarithm
        q = 1.0 - y
        out = _xlogx_(y).add_(_xlogx_(q)).addcmul_(q, z.clamp(min=0.0)).addcmul_(y, z.clamp(max=0.0), value=-1.0)
        return out.sub_(torch.maximum(s, torch.sub(1.0, s)).log_())


class TanhProx(_SmoothProx):
    r"""tanh = prox of Ψ(u) = ½(1+u)log(1+u) + ½(1−u)log(1−u) − ½u² on [−1, 1] (MATH.md §2).

    (Equivalently u·artanh u + ½(log(1 − u²) − u²).) Φ(z) = log cosh z, computed as
    ``|z| + softplus(−2|z|) − log 2``. prox_{tΨ}(v) is the root of (1 − t)u + t·artanh(u) = v
    (tanh(v) for t = 1). With p = (1 + y)/2, q = (1 − y)/2 and tanh z = 2·sigmoid(2z) − 1,
    B_Ψ is the Bernoulli KL divergence KL(p ‖ sigmoid(2z)):

    ``B(y, z) = p log p + q log q + p·softplus(−2z) + q·softplus(2z)``,

    which equals ½(1+y)log(1+y) + ½(1−y)log(1−y) + log cosh z − yz exactly (the two log 2
    terms cancel) but has no cancellation between ``|z|`` and ``yz`` when ``|z|`` is large.
    """

    domain = (-1.0, 1.0)
    _curvature = 2.0  # σ'' = −2σσ'

    def _close(self, delta: Tensor, start: Tensor, threshold: float) -> Tensor:
        # near 0, |h''| ≤ 2|tanh| h' ≈ 2(|w| + |δ|)h': the step's error (|w| + |δ|)δ² is relatively
        # below ε/4 where |δ| ≤ θ (θ² = ε/4) and |δ|³ ≤ (ε/8)|w|
        step = delta.abs()
        return (step <= threshold) & (step * step * step <= start.abs().mul_(torch.finfo(step.dtype).eps / 8.0))

    def _has_fast_solver(self, t: float) -> bool:
        return t < 1.0

    def _solve(self, v: Tensor, t: float, want_w: bool) -> tuple[Tensor, Tensor | None]:
        # (1 − t)·tanh w + tw = v is odd: W = |w| is the root of a·tanh W + tW = |v|, a = 1 − t,
        # started from the bound of tanh_root_bound. Its steps use E = 1 − tanh W = 2σ(−2W), which
        # keeps tanh's tail (where tanh W rounds to 1); the last one is in w with tanh itself, for
        # the relative accuracy of small u.
        v = _saturate(v, t)
        a = 1.0 - t
        C = v.abs()
        W = tanh_root_bound(C, C - a, a, t).mul_(0.5)
        one_minus_C = C.neg_().add_(1.0)
        E, S2, h, d1 = torch.empty_like(W), torch.empty_like(W), torch.empty_like(W), torch.empty_like(W)
        for step in range(1 + newton_steps(v.dtype)):
            torch.mul(W, -2.0, out=E).sigmoid_().mul_(2.0)  # 1 − tanh W
            torch.addcmul(E, E, E, value=-0.5, out=S2).mul_(2.0)  # 1 − tanh² W = E(2 − E)
            torch.add(W, E, out=h).sub_(1.0).mul_(t).add_(one_minus_C).sub_(E)  # tanh W − |v| + t(W − tanh W)
            torch.mul(S2, a, out=d1).add_(t)  # h'
            if step == 0:  # Halley, h'' = −2a·tanh W·(1 − tanh² W)
                halley_denominator_(d1, h, E.neg_().add_(1.0).mul_(S2).mul_(-2.0 * a), S2)
            W.sub_(h.div_(d1))
        w = W.copysign_(v)
        T = torch.tanh(w, out=E)
        torch.mul(T, T, out=S2).neg_().add_(1.0)
        torch.sub(w, T, out=h).mul_(t).add_(T).sub_(v)  # h = (T − v) + t(w − T)
        h.div_(torch.mul(S2, a, out=d1).add_(t))
        u = T.addcmul_(S2, h, value=-1.0)  # tanh(w − δ) to first order
        return u, w.sub_(h) if want_w else None

    def _sigma(self, w: Tensor) -> Tensor:
        return torch.tanh(w)

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        return 1.0 - s * s

    def _psi_elem(self, u: Tensor) -> Tensor:
        p, q = 1.0 + u, 1.0 - u
        return 0.5 * (torch.xlogy(p, p) + torch.xlogy(q, q)) - 0.5 * u * u

    def _phi_elem(self, z: Tensor) -> Tensor:
        return _logcosh(z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        p, q = 0.5 * (1.0 + y), 0.5 * (1.0 - y)
        return _xlogx(p) + _xlogx(q) + _bernoulli_cross(p, q, 2.0 * z)

    def _bregman_given_sigma(self, y: Tensor, z: Tensor, s: Tensor) -> Tensor:
        # _bernoulli_cross(p, q, 2z) = 2(q·z⁺ − p·z⁻) + log1p(e^{−2|z|}), and
        # log1p(e^{−2|z|}) = −log((1 + |tanh z|)/2): one logarithm
        p, q = torch.add(y, 1.0).mul_(0.5), torch.sub(1.0, y).mul_(0.5)
        cross = torch.mul(q, z.clamp(min=0.0)).addcmul_(p, z.clamp(max=0.0), value=-1.0)
        out = _xlogx_(p).add_(_xlogx_(q)).add_(cross, alpha=2.0)
        return out.sub_(s.abs().mul_(0.5).add_(0.5).log_())


class SoftsignProx(ProxActivation):
    r"""Softsign ``σ(x) = x/(1 + |x|)`` (``σ' = 1/(1 + |x|)² ≤ 1``): prox of an even Ψ on (−1, 1), in closed form.

    ``σ⁻¹(u) = u/(1 − |u|)``, so ``Ψ'(u) = u|u|/(1 − |u|)`` and

    - ``Ψ(u) = −log(1 − |u|) − |u| − ½u²``, which is +∞ at u = ±1: dom Ψ = (−1, 1) is open;
    - ``Φ(z) = |z| − log(1 + |z|)``;
    - prox_{tΨ}(v): for v ≥ 0 the optimality condition (1 − t)u + t·u/(1 − u) = v is the
      quadratic (1 − t)u² − (1 + v)u + v = 0, whose root in [0, 1) is, in the form without
      cancellation (any t > 0, odd in v),
      ``u = 2v / (1 + |v| + √((1 − |v|)² + 4t|v|))`` (t = 1: ``v/(1 + |v|)``), evaluated with
      ``q = 1/(1 + |v|)`` as ``vq / (½ + ½√(((|v| − 1)q)² + 4t·|v|q·q))``, which cannot overflow;
    - with ``x = (1 − |y|)(1 + |z|)`` and g(x) = x − 1 − log x ≥ 0 (Itakura–Saito),
      ``B(y, z) = g(x) + (|y||z| − yz)``: both terms are ≥ 0, zero together iff y = σ(z)
      (log x is log1p(x − 1) for ``|x − 1| < ½``, else ``log(1 − |y|) + log(1 + |z|)``).

    Because Ψ(±1) = ∞, :meth:`project_data` clips data into the closed interval of the
    largest representable numbers inside (−1, 1) (±(1 − 2⁻⁵³) in float64, ±(1 − 2⁻²⁴) in
    float32), where Ψ is finite (≈ 35.2 and 15.1): data equal to ±1, which softsign never
    outputs, get a large but finite loss rather than +∞. Data beyond ±1 give +∞ as usual.
    """

    domain = (-1.0, 1.0)

    def project_data(self, y: Tensor) -> Tensor:
        inside = 1.0 - torch.finfo(y.dtype).eps / 2  # the largest number below 1 (no device sync)
        return torch.clamp(y, -inside, inside)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if is_unit_step(t):
            return F.softsign(v)
        a = v.abs()
        q = 1.0 / (a + 1.0)
        if isinstance(t, Tensor) or (torch.is_grad_enabled() and v.requires_grad):
            d = (a - 1.0) * q
            return v * q / (0.5 + 0.5 * torch.sqrt(d * d + (4.0 * t) * a * q * q))
        d = a.sub(1.0).mul_(q)  # (|v| − 1)q = 1 − 2q
        a.mul_(q).mul_(q).mul_(4.0 * t)  # 4t·|v|q·q = 4t·q(1 − q)
        d.mul_(d).add_(a).sqrt_().mul_(0.5).add_(0.5)
        return q.mul_(v).div_(d)

    def _psi_elem(self, u: Tensor) -> Tensor:
        a = u.abs()
        return -torch.log1p(-a) - a - 0.5 * a * a

    def _phi_elem(self, z: Tensor) -> Tensor:
        a = z.abs()
        return a - torch.log1p(a)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        ay, az = y.abs(), z.abs()
        d = (1.0 - ay) * (1.0 + az) - 1.0  # x − 1, accurate where x is not small
        # log x: log1p(d) near x = 1; from the factors where x is small (d would have lost it)
        log_x = torch.where(d.abs() < 0.5, torch.log1p(d), torch.log1p(-ay) + torch.log1p(az))
        return (d - log_x) + (ay * az - y * z)
