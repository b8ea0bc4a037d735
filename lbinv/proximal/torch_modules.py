"""A torch activation module as a :class:`~lbinv.proximal.base.ProxActivation`, or a refusal that
says why it is not a proximal map and what to use instead. Import from :mod:`lbinv.proximal`.
"""

from __future__ import annotations

from torch import nn

from lbinv._checks import is_plain
from lbinv.proximal.base import ProxActivation
from lbinv.proximal.explinear import CELUProx, ELUProx
from lbinv.proximal.piecewise import (
    IDENTITY,
    ClampProx,
    HardsigmoidProx,
    LeakyReLUProx,
    PReLUProx,
    ReLUProx,
    SoftshrinkProx,
    leaky_slope_problem,
    prelu_slope_problem,
)
from lbinv.proximal.smooth import SigmoidProx, SoftsignProx, TanhProx
from lbinv.proximal.smooth_unbounded import (
    SOFTPLUS_MIN_THRESHOLD,
    LogSigmoidProx,
    SoftplusProx,
)
from lbinv.proximal.tanhshrink import TanhshrinkProx

__all__ = ["SUPPORTED_ACTIVATIONS", "is_activation", "proximal_activation"]

SUPPORTED_ACTIVATIONS = (
    "ReLU, LeakyReLU (negative_slope in [0, 1]), PReLU (every slope in (0, 1], or all 0), ReLU6, Hardtanh, "
    "Sigmoid, Tanh, Softshrink, "
    f"Softplus (beta > 0, threshold >= {SOFTPLUS_MIN_THRESHOLD:g}), ELU (alpha in [0, 1]), CELU, Softsign, "
    "Tanhshrink, LogSigmoid, Hardsigmoid, Identity"
)

# --------------------------------------------------------------------------------------------
# torch module -> ProxActivation
# --------------------------------------------------------------------------------------------
_NOT_MONOTONE = "it is not monotone, so it is not the proximal map of any convex function"
_SMOOTH_ALTERNATIVE = "; the nearest supported smooth activations are nn.Softplus and nn.ELU (or nn.CELU): use one of them"
_NOT_PROX: dict[str, str] = {
    "GELU": "it dips below 0 and returns to 0 as x → −∞: " + _NOT_MONOTONE + _SMOOTH_ALTERNATIVE,
    "SiLU": "it dips below 0 and returns to 0 as x → −∞: " + _NOT_MONOTONE + _SMOOTH_ALTERNATIVE,
    "Mish": "it dips below 0 and returns to 0 as x → −∞: " + _NOT_MONOTONE + _SMOOTH_ALTERNATIVE,
    "Hardswish": ("it dips below 0 on (-3, 0): " + _NOT_MONOTONE + "; use nn.ReLU, or nn.ELU / nn.Softplus for a smooth one"),
    "Hardshrink": "it is discontinuous, so it is not a proximal map",
    "Threshold": "it is discontinuous in general, so it is not a proximal map (Threshold(0, 0) is nn.ReLU)",
    "SELU": ("its slope exceeds 1 (scale ≈ 1.0507), so it is expansive and not a proximal map; use nn.ELU (alpha <= 1) or nn.CELU instead"),
    "Softmin": "it is decreasing (softmax of −x), so it is not a proximal map",
    "LogSoftmax": "its Jacobian is not symmetric, so it is not a proximal map",
    "GLU": "it halves a dimension, so it is not a map of a space to itself and not a proximal map",
    "MultiheadAttention": "it is not an elementwise activation",
    "RReLU": ("its slope is random during training; in eval mode it equals nn.LeakyReLU((lower + upper) / 2): use that instead"),
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
    nn.Threshold,
    nn.ReLU,
    nn.RReLU,
    nn.Hardtanh,
    nn.ReLU6,
    nn.Sigmoid,
    nn.Hardsigmoid,
    nn.Tanh,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GLU,
    nn.GELU,
    nn.Hardshrink,
    nn.LeakyReLU,
    nn.LogSigmoid,
    nn.Softplus,
    nn.Softshrink,
    nn.PReLU,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Softmin,
    nn.Softmax,
    nn.Softmax2d,
    nn.LogSoftmax,
)


def is_activation(module: nn.Module) -> bool:
    """True for torch activation modules (``torch.nn`` activations, supported or not).

    ``nn.Identity`` is not an activation here: it is affine (see :mod:`lbinv.operators`), although
    :func:`proximal_activation` maps it to :data:`IDENTITY`.
    """
    return isinstance(module, _ACTIVATION_TYPES)


def proximal_activation(module: nn.Module) -> ProxActivation:
    r"""The :class:`ProxActivation` of a torch activation module.

    ========================  ==========================================
    module                    result
    ========================  ==========================================
    nn.ReLU                   :class:`ReLUProx`
    nn.LeakyReLU(a)           :class:`LeakyReLUProx` (a ∈ (0, 1]); ReLUProx for a = 0
    nn.PReLU(C)               :class:`PReLUProx` (its learned slopes, copied at
                              lifting: every one in (0, 1]); LeakyReLUProx
                              when all slopes are equal, ReLUProx when all 0
    nn.Hardtanh(lo, hi)       :class:`ClampProx` (lo, hi)
    nn.ReLU6                  :class:`ClampProx` (0, 6)
    nn.Sigmoid                :class:`SigmoidProx`
    nn.Tanh                   :class:`TanhProx`
    nn.Softshrink(λ)          :class:`SoftshrinkProx` (λ)
    nn.Softplus(β, thr)       :class:`SoftplusProx` (β > 0, thr ≥ 15; exact
                              softplus, see its docstring for the threshold)
    nn.ELU(α)                 :class:`ELUProx` (α ∈ (0, 1]); ReLUProx for α = 0
    nn.CELU(α)                :class:`CELUProx` (every α > 0)
    nn.Softsign               :class:`SoftsignProx`
    nn.Tanhshrink             :class:`TanhshrinkProx`
    nn.LogSigmoid             :class:`LogSigmoidProx`
    nn.Hardsigmoid            :class:`HardsigmoidProx`
    nn.Identity               :data:`IDENTITY`
    ========================  ==========================================

    Raises
    ------
    ValueError
        For any other module, naming its type, saying why (e.g. GELU, SiLU: not monotone, hence
        not a proximal map, use nn.Softplus or nn.ELU) and listing the supported activations; for
        LeakyReLU with a slope outside [0, 1], PReLU with a slope outside [0, 1] or slopes 0 mixed
        with nonzero ones (naming the channels and their slopes), ELU with alpha outside [0, 1], CELU with alpha <= 0,
        Softplus with beta <= 0 or a threshold below 15.
    """
    name = type(module).__name__
    if is_plain(module, nn.LeakyReLU):
        a = float(module.negative_slope)
        if a == 0.0:
            return ReLUProx()
        if 0.0 < a <= 1.0:
            return LeakyReLUProx(a)
        raise ValueError(
            f"{name}(negative_slope={a}) is not a proximal map ({leaky_slope_problem(a)}); "
            "LeakyReLU needs a slope in [0, 1]. "
            f"Supported activations: {SUPPORTED_ACTIVATIONS}"
        )
    if is_plain(module, nn.PReLU):
        return _prelu(module)
    if is_plain(module, nn.ReLU):
        return ReLUProx()
    if is_plain(module, nn.ReLU6):
        return ClampProx(0.0, 6.0)
    if is_plain(module, nn.Hardtanh):
        return ClampProx(float(module.min_val), float(module.max_val))
    if is_plain(module, nn.Sigmoid):
        return SigmoidProx()
    if is_plain(module, nn.Tanh):
        return TanhProx()
    if is_plain(module, nn.Softshrink):
        return SoftshrinkProx(float(module.lambd))
    if is_plain(module, nn.Identity):
        return IDENTITY
    if is_plain(module, nn.Softsign):
        return SoftsignProx()
    if is_plain(module, nn.Tanhshrink):
        return TanhshrinkProx()
    if is_plain(module, nn.LogSigmoid):
        return LogSigmoidProx()
    if is_plain(module, nn.Hardsigmoid):
        return HardsigmoidProx()
    why = _parametrised(module)
    if why is None:
        base = next((c.__name__ for c in type(module).__mro__ if c.__name__ in _NOT_PROX), None)
        if base is not None:
            why = _NOT_PROX[base]
        elif is_activation(module):
            why = "a subclass that overrides forward() cannot be matched to a proximal map"
        else:
            why = "it is not an activation function"
    if isinstance(why, ProxActivation):
        return why
    raise ValueError(f"{name} is not supported as a proximal activation: {why}. Supported activations: {SUPPORTED_ACTIVATIONS}")


def _prelu(module: nn.PReLU) -> ProxActivation:
    """The proximal map of a plain nn.PReLU at its current slopes (a detached copy): ReLUProx when all are
    0, LeakyReLUProx when all are equal, else PReLUProx; a ValueError naming the offending channels when a
    slope lies outside [0, 1] or slopes 0 are mixed with nonzero ones. One host synchronisation."""
    weight = module.weight.detach().reshape(-1)
    first = weight[:1]
    if bool((weight == first).all()):  # one slope for every entry
        a = float(first)
        if a == 0.0:
            return ReLUProx()
        if 0.0 < a <= 1.0:
            return LeakyReLUProx(a)
    why = prelu_slope_problem(weight)
    if why is not None:
        raise ValueError(
            f"PReLU(num_parameters={module.num_parameters}) is not a proximal map: {why}. PReLU needs every "
            "learned slope in (0, 1] (or all 0: nn.ReLU); keep them there while training, e.g. "
            "module.weight.data.clamp_(0.01, 1.0) after each optimiser step. "
            f"Supported activations: {SUPPORTED_ACTIVATIONS}"
        )
    return PReLUProx(weight)


def _parametrised(module: nn.Module) -> ProxActivation | str | None:
    """The proximal map of a plain nn.Softplus, nn.ELU or nn.CELU, or its constructor's refusal of
    the module's parameters; None for any other module."""
    try:
        if is_plain(module, nn.Softplus):
            return SoftplusProx(module.beta, module.threshold)
        if is_plain(module, nn.ELU):
            return ReLUProx() if module.alpha == 0.0 else ELUProx(module.alpha)
        if is_plain(module, nn.CELU):
            return CELUProx(module.alpha)
    except ValueError as error:
        return f"with {module.extra_repr()}, {error}"
    return None
