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
evaluates B_Ψ from a closed form in which each term is non-negative (or, for sigmoid and
tanh, as a Bernoulli Kullback–Leibler divergence), so it neither overflows for large ``|z|`` nor
loses the ``B_Ψ(σ(z), z) = 0`` property to cancellation.

This module is the public entry point. It holds the piecewise-linear activations and the
torch module → :class:`ProxActivation` mapping; the base class lives in
:mod:`lbinv.proximal_base`, the smooth activations (sigmoid, tanh: prox by Newton) in
:mod:`lbinv.proximal_smooth`. Import all of them from here.

Supported torch modules (see :func:`proximal_activation`): ReLU, LeakyReLU (slope in [0, 1]),
Hardtanh and ReLU6 (clamp), Sigmoid, Tanh, Softshrink, Identity.

All maps are elementwise and batched: tensors are ``(B, ...)``; :meth:`ProxActivation.psi`
and :meth:`ProxActivation.bregman` sum over every dimension but the first and return ``(B,)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lbinv.proximal_base import ProxActivation, StepSize, check_step, clamp, is_unit_step
from lbinv.proximal_smooth import SigmoidProx, TanhProx

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

SUPPORTED_ACTIVATIONS = (
    "ReLU, LeakyReLU (negative_slope in [0, 1]), ReLU6, Hardtanh, Sigmoid, Tanh, Softshrink, Identity"
)


# --------------------------------------------------------------------------------------------
# piecewise-linear activations (the smooth ones, sigmoid and tanh, are in proximal_smooth)
# --------------------------------------------------------------------------------------------
class ReLUProx(ProxActivation):
    r"""ReLU = prox of the indicator of [0, ∞) (MATH.md §2).

    Ψ = ι_{u ≥ 0}, Φ(z) = ½max(z, 0)², prox_{tΨ}(v) = max(v, 0) for every t, and
    ``B(y, z) = ½‖y − max(z, 0)‖² + ⟨y, max(−z, 0)⟩`` for y ≥ 0.
    """

    domain = (0.0, math.inf)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
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

    @property
    def domain(self) -> tuple[float, float]:
        return (self.lo, self.hi)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        return clamp(v, self.lo, self.hi)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        c = clamp(z, self.lo, self.hi)
        return z * c - 0.5 * c * c

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        # s = clamp(z), p = z − s ∈ N_[lo,hi](s): B = ½(y − s)² + p(s − y), both terms ≥ 0 for y ∈ [lo, hi]
        s = clamp(z, self.lo, self.hi)
        return 0.5 * (y - s) ** 2 + (z - s) * (s - y)


def _leaky_slope_problem(a: float) -> str | None:
    """Why LeakyReLU with slope ``a`` is not a proximal map; None for a slope in [0, 1]."""
    if a > 1.0:
        return "a slope above 1 is expansive"
    if not a >= 0.0:
        return "a negative slope is not monotone"
    return None


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
            why = _leaky_slope_problem(a)
            if why is None:
                why = "slope 0 is ReLU: use ReLUProx / nn.ReLU"
            else:
                why += ", so it is not a proximal map"
            raise ValueError(f"LeakyReLUProx: negative_slope must lie in (0, 1], got {negative_slope}; {why}")
        self.negative_slope = a
        self._c = (1.0 - a) / a

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if is_unit_step(t):
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

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
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


class IdentityProx(ProxActivation):
    r"""Identity = prox of Ψ = 0: Φ(z) = ½z², prox_{tΨ}(v) = v, B(y, z) = ½‖y − z‖² (MATH.md §2)."""

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        return v

    def _psi_elem(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * z * z

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return 0.5 * (y - z) ** 2


IDENTITY = IdentityProx()


# --------------------------------------------------------------------------------------------
# torch module -> ProxActivation
# --------------------------------------------------------------------------------------------
_NOT_MONOTONE = "it is not monotone, so it is not the proximal map of any convex function"
_NO_CLOSED_FORM = (
    "it is a proximal map in principle (nondecreasing, 1-Lipschitz) but lbinv has no closed form "
    "for its Ψ and Bregman loss"
)
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
    "Softplus": _NO_CLOSED_FORM,
    "CELU": _NO_CLOSED_FORM,
    "Softsign": _NO_CLOSED_FORM,
    "Tanhshrink": _NO_CLOSED_FORM,
    "LogSigmoid": _NO_CLOSED_FORM,
    "Hardsigmoid": _NO_CLOSED_FORM,
    "Softmax": (
        "it is the proximal map of a negative entropy on the simplex, but it couples the entries "
        "along a dimension and lbinv supports elementwise activations only"
    ),
    "Softmax2d": (
        "it is the proximal map of a negative entropy on the simplex, but it couples the channels "
        "and lbinv supports elementwise activations only"
    ),
}

_ACTIVATION_TYPES = (
    nn.Threshold, nn.ReLU, nn.RReLU, nn.Hardtanh, nn.ReLU6, nn.Sigmoid, nn.Hardsigmoid, nn.Tanh,
    nn.SiLU, nn.Mish, nn.Hardswish, nn.ELU, nn.CELU, nn.SELU, nn.GLU, nn.GELU, nn.Hardshrink,
    nn.LeakyReLU, nn.LogSigmoid, nn.Softplus, nn.Softshrink, nn.PReLU, nn.Softsign, nn.Tanhshrink,
    nn.Softmin, nn.Softmax, nn.Softmax2d, nn.LogSoftmax,
)


def is_activation(module: nn.Module) -> bool:
    """True for torch activation modules (``torch.nn`` activations, supported or not).

    ``nn.Identity`` is not an activation here: it is affine (see :mod:`lbinv.affine_ops`), although
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
        raise ValueError(
            f"{name}(negative_slope={a}) is not a proximal map ({_leaky_slope_problem(a)}); "
            "LeakyReLU needs a slope in [0, 1]. "
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
            why = "with alpha <= 1 " + _NO_CLOSED_FORM
    else:
        base = next((c.__name__ for c in type(module).__mro__ if c.__name__ in _NOT_PROX), None)
        if base is not None:
            why = _NOT_PROX[base]
        elif is_activation(module):
            why = "a subclass that overrides forward() cannot be matched to a proximal map"
        else:
            why = "it is not an activation function"
    raise ValueError(f"{name} is not supported as a proximal activation: {why}. Supported activations: {SUPPORTED_ACTIVATIONS}")
