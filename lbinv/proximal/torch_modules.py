"""A torch activation module as a :class:`~lbinv.proximal.base.ProxActivation`, or a refusal that
says why it is not a proximal map and what to use instead. Import from :mod:`lbinv.proximal`.
"""

from __future__ import annotations

from torch import nn

from lbinv._checks import is_plain
from lbinv.proximal.base import ProxActivation
from lbinv.proximal.piecewise import IDENTITY, ClampProx, LeakyReLUProx, ReLUProx, SoftshrinkProx, leaky_slope_problem
from lbinv.proximal.smooth import SigmoidProx, TanhProx

__all__ = ["proximal_activation", "is_activation", "SUPPORTED_ACTIVATIONS"]

SUPPORTED_ACTIVATIONS = (
    "ReLU, LeakyReLU (negative_slope in [0, 1]), ReLU6, Hardtanh, Sigmoid, Tanh, Softshrink, Identity"
)

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
