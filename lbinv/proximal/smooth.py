r"""Smooth proximal activations, sigmoid and tanh: prox_{tΨ} by safeguarded Newton (MATH.md §2).

Import the classes from :mod:`lbinv.proximal`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lbinv._checks import check_step
from lbinv.proximal.base import ProxActivation, StepSize, is_unit_step

__all__ = ["SigmoidProx", "TanhProx"]

_LOG2 = math.log(2.0)


def _softplus(x: Tensor) -> Tensor:
    """log(1 + eˣ) without overflow and with the exact derivative sigmoid(x) (also at 0)."""
    return torch.logaddexp(x, x.new_zeros(()))


def _logcosh(z: Tensor) -> Tensor:
    """log cosh z = |z| + softplus(−2|z|) − log 2, finite for every finite z."""
    a = z.abs()
    return a + _softplus(-2.0 * a) - _LOG2


class _SmoothProx(ProxActivation):
    r"""σ smooth, strictly increasing, with range (r_lo, r_hi) = interior of dom Ψ.

    Since u + Ψ'(u) = σ⁻¹(u), the optimality condition of prox_{tΨ}(v) is
    (1 − t)u + t·σ⁻¹(u) = v. Substituting u = σ(w) gives the scalar equation

        h(w) = (1 − t)·σ(w) + t·w − v = 0,   h'(w) = (1 − t)σ'(w) + t > 0,

    which never evaluates σ⁻¹ (no log(0) or atanh(±1) at the edges of the domain) and whose
    root lies in the bracket [(v − max((1−t)r))/t, (v − min((1−t)r))/t], r ∈ {r_lo, r_hi}.
    It is solved elementwise by Newton's method safeguarded by bisection on that bracket,
    started at clamp(v, bracket) (exact for t = 1), for a fixed number of steps (no
    synchronisation with the device). The result is returned as u = σ(w), which is exact
    at the domain edges (σ saturates to r_lo / r_hi).
    """

    newton_steps: int = 20

    def _sigma(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def _dsigma(self, s: Tensor) -> Tensor:
        """σ'(w) expressed through s = σ(w)."""
        raise NotImplementedError

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if is_unit_step(t):
            return self._sigma(v)
        r_lo, r_hi = self.domain  # the range of σ is the interior of the domain
        with torch.no_grad():
            vd, td = v.detach(), t.detach() if isinstance(t, Tensor) else float(t)
            a = 1.0 - td
            m1, m2 = a * r_lo, a * r_hi
            if isinstance(a, Tensor):
                m_lo, m_hi = torch.minimum(m1, m2), torch.maximum(m1, m2)
            else:
                m_lo, m_hi = min(m1, m2), max(m1, m2)
            lo = (vd - m_hi) / td
            hi = (vd - m_lo) / td
            w = torch.minimum(torch.maximum(vd, lo), hi)
            for _ in range(self.newton_steps):
                s = self._sigma(w)
                h = a * s + td * w - vd
                dh = a * self._dsigma(s) + td
                pos = h > 0
                hi = torch.where(pos, w, hi)
                lo = torch.where(pos, lo, w)
                wn = w - h / dh
                w = torch.where((wn >= lo) & (wn <= hi), wn, 0.5 * (lo + hi))
        if torch.is_grad_enabled() and (v.requires_grad or (isinstance(t, Tensor) and t.requires_grad)):
            # one more Newton step with live inputs: its value equals w (h(w) ≈ 0) and its
            # derivative is the implicit one, dw/dv = 1/h'(w), dw/dt = −∂_t h/h'(w).
            s = self._sigma(w)
            w = w - ((1.0 - t) * s + t * w - v) / ((1.0 - td) * self._dsigma(s) + td)
        return self._sigma(w)


class SigmoidProx(_SmoothProx):
    r"""Logistic sigmoid = prox of the Fermi–Dirac entropy minus ½u² (MATH.md §2, derived).

    Ψ(u) = u log u + (1 − u) log(1 − u) − u²/2 on [0, 1], Φ(z) = softplus(z);
    prox_{tΨ}(v) is the root of (1 − t)u + t·logit(u) = v (sigmoid(v) for t = 1).
    B_Ψ is the Bernoulli Kullback–Leibler divergence KL(y ‖ sigmoid(z)):

    ``B(y, z) = y log y + (1−y) log(1−y) + y·softplus(−z) + (1−y)·softplus(z)``.
    """

    domain = (0.0, 1.0)

    def _sigma(self, w: Tensor) -> Tensor:
        return torch.sigmoid(w)

    def _dsigma(self, s: Tensor) -> Tensor:
        return s * (1.0 - s)

    def _psi_elem(self, u: Tensor) -> Tensor:
        q = 1.0 - u
        return torch.xlogy(u, u) + torch.xlogy(q, q) - 0.5 * u * u

    def _phi_elem(self, z: Tensor) -> Tensor:
        return _softplus(z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        q = 1.0 - y
        return torch.xlogy(y, y) + torch.xlogy(q, q) + y * _softplus(-z) + q * _softplus(z)


class TanhProx(_SmoothProx):
    r"""tanh = prox of Ψ(u) = ½(1+u)log(1+u) + ½(1−u)log(1−u) − ½u² on [−1, 1] (MATH.md §2).

    (Equivalently u·artanh u + ½(log(1 − u²) − u²).) Φ(z) = log cosh z, computed as
    |z| + softplus(−2|z|) − log 2. prox_{tΨ}(v) is the root of (1 − t)u + t·artanh(u) = v
    (tanh(v) for t = 1). With p = (1 + y)/2, q = (1 − y)/2 and tanh z = 2·sigmoid(2z) − 1,
    B_Ψ is the Bernoulli KL divergence KL(p ‖ sigmoid(2z)):

    ``B(y, z) = p log p + q log q + p·softplus(−2z) + q·softplus(2z)``,

    which equals ½(1+y)log(1+y) + ½(1−y)log(1−y) + log cosh z − yz exactly (the two log 2
    terms cancel) but has no cancellation between |z| and yz when |z| is large.
    """

    domain = (-1.0, 1.0)

    def _sigma(self, w: Tensor) -> Tensor:
        return torch.tanh(w)

    def _dsigma(self, s: Tensor) -> Tensor:
        return 1.0 - s * s

    def _psi_elem(self, u: Tensor) -> Tensor:
        p, q = 1.0 + u, 1.0 - u
        return 0.5 * (torch.xlogy(p, p) + torch.xlogy(q, q)) - 0.5 * u * u

    def _phi_elem(self, z: Tensor) -> Tensor:
        return _logcosh(z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        p, q = 0.5 * (1.0 + y), 0.5 * (1.0 - y)
        return torch.xlogy(p, p) + torch.xlogy(q, q) + p * _softplus(-2.0 * z) + q * _softplus(2.0 * z)
