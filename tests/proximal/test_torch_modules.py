"""Tests of lbinv.proximal.torch_modules: which torch activation maps to which proximal map, the
refusals (each names the module and lists the supported ones), is_activation, and the checks of the
proximal maps' constructors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbinv.proximal import (
    IDENTITY,
    ClampProx,
    IdentityProx,
    LeakyReLUProx,
    ReLUProx,
    SoftshrinkProx,
    is_activation,
    proximal_activation,
)


# ---------------------------------------------------------------------------------------------
# constructors and module mapping
# ---------------------------------------------------------------------------------------------
def test_constructor_validation():
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="negative_slope"):
            LeakyReLUProx(bad)
    assert LeakyReLUProx(1.0).prox(torch.tensor([-2.0, 3.0]), 0.7).tolist() == [-2.0, 3.0]
    with pytest.raises(ValueError, match="lo <= hi"):
        ClampProx(1.0, -1.0)
    with pytest.raises(ValueError, match="lambd"):
        SoftshrinkProx(-0.1)


def test_mapping_of_supported_modules():
    assert isinstance(proximal_activation(nn.ReLU(inplace=True)), ReLUProx)
    assert isinstance(proximal_activation(nn.LeakyReLU(0.0)), ReLUProx)  # slope 0 is ReLU
    leaky = proximal_activation(nn.LeakyReLU(0.2))
    assert isinstance(leaky, LeakyReLUProx) and leaky.negative_slope == pytest.approx(0.2)
    assert proximal_activation(nn.ReLU6()).domain == (0.0, 6.0)
    assert proximal_activation(nn.Hardtanh(-2.0, 3.0)).domain == (-2.0, 3.0)
    assert proximal_activation(nn.Softshrink(0.25)).lambd == 0.25
    assert proximal_activation(nn.Identity()) is IDENTITY
    assert isinstance(IDENTITY, IdentityProx)


_REFUSED = [
    (nn.GELU(), "not monotone"),
    (nn.SiLU(), "not monotone"),
    (nn.Mish(), "not monotone"),
    (nn.Hardswish(), "not monotone"),
    (nn.ELU(alpha=2.0), "not a proximal map"),
    (nn.ELU(), "no closed form"),
    (nn.SELU(), "not a proximal map"),
    (nn.Softmax(dim=1), "elementwise"),
    (nn.LogSoftmax(dim=1), "not a proximal map"),
    (nn.Softplus(), "no closed form"),
    (nn.PReLU(), "nn.LeakyReLU"),
    (nn.Hardshrink(), "not a proximal map"),
    (nn.LeakyReLU(1.5), "not a proximal map"),
    (nn.LeakyReLU(-0.1), "not a proximal map"),
    (nn.Linear(3, 3), "not an activation"),
]


@pytest.mark.parametrize("module, why", _REFUSED, ids=[type(m).__name__ + str(i) for i, (m, _) in enumerate(_REFUSED)])
def test_refusals_name_the_module_and_list_supported(module, why):
    with pytest.raises(ValueError) as err:
        proximal_activation(module)
    msg = str(err.value)
    assert type(module).__name__ in msg
    assert why in msg
    for supported in ("ReLU", "LeakyReLU", "Hardtanh", "Sigmoid", "Tanh", "Softshrink", "Identity"):
        assert supported in msg


def test_subclass_overriding_forward_is_refused():
    class Shifted(nn.ReLU):
        def forward(self, x):
            return torch.relu(x) + 1.0

    with pytest.raises(ValueError, match="Shifted"):
        proximal_activation(Shifted())


def test_is_activation():
    for m in (nn.ReLU(), nn.Sigmoid(), nn.GELU(), nn.Softmax(dim=1), nn.PReLU(), nn.ELU(), nn.ReLU6()):
        assert is_activation(m), m
    for m in (nn.Linear(2, 2), nn.Conv2d(1, 1, 3), nn.Identity(), nn.Flatten(), nn.MultiheadAttention(4, 2)):
        assert not is_activation(m), m
