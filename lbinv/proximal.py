r"""Activation functions as proximal maps: Ψ, prox_{tΨ}, Φ and the Bregman loss B_Ψ.

An activation σ is a *proximal activation* when σ = prox_Ψ for a proper, convex, lower
semicontinuous Ψ (MATH.md §2). The lifted Bregman formulation replaces ``‖σ(z) − y‖²`` by

.. math::

    B_Ψ(y, z) = ½‖y‖² + Ψ(y) + (½‖·‖² + Ψ)^*(z) − ⟨y, z⟩,

which is convex in ``z`` with ``∇_z B_Ψ(y, z) = σ(z) − y`` and satisfies
``B_Ψ(y, z) ≥ ½‖y − σ(z)‖²``. For an elementwise σ, with ``Φ = (½(·)² + Ψ)^*`` (so ``Φ' = σ``),

.. math::

    B_Ψ(y, z) = Σ_i ½y_i² + Ψ(y_i) + Φ(z_i) − y_i z_i
              = Σ_i ½(y_i − s_i)² + [Ψ(y_i) − Ψ(s_i) − (z_i − s_i)(y_i − s_i)],   s = σ(z),

the bracket being the Bregman distance of Ψ with subgradient ``z − s ∈ ∂Ψ(s)``. Every class
below evaluates B_Ψ from a closed form in which each term is non-negative (or, for sigmoid and
tanh, as a Bernoulli Kullback–Leibler divergence), so it neither overflows for large ``|z|`` nor
loses the ``B_Ψ(σ(z), z) = 0`` property to cancellation.

Supported torch modules (see :func:`proximal_activation`): ReLU, LeakyReLU (slope in [0, 1]),
Hardtanh and ReLU6 (clamp), Sigmoid, Tanh, Softshrink, Identity.

All maps are elementwise and batched: tensors are ``(B, ...)``; :meth:`ProxActivation.psi`
and :meth:`ProxActivation.bregman` sum over every dimension but the first and return ``(B,)``.
"""

from __future__ import annotations

import math
import numbers
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ProxActivation",
    "ReLUProx",
    "LeakyReLUProx",
    "ClampProx",
    "SigmoidProx",
    "TanhProx",
    "SoftshrinkProx",
    "IdentityProx",
    "IDENTITY",
    "proximal_activation",
    "is_activation",
    "SUPPORTED_ACTIVATIONS",
]

StepSize = Union[float, Tensor]

_INF = math.inf
_LOG2 = math.log(2.0)

SUPPORTED_ACTIVATIONS = (
    "ReLU, LeakyReLU (negative_slope in [0, 1]), ReLU6, Hardtanh, Sigmoid, Tanh, Softshrink, Identity"
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _softplus(x: Tensor) -> Tensor:
    """log(1 + eˣ) without overflow and with the exact derivative sigmoid(x) (also at 0)."""
    return torch.logaddexp(x, x.new_zeros(()))


def _logcosh(z: Tensor) -> Tensor:
    """log cosh z = |z| + softplus(−2|z|) − log 2, finite for every finite z."""
    a = z.abs()
    return a + _softplus(-2.0 * a) - _LOG2


def _per_sample(x: Tensor) -> Tensor:
    """Sum over all dimensions but the first: (B, ...) -> (B,)."""
    if x.dim() == 0:
        raise ValueError("expected a batched tensor of shape (B, ...), got a 0-dimensional tensor")
    return x.reshape(x.shape[0], -1).sum(dim=1)


def _check_t(t: StepSize) -> None:
    """Validate a Python step size (tensors are not checked: that would synchronise)."""
    if isinstance(t, Tensor):
        return
    if not isinstance(t, numbers.Real) or isinstance(t, bool):
        raise TypeError(f"t: expected a float > 0 or a tensor, got {type(t).__name__}")
    t = float(t)
    if not t > 0 or not math.isfinite(t):
        raise ValueError(f"t: expected a finite step size > 0, got {t}")


def _is_one(t: StepSize) -> bool:
    return not isinstance(t, Tensor) and t == 1.0


# --------------------------------------------------------------------------------------------
# base class
# --------------------------------------------------------------------------------------------
class ProxActivation:
    r"""An elementwise activation σ = prox_Ψ together with Ψ, prox_{tΨ} and B_Ψ (MATH.md §2).

    Attributes
    ----------
    domain : tuple[float, float]
        Closed interval ``(lo, hi)`` containing ``dom Ψ`` (bounds may be ±inf). Data ``y``
        passed to :meth:`bregman` must lie in it; :meth:`project_data` clips into it.

    Notes
    -----
    Subclasses implement ``prox`` and the elementwise ``_psi_elem`` (Ψ on its domain),
    ``_phi_elem`` (Φ = (½(·)² + Ψ)^*) and, for stability, ``_bregman_elem``. The generic
    ``_bregman_elem`` is ``½y² + Ψ(y) + Φ(z) − yz``.
    """

    domain: tuple[float, float] = (-_INF, _INF)

    # -- public API -------------------------------------------------------------------------
    def __call__(self, z: Tensor) -> Tensor:
        """σ(z) = prox_Ψ(z), the activation itself."""
        return self.prox(z, 1.0)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        r"""prox_{tΨ}(v) = argmin_u ½(u − v)² + tΨ(u), elementwise.

        Parameters
        ----------
        v : Tensor
            Any shape.
        t : float or Tensor
            Step size > 0; a tensor must broadcast against ``v`` (e.g. ``(B, 1, ..., 1)``).
        """
        raise NotImplementedError

    def psi(self, u: Tensor) -> Tensor:
        r"""Ψ(u) summed per sample, shape ``(B,)``; ``+inf`` for a sample with entries outside dom Ψ."""
        inside = self._inside(u)
        val = self._psi_elem(self.project_data(u))
        return _per_sample(torch.where(inside, val, torch.full_like(val, _INF)))

    def bregman(self, y: Tensor, z: Tensor) -> Tensor:
        r"""B_Ψ(y, z) summed per sample, shape ``(B,)``.

        ``B_Ψ(y, z) = Σ ½y² + Ψ(y) + Φ(z) − yz ≥ ½‖y − σ(z)‖²``, ``∇_z B_Ψ = σ(z) − y``
        (MATH.md §2). Samples with an entry of ``y`` outside :attr:`domain` get ``+inf``
        (Ψ(y) = ∞ there); clip data with :meth:`project_data` first. NaN propagates.
        """
        inside = self._inside(y)
        val = self._bregman_elem(self.project_data(y), z)
        return _per_sample(torch.where(inside, val, torch.full_like(val, _INF)))

    def project_data(self, y: Tensor) -> Tensor:
        """Clip ``y`` into :attr:`domain` (returns ``y`` itself when the domain is ℝ)."""
        lo, hi = self.domain
        if lo == -_INF and hi == _INF:
            return y
        return torch.clamp(y, min=None if lo == -_INF else lo, max=None if hi == _INF else hi)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- elementwise pieces --------------------------------------------------------------------
    def _inside(self, y: Tensor) -> Tensor:
        lo, hi = self.domain
        # written so that NaN counts as "inside" and propagates instead of becoming inf
        return ~((y < lo) | (y > hi))

    def _psi_elem(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def _phi_elem(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return 0.5 * y * y + self._psi_elem(y) + self._phi_elem(z) - y * z


# --------------------------------------------------------------------------------------------
# piecewise-linear activations
# --------------------------------------------------------------------------------------------
def _clamp_bregman(y: Tensor, z: Tensor, lo: float, hi: float) -> Tensor:
    # s = clamp(z), p = z − s ∈ N_[lo,hi](s);  B = ½(y − s)² + p(s − y), both terms ≥ 0 for y ∈ [lo, hi]
    s = torch.clamp(z, min=None if lo == -_INF else lo, max=None if hi == _INF else hi)
    return 0.5 * (y - s) ** 2 + (z - s) * (s - y)


class ReLUProx(ProxActivation):
    r"""ReLU = prox of the indicator of [0, ∞) (MATH.md §2).

    Ψ = ι_{u ≥ 0}, Φ(z) = ½max(z, 0)², prox_{tΨ}(v) = max(v, 0) for every t, and
    ``B(y, z) = ½‖y − max(z, 0)‖² + ⟨y, max(−z, 0)⟩`` for y ≥ 0.
    """

    domain = (0.0, _INF)

    def __call__(self, z: Tensor) -> Tensor:
        return torch.relu(z)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        _check_t(t)
        return torch.relu(v)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z) ** 2

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return 0.5 * (y - torch.relu(z)) ** 2 + y * torch.relu(-z)


class ClampProx(ProxActivation):
    r"""Clamp to ``[lo, hi]`` (nn.Hardtanh, nn.ReLU6) = prox of the indicator of [lo, hi].

    Ψ = ι_{[lo, hi]}, prox_{tΨ}(v) = clamp(v, lo, hi) for every t, Φ(z) = z·c − ½c² with
    c = clamp(z) (Huber-type), and ``B(y, z) = ½(y − c)² + (z − c)(c − y)`` (MATH.md §2).

    Parameters
    ----------
    lo, hi : float
        Bounds with ``lo <= hi`` (either may be infinite).
    """

    def __init__(self, lo: float = -1.0, hi: float = 1.0) -> None:
        lo, hi = float(lo), float(hi)
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ValueError(f"ClampProx: expected lo <= hi, got lo={lo}, hi={hi}")
        self.lo, self.hi = lo, hi
        self.domain = (lo, hi)

    def _clamp(self, v: Tensor) -> Tensor:
        return torch.clamp(v, min=None if self.lo == -_INF else self.lo, max=None if self.hi == _INF else self.hi)

    def __call__(self, z: Tensor) -> Tensor:
        return self._clamp(z)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        _check_t(t)
        return self._clamp(v)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        c = self._clamp(z)
        return z * c - 0.5 * c * c

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return _clamp_bregman(y, z, self.lo, self.hi)

    def __repr__(self) -> str:
        return f"ClampProx(lo={self.lo}, hi={self.hi})"


class LeakyReLUProx(ProxActivation):
    r"""LeakyReLU with slope a ∈ (0, 1] (MATH.md §2, derived).

    With c = (1 − a)/a: Ψ(u) = (c/2)·min(u, 0)², Φ(z) = ½max(z, 0)² + (a/2)·min(z, 0)²,
    prox_{tΨ}(v) = v for v ≥ 0 and v/(1 + tc) for v < 0 (so t = 1 gives a·v). With s = σ(z),

    ``B(y, z) = ½(y − s)² + (c/2)(min(y, 0) − min(s, 0))² + c·max(−s, 0)·max(y, 0)``.

    A slope above 1 is expansive and a negative slope is decreasing: neither is a proximal map.
    Slope 0 is ReLU (use :class:`ReLUProx`).
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        a = float(negative_slope)
        if not (0.0 < a <= 1.0):
            if a == 0.0:
                why = "slope 0 is ReLU: use ReLUProx / nn.ReLU"
            elif a > 1.0:
                why = "a slope above 1 is expansive, so it is not a proximal map"
            else:
                why = "a negative slope is not monotone, so it is not a proximal map"
            raise ValueError(f"LeakyReLUProx: negative_slope must lie in (0, 1], got {negative_slope}; {why}")
        self.negative_slope = a
        self._c = (1.0 - a) / a

    def __call__(self, z: Tensor) -> Tensor:
        return F.leaky_relu(z, self.negative_slope)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        _check_t(t)
        if _is_one(t):
            return F.leaky_relu(v, self.negative_slope)
        return torch.where(v >= 0, v, v / (1.0 + t * self._c))

    def _psi_elem(self, u: Tensor) -> Tensor:
        return 0.5 * self._c * torch.clamp(u, max=0.0) ** 2

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z) ** 2 + 0.5 * self.negative_slope * torch.clamp(z, max=0.0) ** 2

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        s = F.leaky_relu(z, self.negative_slope)
        ms = torch.clamp(s, max=0.0)
        return (
            0.5 * (y - s) ** 2
            + 0.5 * self._c * (torch.clamp(y, max=0.0) - ms) ** 2
            + self._c * (-ms) * torch.relu(y)
        )

    def __repr__(self) -> str:
        return f"LeakyReLUProx(negative_slope={self.negative_slope})"


class SoftshrinkProx(ProxActivation):
    r"""Soft-thresholding at λ ≥ 0 = prox of λ|·| (MATH.md §2).

    Ψ(u) = λ|u|, Φ(z) = ½max(|z| − λ, 0)², prox_{tΨ}(v) = sign(v)·max(|v| − tλ, 0). With
    p = clamp(z, −λ, λ) ∈ λ∂|s| and s = z − p: ``B(y, z) = ½(y − s)² + (λ|y| − y·p)``.
    """

    def __init__(self, lambd: float = 0.5) -> None:
        lam = float(lambd)
        if not lam >= 0.0 or not math.isfinite(lam):
            raise ValueError(f"SoftshrinkProx: lambd must be a finite number >= 0, got {lambd}")
        self.lambd = lam

    def __call__(self, z: Tensor) -> Tensor:
        return F.softshrink(z, self.lambd)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        _check_t(t)
        if not isinstance(t, Tensor):
            return F.softshrink(v, float(t) * self.lambd)
        return torch.sign(v) * torch.relu(v.abs() - t * self.lambd)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return self.lambd * u.abs()

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z.abs() - self.lambd) ** 2

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        p = torch.clamp(z, -self.lambd, self.lambd)
        s = z - p
        return 0.5 * (y - s) ** 2 + (self.lambd * y.abs() - y * p)

    def __repr__(self) -> str:
        return f"SoftshrinkProx(lambd={self.lambd})"


class IdentityProx(ProxActivation):
    r"""Identity = prox of Ψ = 0: Φ(z) = ½z², prox_{tΨ}(v) = v, B(y, z) = ½‖y − z‖² (MATH.md §2)."""

    def __call__(self, z: Tensor) -> Tensor:
        return z

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        _check_t(t)
        return v

    def _psi_elem(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * z * z

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return 0.5 * (y - z) ** 2


# --------------------------------------------------------------------------------------------
# smooth activations: prox_{tΨ} by safeguarded Newton
# --------------------------------------------------------------------------------------------
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
    _r: tuple[float, float] = (0.0, 1.0)

    def _sigma(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def _dsigma(self, s: Tensor) -> Tensor:
        """σ'(w) expressed through s = σ(w)."""
        raise NotImplementedError

    def __call__(self, z: Tensor) -> Tensor:
        return self._sigma(z)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        _check_t(t)
        if _is_one(t):
            return self._sigma(v)
        r_lo, r_hi = self._r
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
    _r = (0.0, 1.0)

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
    _r = (-1.0, 1.0)

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


IDENTITY = IdentityProx()


# --------------------------------------------------------------------------------------------
# torch module -> ProxActivation
# --------------------------------------------------------------------------------------------
_NOT_MONOTONE = "it is not monotone, so it is not the proximal map of any convex function"
_NOT_PROX: dict[str, str] = {
    "GELU": _NOT_MONOTONE,
    "SiLU": _NOT_MONOTONE,
    "Mish": _NOT_MONOTONE,
    "Hardswish": _NOT_MONOTONE,
    "Hardshrink": "it is discontinuous, so it is not a proximal map",
    "Threshold": "it is discontinuous in general, so it is not a proximal map (Threshold(0, 0) is nn.ReLU)",
    "SELU": "its slope exceeds 1 (scale ≈ 1.0507), so it is expansive and not a proximal map",
    "Softmin": "it is decreasing (softmax of −x), so it is not a proximal map",
    "LogSoftmax": "its Jacobian is not symmetric, so it is not a proximal map",
    "GLU": "it halves a dimension, so it is not a map of a space to itself and not a proximal map",
    "MultiheadAttention": "it is not an elementwise activation",
    "PReLU": (
        "its slope is a learned parameter and it is a proximal map only while every slope lies in "
        "[0, 1]; lbinv needs a fixed slope: use nn.LeakyReLU(negative_slope) with a slope in [0, 1]"
    ),
    "RReLU": (
        "its slope is random during training; in eval mode it equals "
        "nn.LeakyReLU((lower + upper) / 2): use that instead"
    ),
    # proximal maps in principle (nondecreasing and nonexpansive), but no closed form here
    "Softplus": "it is a proximal map in principle (nondecreasing, 1-Lipschitz) but lbinv has no closed form for its Ψ and Bregman loss",
    "CELU": "it is a proximal map in principle (nondecreasing, 1-Lipschitz) but lbinv has no closed form for its Ψ and Bregman loss",
    "Softsign": "it is a proximal map in principle (nondecreasing, 1-Lipschitz) but lbinv has no closed form for its Ψ and Bregman loss",
    "Tanhshrink": "it is a proximal map in principle (nondecreasing, 1-Lipschitz) but lbinv has no closed form for its Ψ and Bregman loss",
    "LogSigmoid": "it is a proximal map in principle (nondecreasing, 1-Lipschitz) but lbinv has no closed form for its Ψ and Bregman loss",
    "Hardsigmoid": "it is a proximal map in principle (nondecreasing, 1-Lipschitz) but lbinv has no closed form for its Ψ and Bregman loss",
    "Softmax": (
        "it is the proximal map of a negative entropy on the simplex, but it couples the entries "
        "along a dimension and lbinv supports elementwise activations only"
    ),
    "Softmax2d": (
        "it is the proximal map of a negative entropy on the simplex, but it couples the channels "
        "and lbinv supports elementwise activations only"
    ),
}

_ACTIVATION_TYPES: tuple[type, ...] = tuple(
    getattr(nn, name)
    for name in (
        "Threshold", "ReLU", "RReLU", "Hardtanh", "ReLU6", "Sigmoid", "Hardsigmoid", "Tanh", "SiLU",
        "Mish", "Hardswish", "ELU", "CELU", "SELU", "GLU", "GELU", "Hardshrink", "LeakyReLU",
        "LogSigmoid", "Softplus", "Softshrink", "PReLU", "Softsign", "Tanhshrink", "Softmin",
        "Softmax", "Softmax2d", "LogSoftmax",
    )
    if hasattr(nn, name)
)


def is_activation(module: nn.Module) -> bool:
    """True for torch activation modules (``torch.nn`` activations, supported or not).

    ``nn.Identity`` is not an activation here: it is affine (see :mod:`lbinv.lifted`), although
    :func:`proximal_activation` maps it to :data:`IDENTITY`.
    """
    return isinstance(module, _ACTIVATION_TYPES)


def _plain(module: nn.Module, base: type) -> bool:
    """``module`` is a ``base`` whose forward was not overridden by a subclass."""
    return isinstance(module, base) and type(module).forward is base.forward


def proximal_activation(module: nn.Module) -> ProxActivation:
    r"""The :class:`ProxActivation` of a torch activation module.

    ========================  ==========================================
    module                    result
    ========================  ==========================================
    nn.ReLU                   :class:`ReLUProx`
    nn.LeakyReLU(a)           :class:`LeakyReLUProx` (a ∈ (0, 1]); ReLUProx for a = 0
    nn.Hardtanh(lo, hi)       :class:`ClampProx` (lo, hi)
    nn.ReLU6                  :class:`ClampProx` (0, 6)
    nn.Sigmoid                :class:`SigmoidProx`
    nn.Tanh                   :class:`TanhProx`
    nn.Softshrink(λ)          :class:`SoftshrinkProx` (λ)
    nn.Identity               :data:`IDENTITY`
    ========================  ==========================================

    Raises
    ------
    ValueError
        For any other module, naming its type, saying why (e.g. GELU, SiLU: not monotone, hence
        not a proximal map) and listing the supported activations; for LeakyReLU with a slope
        outside [0, 1].
    """
    name = type(module).__name__
    if _plain(module, nn.LeakyReLU):
        a = float(module.negative_slope)
        if a == 0.0:
            return ReLUProx()
        if 0.0 < a <= 1.0:
            return LeakyReLUProx(a)
        why = "a slope above 1 is expansive" if a > 1.0 else "a negative slope is not monotone"
        raise ValueError(
            f"{name}(negative_slope={a}) is not a proximal map ({why}); LeakyReLU needs a slope in [0, 1]. "
            f"Supported activations: {SUPPORTED_ACTIVATIONS}"
        )
    if _plain(module, nn.ReLU):
        return ReLUProx()
    if _plain(module, nn.ReLU6):
        return ClampProx(0.0, 6.0)
    if _plain(module, nn.Hardtanh):
        return ClampProx(float(module.min_val), float(module.max_val))
    if _plain(module, nn.Sigmoid):
        return SigmoidProx()
    if _plain(module, nn.Tanh):
        return TanhProx()
    if _plain(module, nn.Softshrink):
        return SoftshrinkProx(float(module.lambd))
    if _plain(module, nn.Identity):
        return IDENTITY
    if isinstance(module, nn.ELU):
        alpha = float(module.alpha)
        if alpha > 1.0:
            why = f"its slope alpha={alpha} > 1 just below 0 makes it expansive, so it is not a proximal map"
        else:
            why = (
                "with alpha <= 1 it is a proximal map in principle (nondecreasing, 1-Lipschitz) but "
                "lbinv has no closed form for its Ψ and Bregman loss"
            )
    else:
        base = next((c.__name__ for c in type(module).__mro__ if c.__name__ in _NOT_PROX), None)
        if base is not None:
            why = _NOT_PROX[base]
        elif is_activation(module):
            why = "a subclass that overrides forward() cannot be matched to a proximal map"
        else:
            why = "it is not an activation function"
    raise ValueError(f"{name} is not supported as a proximal activation: {why}. Supported activations: {SUPPORTED_ACTIVATIONS}")
