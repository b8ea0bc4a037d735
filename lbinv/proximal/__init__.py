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
tanh, as a Bernoulli Kullback–Leibler divergence; for ELU, a generalised one; for softsign, an
Itakura–Saito-type one; for softplus and tanhshrink, with the large terms of ``½y² + Φ(z) − yz``
grouped into one square), so it neither overflows for large ``|z|`` nor loses the
``B_Ψ(σ(z), z) = 0`` property to cancellation.

Every nondecreasing, 1-Lipschitz elementwise σ is such a prox, with Ψ'(u) = σ⁻¹(u) − u on the
range of σ and prox_{tΨ}(v) the root of (1 − t)u + t·σ⁻¹(u) = v; the classes derive Ψ and Φ
in their docstrings (softplus needs the dilogarithm Li₂, in :mod:`~lbinv.proximal._dilog`).

The package: :mod:`~lbinv.proximal.base` (the base class), :mod:`~lbinv.proximal.piecewise` (ReLU,
LeakyReLU, PReLU, clamp, hard sigmoid, soft-thresholding, identity: closed forms),
:mod:`~lbinv.proximal.smooth` (bounded range: sigmoid, tanh, prox by a few Halley/Newton steps
from a close guess, or safeguarded Newton; softsign, in closed form),
:mod:`~lbinv.proximal.smooth_unbounded` (softplus, log-sigmoid) and :mod:`~lbinv.proximal.explinear` (ELU, CELU: the same),
:mod:`~lbinv.proximal._roots` (what their fast solvers share: a Wright omega guess, step counts),
:mod:`~lbinv.proximal.tanhshrink` (σ⁻¹ by Newton too) and
:mod:`~lbinv.proximal.torch_modules` (torch module → :class:`ProxActivation`). Import all of
them from here.

Supported torch modules (see :func:`proximal_activation`): ReLU, LeakyReLU (slope in [0, 1]),
PReLU (learned per-channel slopes, each in (0, 1], or all 0: a LeakyReLU per channel), Hardtanh
and ReLU6 (clamp), Sigmoid, Tanh, Softshrink, Softplus (β > 0), ELU (α ∈ [0, 1]), CELU (α > 0),
Softsign, Tanhshrink, LogSigmoid, Hardsigmoid, Identity. GELU, SiLU, Mish and Hardswish are not
monotone and SELU is expansive: they are refused, naming the nearest supported alternative
(nn.Softplus, nn.ELU).

All maps are elementwise and batched: tensors are ``(B, ...)`` (for PReLU, ``(B, C, ...)``: its
slope depends on the channel, dimension 1); :meth:`ProxActivation.psi` and
:meth:`ProxActivation.bregman` sum over every dimension but the first and return ``(B,)``.
"""

from lbinv.proximal.base import ProxActivation, StepSize
from lbinv.proximal.explinear import CELUProx, ELUProx
from lbinv.proximal.piecewise import (
    IDENTITY,
    ClampProx,
    HardsigmoidProx,
    IdentityProx,
    LeakyReLUProx,
    PReLUProx,
    ReLUProx,
    SoftshrinkProx,
)
from lbinv.proximal.smooth import SigmoidProx, SoftsignProx, TanhProx
from lbinv.proximal.smooth_unbounded import (
    LogSigmoidProx,
    SoftplusProx,
)
from lbinv.proximal.tanhshrink import TanhshrinkProx
from lbinv.proximal.torch_modules import (
    SUPPORTED_ACTIVATIONS,
    is_activation,
    proximal_activation,
)

__all__ = [
    "IDENTITY",
    "SUPPORTED_ACTIVATIONS",
    "CELUProx",
    "ClampProx",
    "ELUProx",
    "HardsigmoidProx",
    "IdentityProx",
    "LeakyReLUProx",
    "LogSigmoidProx",
    "PReLUProx",
    "ProxActivation",
    "ReLUProx",
    "SigmoidProx",
    "SoftplusProx",
    "SoftshrinkProx",
    "SoftsignProx",
    "StepSize",
    "TanhProx",
    "TanhshrinkProx",
    "is_activation",
    "proximal_activation",
]
