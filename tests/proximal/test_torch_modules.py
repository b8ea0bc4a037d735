"""Tests of lbinv.proximal.torch_modules: which torch activation maps to which proximal map, the
refusals (each names the module and lists the supported ones), is_activation, and the checks of the
proximal maps' constructors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbinv.proximal import (
    IDENTITY,
    CELUProx,
    ClampProx,
    ELUProx,
    HardsigmoidProx,
    IdentityProx,
    LeakyReLUProx,
    LogSigmoidProx,
    ReLUProx,
    SoftplusProx,
    SoftshrinkProx,
    SoftsignProx,
    TanhshrinkProx,
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
    for bad in (0.0, -0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match="alpha"):
            ELUProx(bad)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="alpha"):
            CELUProx(bad)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="beta"):
            SoftplusProx(bad)
    with pytest.raises(ValueError, match="threshold"):
        SoftplusProx(1.0, threshold=10.0)
    assert SoftplusProx(1.0, threshold=float("inf")).threshold == float("inf")


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
    softplus = proximal_activation(nn.Softplus(beta=2.0, threshold=30.0))
    assert isinstance(softplus, SoftplusProx) and (softplus.beta, softplus.threshold) == (2.0, 30.0)
    elu = proximal_activation(nn.ELU(alpha=0.5))
    assert isinstance(elu, ELUProx) and elu.alpha == 0.5 and elu.domain == (-0.5, float("inf"))
    assert isinstance(proximal_activation(nn.ELU(alpha=0.0)), ReLUProx)  # alpha 0 is ReLU
    # CELU's slope e^{x/alpha} is at most 1 for every alpha > 0: a proximal map also for alpha > 1
    celu = proximal_activation(nn.CELU(alpha=3.0))
    assert isinstance(celu, CELUProx) and celu.alpha == 3.0
    assert isinstance(proximal_activation(nn.Softsign()), SoftsignProx)
    assert isinstance(proximal_activation(nn.Tanhshrink()), TanhshrinkProx)
    assert isinstance(proximal_activation(nn.LogSigmoid()), LogSigmoidProx)
    assert isinstance(proximal_activation(nn.Hardsigmoid(inplace=True)), HardsigmoidProx)
    assert repr(softplus) == "SoftplusProx(beta=2.0, threshold=30.0)" and repr(celu) == "CELUProx(alpha=3.0)"


_REFUSED = [
    (nn.GELU(), "not monotone"),
    (nn.SiLU(), "not monotone"),
    (nn.Mish(), "not monotone"),
    (nn.Hardswish(), "not monotone"),
    (nn.ELU(alpha=2.0), "not a proximal map"),
    (nn.ELU(alpha=1.5), "expansive"),
    (nn.ELU(alpha=-0.5), "not monotone"),
    (nn.CELU(alpha=-1.0), "alpha=-1.0"),
    (nn.SELU(), "not a proximal map"),
    (nn.Softmax(dim=1), "elementwise"),
    (nn.LogSoftmax(dim=1), "not a proximal map"),
    (nn.Softplus(beta=-1.0), "beta=-1.0"),
    (nn.Softplus(threshold=5.0), "threshold=5.0"),
    (nn.PReLU(2, init=1.5), "a slope above 1 is expansive"),  # nn.PReLU() (slope 0.25) is supported
    (nn.PReLU(init=-0.5), "not monotone"),
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
    for supported in ("ReLU", "LeakyReLU", "Hardtanh", "Sigmoid", "Tanh", "Softshrink", "Identity", "Softplus", "ELU",
                      "CELU", "Softsign", "Tanhshrink", "LogSigmoid", "Hardsigmoid"):
        assert supported in msg


@pytest.mark.parametrize("module", [nn.GELU(), nn.SiLU(), nn.Mish()], ids=["GELU", "SiLU", "Mish"])
def test_non_monotone_smooth_activations_name_the_nearest_supported_ones(module):
    with pytest.raises(ValueError, match="not monotone") as err:
        proximal_activation(module)
    assert "use one of them" in str(err.value)
    assert "nn.Softplus and nn.ELU" in str(err.value)


def test_expansive_elu_and_selu_name_the_alternative():
    with pytest.raises(ValueError, match=r"ELU.*alpha=1.5.*expansive.*nn.CELU"):
        proximal_activation(nn.ELU(alpha=1.5))
    with pytest.raises(ValueError, match=r"SELU.*expansive.*nn.ELU \(alpha <= 1\)"):
        proximal_activation(nn.SELU())


def test_subclass_overriding_forward_is_refused():
    class Shifted(nn.ReLU):
        def forward(self, x):
            return torch.relu(x) + 1.0

    with pytest.raises(ValueError, match="Shifted"):
        proximal_activation(Shifted())

    class Doubled(nn.Softplus):
        def forward(self, x):
            return 2.0 * super().forward(x)

    with pytest.raises(ValueError, match="Doubled.*overrides forward"):
        proximal_activation(Doubled())

    class ScaledELU(nn.ELU):
        def forward(self, x):
            return 1.5 * super().forward(x)

    with pytest.raises(ValueError, match="ScaledELU.*overrides forward"):
        proximal_activation(ScaledELU(alpha=0.5))


def test_is_activation():
    for m in (nn.ReLU(), nn.Sigmoid(), nn.GELU(), nn.Softmax(dim=1), nn.PReLU(), nn.ELU(), nn.ReLU6()):
        assert is_activation(m), m
    for m in (nn.Linear(2, 2), nn.Conv2d(1, 1, 3), nn.Identity(), nn.Flatten(), nn.MultiheadAttention(4, 2)):
        assert not is_activation(m), m
