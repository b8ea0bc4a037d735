"""Symmetric Bregman distance of TV and its subgradients (MATH.md §10): cases with known subgradients
(constant images, step edges), monotonicity on random cases, and the optimality condition of an
actual single-layer solve."""

import math

import pytest
import torch
from torch import nn

from lbinv import LiftedNetwork, invert
from lbinv.metrics import (
    dual_subgradient,
    psnr,
    single_layer_subgradient,
    source_condition_subgradient,
    subgradient_gap,
    symmetric_bregman_tolerance,
    symmetric_bregman_tv,
    tv_anisotropic,
    tv_isotropic,
    tv_subgradient,
)
from lbinv.regularizers import TotalVariation

DT = torch.float64


def step(height: int, width: int, column: int, jump: float = 1.0) -> torch.Tensor:
    """(1, 1, H, W) image: 0 left of ``column``, ``jump`` from it on."""
    x = torch.zeros(1, 1, height, width, dtype=DT)
    x[..., column:] = jump
    return x


def step_dual(height: int, width: int, column: int) -> torch.Tensor:
    """q = (0, 1) on the column before the edge, 0 elsewhere: ⟨q, ∇x⟩ = TV(x), ‖q_ij‖ ≤ 1."""
    q = torch.zeros(1, 2, 1, height, width, dtype=DT)
    q[:, 1, ..., column - 1] = 1.0
    return q


def test_constant_images_have_zero_subgradient_and_zero_distance():
    x1, x2 = torch.full((2, 1, 6, 7), 3.0, dtype=DT), torch.full((2, 1, 6, 7), -1.5, dtype=DT)
    zero = torch.zeros_like(x1)
    assert symmetric_bregman_tv(x1, x2, zero, zero).tolist() == [0.0, 0.0]
    gap = subgradient_gap(zero, x1)
    assert gap.epsilon.tolist() == [0.0, 0.0] and gap.residual.tolist() == [0.0, 0.0]
    assert torch.equal(tv_subgradient(x1), zero)  # the minimal-norm subgradient of a constant is 0


@pytest.mark.parametrize("isotropic", [True, False])
def test_step_edge_with_explicit_dual_field(isotropic):
    H, W = 5, 8
    x1, q1 = step(H, W, 3), step_dual(H, W, 3)
    x2, q2 = step(H, W, 6), step_dual(H, W, 6)
    p1, p2 = dual_subgradient(q1), dual_subgradient(q2)
    # −div q is a dipole: −1 left of the edge, +1 right of it, per row
    assert p1[0, 0, :, 2].tolist() == [-1.0] * H and p1[0, 0, :, 3].tolist() == [1.0] * H
    gap = subgradient_gap(p1, x1, q1, isotropic=isotropic, max_iter=0)
    assert gap.epsilon.item() == 0.0 and gap.residual.item() == 0.0
    # ⟨p1, x2⟩ = ⟨q1, ∇x2⟩ = 0 (edges in different columns), ⟨p_i, x_i⟩ = TV(x_i) = H
    assert symmetric_bregman_tv(x1, x2, p1, p2).item() == pytest.approx(2 * H)
    assert symmetric_bregman_tv(x1, x1, p1, p1).item() == 0.0
    # without the field, FISTA finds one: p1 lies in the dual ball
    found = subgradient_gap(p1, x1, isotropic=isotropic, max_iter=300)
    assert found.residual.item() < 1e-6 and found.epsilon.item() < 1e-6


def test_step_edge_non_subgradients_are_flagged():
    H, W = 5, 8
    x, q = step(H, W, 3), step_dual(H, W, 3)
    p = dual_subgradient(q)
    wrong_sign = subgradient_gap(-p, x, -q, max_iter=0)  # in the dual ball, but ⟨−p, x⟩ = −TV(x)
    assert wrong_sign.residual.item() == 0.0 and wrong_sign.epsilon.item() == pytest.approx(2 * H)
    # a dipole of strength 2 needs a flux of 2H through the H unit-capacity edges between two columns
    too_large = subgradient_gap(2 * p, x, q, max_iter=500)
    assert too_large.residual.item() > 0.5
    assert too_large.relative.item() > 0.05


def test_minimal_norm_subgradient_of_a_step():
    H, W = 4, 9
    x = step(H, W, 4, jump=2.5)
    p, q = tv_subgradient(x, return_dual=True)
    gap = subgradient_gap(p, x, q, max_iter=0)
    assert gap.epsilon.item() < 1e-12 and gap.residual.item() < 1e-12
    # the field is pinned to 1 across the edge; in 1D per row the minimal-norm subgradient spreads
    # the dipole flatly: −1/4 on each of the 4 left pixels, +1/5 on each of the 5 right ones
    assert p[0, 0, 0, :4] == pytest.approx(torch.full((4,), -0.25, dtype=DT), abs=1e-6)
    assert p[0, 0, 0, 4:] == pytest.approx(torch.full((5,), 0.2, dtype=DT), abs=1e-6)
    assert p.norm() < dual_subgradient(step_dual(H, W, 4)).norm()


def random_piecewise(batch: int, generator: torch.Generator, size: int = 12) -> torch.Tensor:
    """Random images made of a few constant blocks (exact flat regions and edges)."""
    coarse = torch.randint(0, 4, (batch, 1, size // 4, size // 4), generator=generator).to(DT)
    return coarse.repeat_interleave(4, dim=-2).repeat_interleave(4, dim=-1)


def random_subgradient(x: torch.Tensor, generator: torch.Generator, isotropic: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A random element of ∂TV(x): q = ∇x/‖∇x‖ on edges, random in the dual ball elsewhere."""
    tv = TotalVariation(isotropic=isotropic)
    g = tv.grad(x)
    free = tv.project_dual(2 * torch.rand(g.shape, generator=generator, dtype=DT) - 1)
    if isotropic:
        norm = tv.pointwise_norm(g).unsqueeze(1)
        q = torch.where(norm > 0, g / norm.clamp_min(1e-300), free)
    else:
        q = torch.where(g != 0, torch.sign(g), free)
    return dual_subgradient(q), q


@pytest.mark.parametrize("isotropic", [True, False])
def test_symmetric_bregman_is_nonnegative_on_random_cases(isotropic):
    g = torch.Generator().manual_seed(0)
    x1, x2 = random_piecewise(64, g), random_piecewise(64, g)
    (p1, q1), (p2, q2) = random_subgradient(x1, g, isotropic), random_subgradient(x2, g, isotropic)
    for p, x, q in ((p1, x1, q1), (p2, x2, q2)):  # both are exact subgradients
        gap = subgradient_gap(p, x, q, isotropic=isotropic, max_iter=0)
        assert gap.epsilon.abs().max() < 1e-12 and gap.residual.max() < 1e-12
    d = symmetric_bregman_tv(x1, x2, p1, p2)
    assert d.min() >= -1e-10 and d.max() > 1.0
    # it is the sum of the two Bregman distances, each ≥ 0
    value = (lambda x: tv_isotropic(x)) if isotropic else (lambda x: tv_anisotropic(x))
    d12 = value(x1) - value(x2) - ((p2 * (x1 - x2)).flatten(1).sum(1))
    d21 = value(x2) - value(x1) - ((p1 * (x2 - x1)).flatten(1).sum(1))
    assert d12.min() >= -1e-10 and d21.min() >= -1e-10
    assert torch.allclose(d, d12 + d21, atol=1e-10)
    # smooth images: TV is differentiable where no gradient vanishes, p = −div(∇x/‖∇x‖)
    s1, s2 = torch.randn(16, 1, 7, 7, generator=g, dtype=DT), torch.randn(16, 1, 7, 7, generator=g, dtype=DT)
    ps1, ps2 = random_subgradient(s1, g, isotropic)[0], random_subgradient(s2, g, isotropic)[0]
    assert symmetric_bregman_tv(s1, s2, ps1, ps2).min() >= -1e-10
    # the minimal-norm subgradient of tv_subgradient is a subgradient too
    m1, m2 = tv_subgradient(x1, isotropic=isotropic, max_iter=50), tv_subgradient(x2, isotropic=isotropic, max_iter=50)
    assert symmetric_bregman_tv(x1, x2, m1, m2).min() >= -1e-10


def test_broadcasts_an_unbatched_reference():
    x1 = step(3, 6, 2).expand(4, 1, 3, 6)
    p1 = dual_subgradient(step_dual(3, 6, 2)).expand(4, 1, 3, 6)
    x2, p2 = step(3, 6, 4)[0], dual_subgradient(step_dual(3, 6, 4))[0]
    assert symmetric_bregman_tv(x1, x2, p1, p2).tolist() == pytest.approx([6.0] * 4)


@pytest.fixture(scope="module")
def single_layer_solve():
    """A 16×16 image through a random ReLU perceptron with 64 measurements, solved tightly."""
    torch.manual_seed(3)
    perceptron = nn.Sequential(nn.Linear(256, 64), nn.ReLU()).to(DT).requires_grad_(False)
    net = LiftedNetwork.from_module(perceptron, (1, 16, 16))
    x = torch.zeros(3, 1, 16, 16, dtype=DT)
    x[0, 0, 4:12, 4:12] = 1.0
    x[1, 0, 2:9, 6:15] = 1.0
    x[2, 0, 5:14, 1:7] = 0.5
    with torch.no_grad():
        y = (net(x) + 0.01 * torch.randn(3, 64, dtype=DT)).clamp_min(0.0)
        alpha = torch.tensor([3e-3, 1e-2, 3e-2], dtype=DT)
        res = invert(net, y, alpha=alpha, max_iter=6000, tol=1e-9, solver="pdhg")  # its dual: the certificates below
    return net, x, y, alpha, res


def test_optimality_condition_gives_a_subgradient_of_the_solution(single_layer_solve):
    net, _, y, alpha, res = single_layer_solve
    p_alpha = single_layer_subgradient(net, res.x, y, alpha)
    p_dual = dual_subgradient(res.dual)
    assert ((p_alpha - p_dual).flatten(1).norm(dim=1) / p_dual.flatten(1).norm(dim=1)).max() < 1e-5
    gap = subgradient_gap(p_alpha, res.x, res.dual, max_iter=0)
    assert gap.relative.max() < 2e-5
    # "up to solver accuracy": a rough solve is further from ∂TV(x_α)
    with torch.no_grad():
        rough = invert(net, y, alpha=alpha, max_iter=200, tol=0.0, solver="pdhg")
    rough_gap = subgradient_gap(single_layer_subgradient(net, rough.x, y, alpha), rough.x, rough.dual, max_iter=0)
    assert (rough_gap.relative > 10 * gap.relative).all()
    # also for the layer itself and a float α; a deeper network is refused
    p0 = single_layer_subgradient(net.layers[0], res.x[:1], y[:1], alpha[0].item())
    assert torch.allclose(p0, p_alpha[:1])
    deeper = LiftedNetwork.from_module(nn.Sequential(nn.Linear(256, 8), nn.ReLU(), nn.Linear(8, 4)).to(DT), (1, 16, 16))
    with pytest.raises(ValueError, match="one-layer"):
        single_layer_subgradient(deeper, res.x, y, alpha)
    with pytest.raises(TypeError, match="LiftedLayer"):
        single_layer_subgradient(nn.Linear(256, 64), res.x, y, alpha)


def test_source_condition_construction(single_layer_solve):
    """x† := x_{α₀}(y₀) satisfies the source condition with p† = Wᵀv†; the distance of a noisy
    reconstruction to it is nonnegative within the certified tolerance."""
    net, _, y0, alpha0, ref = single_layer_solve
    with torch.no_grad():
        x_true = ref.x
        y = net(x_true)
        v = (y0 - y) / alpha0[:, None]
        p_true = source_condition_subgradient(net, v)
        assert torch.allclose(p_true, single_layer_subgradient(net, x_true, y0, alpha0))
        y_delta = (y + 1e-3 * torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=DT)).clamp_min(0)
        alpha = torch.full((3,), 2e-3, dtype=DT)
        res = invert(net, y_delta, alpha=alpha, max_iter=6000, tol=1e-9, solver="pdhg")
        p_alpha = single_layer_subgradient(net, res.x, y_delta, alpha)
        d = symmetric_bregman_tv(res.x, x_true, p_alpha, p_true)
        slack = symmetric_bregman_tolerance(
            subgradient_gap(p_alpha, res.x, res.dual, max_iter=0), subgradient_gap(p_true, x_true, ref.dual, max_iter=0), res.x, x_true
        )
    assert (slack < 1e-2 * d.abs()).all()
    assert (d >= -slack).all() and (d > 0).all()
    assert math.isfinite(d.sum().item()), (d, slack)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_psnr_with_a_range_matches_torchmetrics(dtype):
    """psnr(x, y, (lo, hi)) is what the callback logs: torchmetrics' per-sample PSNR, both images
    clamped into the range (an independent implementation); +inf for identical images."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    g = torch.Generator().manual_seed(0)
    if dtype == torch.uint8:
        x = torch.randint(0, 256, (3, 1, 6, 6), generator=g, dtype=dtype)
        y = torch.randint(0, 256, (3, 1, 6, 6), generator=g, dtype=dtype)
        data_range = 255.0
    else:
        x = torch.rand(3, 1, 6, 6, generator=g, dtype=dtype)
        y = (1.4 * torch.rand(3, 1, 6, 6, generator=g, dtype=dtype) - 0.2)  # partly outside [0, 1]
        data_range = (0.0, 1.0)
    expected = peak_signal_noise_ratio(x, y, data_range=data_range, reduction="none", dim=(1, 2, 3))
    got = psnr(x, y, data_range if isinstance(data_range, float) else list(data_range))  # any pair, a list too
    torch.testing.assert_close(got.to(expected.dtype), expected, rtol=1e-6, atol=1e-5)
    assert psnr(x, x.clone(), data_range).isinf().all()
    if not isinstance(data_range, float):
        assert not torch.allclose(psnr(x, y, 1.0), expected)  # without the clamp the numbers differ
    with pytest.raises(ValueError, match="data_range: expected lo < hi"):
        psnr(x, y, (1.0, 0.0))
    with pytest.raises(ValueError, match="data_range: expected a number or a pair"):
        psnr(x, y, None)
