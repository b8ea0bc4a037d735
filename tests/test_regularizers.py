"""Tests of lbinv.regularizers (total variation: adjointness, dual projections; the box projection)
and of the TV values and PSNR of lbinv.metrics on hand-computable images."""

import math

import pytest
import torch

from lbinv.metrics import psnr, relative_error, tv_anisotropic, tv_isotropic
from lbinv._checks import check_interval
from lbinv.regularizers import TotalVariation, project_box


@pytest.mark.parametrize("shape", [(3, 1, 7, 5), (2, 3, 4, 6), (4, 9, 8)])
def test_div_is_minus_grad_adjoint(shape):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    p = torch.randn((shape[0], 2, *shape[1:]), generator=g, dtype=torch.float64)
    tv = TotalVariation()
    lhs = (tv.grad(x) * p).sum()
    rhs = -(x * tv.div(p)).sum()
    assert abs(lhs - rhs) / (math.sqrt(8) * x.norm() * p.norm()) <= 1e-12


def test_grad_norm_below_sqrt8_and_close_to_it():
    """Power iteration on -div(grad(.)) : ‖∇‖² < 8, approaching 8 on a large grid."""
    tv = TotalVariation()
    x = torch.randn(1, 1, 64, 64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for _ in range(2000):
        x = -tv.div(tv.grad(x))
        x = x / x.norm()
    eig = (-tv.div(tv.grad(x)) * x).sum().item()
    assert 7.9 < eig <= 8.0


def test_tv_values_on_hand_computable_images():
    x = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    x[..., 2, 2] = 1.0  # one bright pixel: gradients (-1,-1), (1,0) above, (0,1) to the left
    assert tv_isotropic(x).item() == pytest.approx(2 + math.sqrt(2))
    assert tv_anisotropic(x).item() == pytest.approx(4.0)
    step = torch.zeros(2, 1, 4, 6, dtype=torch.float64)
    step[..., 3:] = 2.0  # vertical edge of height 2 in every one of the 4 rows
    assert tv_isotropic(step).tolist() == pytest.approx([8.0, 8.0])
    assert tv_anisotropic(step).tolist() == pytest.approx([8.0, 8.0])
    assert tv_isotropic(torch.full((3, 2, 4, 4), 7.0)).tolist() == [0.0, 0.0, 0.0]


def test_disc_of_the_circle_experiment_has_the_papers_tv():
    """MATH.md §4: the 64×64 disc has anisotropic TV 128 and isotropic TV 116.87."""
    grid = torch.linspace(-1, 1, 64, dtype=torch.float64)
    X, Y = torch.meshgrid(grid, grid, indexing="xy")
    disc = (X**2 + Y**2 <= 0.25).to(torch.float64)[None, None]
    assert disc.sum().item() == 788
    assert tv_anisotropic(disc).item() == pytest.approx(128.0)
    assert tv_isotropic(disc).item() == pytest.approx(116.87, abs=0.01)


def test_dual_projections():
    g = torch.Generator().manual_seed(2)
    p = 3 * torch.randn(4, 2, 1, 6, 6, generator=g, dtype=torch.float64)
    iso = TotalVariation(isotropic=True).project_dual(p)
    norms = iso.pow(2).sum(1).sqrt()
    assert norms.max() <= 1 + 1e-12
    inside = p.pow(2).sum(1).sqrt() <= 1
    assert torch.equal(iso[:, 0][inside], p[:, 0][inside])
    # direction is kept: iso * ‖p‖ == p * min(1, ‖p‖) per pixel
    orig = p.pow(2).sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(iso * orig, p * orig.clamp(max=1.0))
    aniso = TotalVariation(isotropic=False).project_dual(p)
    torch.testing.assert_close(aniso, p.clamp(-1, 1))


def test_tv_is_support_function_of_projected_set():
    """TV(x) = max_{‖z‖≤1} ⟨∇x, z⟩, attained at z = ∇x/‖∇x‖ (iso) or sign(∇x) (aniso)."""
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    for iso in (True, False):
        tv = TotalVariation(isotropic=iso)
        z = tv.project_dual(1e8 * tv.grad(x))
        torch.testing.assert_close((tv.grad(x) * z).flatten(1).sum(1), tv.value(x))


def test_box_projection():
    x = torch.linspace(-2, 2, 9)
    assert project_box(x, None) is x
    assert project_box(x, check_interval("bounds", (0, 1))).tolist() == x.clamp(0, 1).tolist()
    assert project_box(x, check_interval("bounds", (0, float("inf")))).tolist() == x.clamp(min=0).tolist()


def test_psnr_and_relative_error():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[0] += 0.1
    y[1] += 0.01
    assert psnr(y, x).tolist() == pytest.approx([20.0, 40.0], rel=1e-5)
    x1 = torch.ones(1, 4)
    assert relative_error(2 * x1, x1).item() == pytest.approx(1.0)
