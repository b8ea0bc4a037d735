"""Tests of PReLUProx (nn.PReLU: a LeakyReLU with a learned slope per channel, MATH.md §2's LeakyReLU row
per channel) against independent values: a brute-force minimisation of the prox objective on a grid,
the optimality condition, torch's own nn.PReLU, Ψ and Φ written here in NumPy from the closed forms,
and autograd for ∇_z B; and of what proximal_activation makes of nn.PReLU (and what it refuses)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from lbinv.proximal import LeakyReLUProx, PReLUProx, ReLUProx, proximal_activation
from tests.helpers import F64, randn

SLOPES = [0.05, 0.3, 0.5, 1.0]  # per channel; 1.0 is the identity on its channel


def _prelu_module(slopes, dtype=F64) -> nn.PReLU:
    module = nn.PReLU(len(slopes)).to(dtype)
    with torch.no_grad():
        module.weight.copy_(torch.tensor(slopes, dtype=dtype))
    return module


def _per_channel(values, ndim: int) -> np.ndarray:
    """Per-channel numbers shaped (C, 1, ..., 1) to broadcast against (B, C, *rest) of ``ndim`` dims."""
    return np.asarray(values, dtype=np.float64).reshape(-1, *[1] * (ndim - 2))


def _psi_ref(u: np.ndarray, slopes) -> np.ndarray:
    a = _per_channel(slopes, u.ndim)
    return 0.5 * (1 - a) / a * np.minimum(u, 0) ** 2


def _phi_ref(z: np.ndarray, slopes) -> np.ndarray:
    a = _per_channel(slopes, z.ndim)
    return 0.5 * np.maximum(z, 0) ** 2 + 0.5 * a * np.minimum(z, 0) ** 2


# ---------------------------------------------------------------------------------------------
# the proximal map
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.01, 0.4, 1.0, 3.0, 50.0])
def test_prox_is_the_grid_argmin_per_channel(t):
    """prox_{tΨ_c}(v) = argmin_u ½(u − v)² + tΨ_c(u), found by brute force on a grid of step 1e−4."""
    prox = PReLUProx(torch.tensor(SLOPES, dtype=F64))
    v = torch.linspace(-3.0, 2.0, 11, dtype=F64).expand(1, len(SLOPES), 11)  # (B, C, L)
    got = prox.prox(v, t).numpy()[0]
    grid = np.linspace(-4.0, 3.0, 70001)
    for c, a in enumerate(SLOPES):
        objective = 0.5 * (grid[None, :] - v[0, c].numpy()[:, None]) ** 2 + t * 0.5 * (1 - a) / a * np.minimum(grid, 0) ** 2
        argmin = grid[objective.argmin(axis=1)]
        np.testing.assert_allclose(got[c], argmin, rtol=0, atol=1.01e-4)


def test_prox_satisfies_the_optimality_condition_with_a_tensor_step():
    """u = prox_{tΨ}(v) iff v − u = tΨ'(u) = t·c_c·min(u, 0), with a step t per sample (B, 1, 1, 1)."""
    prox = PReLUProx(torch.tensor(SLOPES, dtype=F64))
    v = 3.0 * randn(3, 4, 5, 5, seed=1)
    t = torch.tensor([0.02, 1.0, 7.0], dtype=F64).reshape(3, 1, 1, 1)
    u = prox.prox(v, t)
    c = torch.tensor([(1 - a) / a for a in SLOPES], dtype=F64).reshape(1, 4, 1, 1)
    torch.testing.assert_close(v - u, t * c * u.clamp(max=0.0), rtol=1e-13, atol=1e-13)
    assert bool(((u >= 0) == (v >= 0)).all())  # the sign is kept
    for i in range(3):  # each sample with its own step, as a Python float
        torch.testing.assert_close(u[i : i + 1], prox.prox(v[i : i + 1], float(t[i])), rtol=1e-15, atol=1e-15)
    with pytest.raises(ValueError, match="t:"):
        prox.prox(v, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 4, 6, 6), (3, 4), (2, 4, 7)], ids=["conv2d", "dense", "conv1d"])
def test_sigma_is_torchs_prelu(shape, dtype):
    module = _prelu_module(SLOPES, dtype)
    prox = PReLUProx(module.weight)
    z = randn(*shape, seed=2, dtype=dtype)
    with torch.no_grad():
        want = module(z)
    assert torch.equal(prox(z), want) and torch.equal(prox.prox(z, 1.0), want)
    # t = 1 as a tensor takes the masked-free path: the same values up to rounding
    torch.testing.assert_close(prox.prox(z, torch.ones(shape[0], *[1] * (len(shape) - 1), dtype=dtype)), want)


def test_a_single_slope_is_leaky_relu_on_any_shape():
    prox, leaky = PReLUProx(torch.tensor([0.2], dtype=F64)), LeakyReLUProx(0.2)
    for shape in [(3,), (2, 5), (2, 3, 4, 4)]:
        v = randn(*shape, seed=3)
        for t in (0.3, 1.0, torch.full((shape[0], *[1] * (len(shape) - 1)), 2.0, dtype=F64)):
            torch.testing.assert_close(prox.prox(v, t), leaky.prox(v, t), rtol=1e-15, atol=1e-15)
        if len(shape) > 1:
            y = randn(*shape, seed=4)
            torch.testing.assert_close(prox.bregman(y, v), leaky.bregman(y, v), rtol=1e-13, atol=1e-14)


def test_wrong_number_of_channels_is_a_clear_error():
    prox = PReLUProx(torch.tensor(SLOPES, dtype=F64))
    with pytest.raises(ValueError, match=r"PReLU with 4 slopes.*\(B, 4, \.\.\.\), got samples of shape \(3, 5\)"):
        prox(randn(2, 3, 5))
    with pytest.raises(ValueError, match=r"got samples of shape \(\)"):
        prox(randn(4))
    prox.check_shape((4, 6, 6))  # what lifting asks: fine
    with pytest.raises(ValueError, match=r"got samples of shape \(6, 4\)"):
        prox.check_shape((6, 4))


# ---------------------------------------------------------------------------------------------
# Ψ, Φ and the Bregman loss
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 4, 5, 5), (6, 4)], ids=["conv", "dense"])
def test_psi_and_bregman_match_the_closed_forms(shape):
    prox = PReLUProx(torch.tensor(SLOPES, dtype=F64))
    y, z = 2.0 * randn(*shape, seed=5), 3.0 * randn(*shape, seed=6)
    yn, zn = y.numpy(), z.numpy()
    psi = _psi_ref(yn, SLOPES).reshape(shape[0], -1).sum(1)
    torch.testing.assert_close(prox.psi(y), torch.from_numpy(psi), rtol=1e-12, atol=1e-12)
    # B = ½y² + Ψ(y) + Φ(z) − yz, from the NumPy Ψ and Φ
    generic = (0.5 * yn**2 + _psi_ref(yn, SLOPES) + _phi_ref(zn, SLOPES) - yn * zn).reshape(shape[0], -1).sum(1)
    bregman = prox.bregman(y, z)
    torch.testing.assert_close(bregman, torch.from_numpy(generic), rtol=1e-11, atol=1e-11)
    # B ≥ ½‖y − σ(z)‖², with equality to 0 at y = σ(z)
    sigma = torch.from_numpy(np.where(zn >= 0, zn, _per_channel(SLOPES, len(shape)) * zn))
    lower = 0.5 * ((y - sigma) ** 2).reshape(shape[0], -1).sum(1)
    assert bool((bregman >= lower - 1e-12).all()) and bool((bregman - lower).max() > 1e-3)
    assert float(prox.bregman(sigma, z).abs().max()) == 0.0


def test_bregman_gradient_in_z_is_sigma_minus_y():
    prox = PReLUProx(torch.tensor(SLOPES, dtype=F64))
    y = 2.0 * randn(2, 4, 3, 3, seed=7)
    z = (3.0 * randn(2, 4, 3, 3, seed=8)).requires_grad_(True)
    (grad,) = torch.autograd.grad(prox.bregman(y, z).sum(), z)
    with torch.no_grad():
        want = nn.functional.prelu(z, torch.tensor(SLOPES, dtype=F64)) - y
    torch.testing.assert_close(grad, want, rtol=1e-13, atol=1e-13)


def test_inference_mode_first_then_autograd():
    """The cast slopes are cached; made under torch.inference_mode they would break later autograd."""
    prox = PReLUProx(torch.tensor(SLOPES, dtype=F64))
    y = randn(2, 4, 3, seed=9)
    with torch.inference_mode():
        prox.bregman(y, y)
        prox.prox(y, 0.5)
    z = randn(2, 4, 3, seed=10).requires_grad_(True)
    (grad,) = torch.autograd.grad(prox.bregman(y, z).sum(), z)
    torch.testing.assert_close(grad, prox(z.detach()) - y)


# ---------------------------------------------------------------------------------------------
# nn.PReLU -> ProxActivation, and the refusals
# ---------------------------------------------------------------------------------------------
def test_mapping_of_prelu_modules():
    assert isinstance(proximal_activation(nn.PReLU()), LeakyReLUProx)  # one slope, 0.25 at init
    assert proximal_activation(nn.PReLU()).negative_slope == 0.25
    assert isinstance(proximal_activation(nn.PReLU(3, init=0.1)), LeakyReLUProx)  # all equal
    assert isinstance(proximal_activation(nn.PReLU(3, init=0.0)), ReLUProx)  # all 0
    assert isinstance(proximal_activation(_prelu_module([0.0])), ReLUProx)
    module = _prelu_module(SLOPES)
    prox = proximal_activation(module)
    assert isinstance(prox, PReLUProx) and prox.weight.tolist() == SLOPES
    assert repr(prox) == "PReLUProx(weight=[0.05, 0.3, 0.5, 1])"
    with torch.no_grad():
        module.weight.mul_(0.5)  # training goes on: the lifted map keeps the slopes it was made with
    assert prox.weight.tolist() == SLOPES and not prox.weight.requires_grad
    assert repr(PReLUProx(torch.linspace(0.1, 0.9, 9))) == "PReLUProx(9 slopes in [0.1, 0.9])"


@pytest.mark.parametrize(
    "slopes, pattern",
    [
        ([0.2, 1.5, 0.3, 1.25], r"channels 1 \(slope 1\.5\), 3 \(slope 1\.25\): a slope above 1 is expansive"),
        ([0.2, -0.1], r"channel 1 \(slope -0\.1\): a negative slope is not monotone"),
        ([1.5], r"channel 0 \(slope 1\.5\): a slope above 1 is expansive"),
        ([0.2, 0.0, 0.3], r"channel 1 \(slope 0\): slope 0 makes a channel a ReLU.*nn\.ReLU"),
        ([float("nan"), 0.5], r"channel 0 \(slope nan\)"),
    ],
    ids=["expansive", "negative", "single-expansive", "mixed-zero", "nan"],
)
def test_refusals_name_prelu_the_channels_and_their_slopes(slopes, pattern):
    module = _prelu_module(slopes, torch.float32)
    with pytest.raises(ValueError, match=r"PReLU\(num_parameters=\d+\) is not a proximal map") as err:
        proximal_activation(module)
    msg = str(err.value)
    assert re.search(pattern, msg), msg
    assert "every learned slope in (0, 1]" in msg and "Supported activations" in msg
    with pytest.raises(ValueError, match="PReLUProx: every slope must lie in"):
        PReLUProx(module.weight)


def test_many_offending_channels_are_counted():
    module = nn.PReLU(20, init=2.0)
    with torch.no_grad():
        module.weight[0] = 0.5
    with pytest.raises(ValueError, match=r"channels 1 \(slope 2\), 2 \(slope 2\), .*\(19 channels in all\)"):
        proximal_activation(module)
