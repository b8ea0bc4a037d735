"""The TV prox (lbinv.solvers.tv_prox): Beck & Teboulle's FGP on padded buffers.

Checked against FGP written out with the public operators (:meth:`TotalVariation.grad`, ``div``,
``project_dual``) step by step, and after many steps against Clarabel's TV denoising; and for what the
buffers must not do: alias the returned tensors, read the far edges of a dual given from outside, or
fail under autograd."""

import cvxpy as cp
import numpy as np
import pytest
import torch

from lbinv.regularizers import TotalVariation, project_box
from lbinv.solvers.loop import next_momentum
from lbinv.solvers.tv_prox import TVProx
from tests.solvers.test_inversion import difference_matrices

pytestmark = pytest.mark.usefixtures("float64_default")

SHAPES = [(3, 1, 7, 9), (2, 3, 5, 6), (2, 6, 5), (1, 1, 1, 4)]


def fgp_written_out(tv, bounds, lam, v, p, steps):
    """FGP (tv_prox's module docstring) with the public operators, per sample ``λ``."""
    lam = lam.reshape(-1, *([1] * (v.dim() - 1)))
    step = 1.0 / (8.0 * lam.unsqueeze(1))
    q, t = p, 1.0
    for _ in range(steps):
        x = project_box(v + lam * tv.div(q), bounds)
        p_new = tv.project_dual(q + step * tv.grad(x))
        t_new = next_momentum(t)
        q = p_new + ((t - 1.0) / t_new) * (p_new - p)
        p, t = p_new, t_new
    return project_box(v + lam * tv.div(p), bounds), p


def feasible_dual(tv, v, seed):
    """A random dual with ``‖p_ij‖ ≤ 1`` and the zero far edges every dual of ``∇x`` has."""
    g = torch.Generator().manual_seed(seed)
    p = tv.project_dual(2.0 * torch.randn(tv.zero_dual(v).shape, generator=g))
    p[:, 0, ..., -1, :] = 0.0
    p[:, 1, ..., :, -1] = 0.0
    return p


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("isotropic", [True, False])
@pytest.mark.parametrize("bounds", [None, (0.1, 0.8)])
def test_steps_match_fgp_written_out(shape, isotropic, bounds):
    tv = TotalVariation(isotropic)
    v = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    lam = torch.linspace(0.05, 0.3, shape[0])
    p0 = feasible_dual(tv, v, 2)
    prox = TVProx(tv, bounds, lam, v)
    for steps in (0, 1, 25):
        x, p = prox(v, p0, steps)
        x_ref, p_ref = fgp_written_out(tv, bounds, lam, v, p0, steps)
        torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-13)
        torch.testing.assert_close(p, p_ref, rtol=0, atol=1e-13)


def test_far_edges_of_a_given_dual_are_not_read():
    """``div`` reads ``p_v``'s last row and ``p_h``'s last column as 0: so does the prox."""
    tv = TotalVariation()
    v = torch.rand(2, 1, 6, 7)
    lam = torch.tensor([0.1, 0.2])
    p0 = feasible_dual(tv, v, 3)
    noisy = p0.clone()
    noisy[:, 0, ..., -1, :] = 0.5
    noisy[:, 1, ..., :, -1] = -0.5
    prox = TVProx(tv, None, lam, v)
    x, p = prox(v, noisy, 10)
    x_ref, p_ref = fgp_written_out(tv, None, lam, v, p0, 10)
    torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-13)
    torch.testing.assert_close(p, p_ref, rtol=0, atol=1e-13)


def test_returned_tensors_are_its_own():
    """The buffers are reused across calls: what one call returned must not change with the next."""
    tv = TotalVariation()
    v = torch.rand(2, 1, 6, 7)
    prox = TVProx(tv, (0.0, 1.0), torch.tensor([0.1, 0.2]), v)
    x, p = prox(v, tv.zero_dual(v), 5)
    x_kept, p_kept = x.clone(), p.clone()
    prox(torch.rand_like(v), p, 5)
    other = torch.rand(3, 1, 4, 4)
    prox.reweight(torch.tensor([0.1, 0.2, 0.3]))
    prox(other, tv.zero_dual(other), 5)  # another shape: new buffers
    assert torch.equal(x, x_kept) and torch.equal(p, p_kept)


def test_under_autograd_it_returns_plain_tensors():
    tv = TotalVariation()
    v = torch.rand(1, 1, 5, 5, requires_grad=True)
    x, p = TVProx(tv, None, torch.tensor([0.1]), v)(v * 2.0, tv.zero_dual(v), 3)
    assert not x.requires_grad and not p.requires_grad


@pytest.mark.parametrize("isotropic", [True, False])
def test_many_steps_reach_clarabel_denoising(isotropic):
    """``argmin_x ½‖x − v‖² + λ TV(x)`` on ``lo ≤ x ≤ hi``, per sample ``λ``: after 3000 steps from 0 the
    objective is within 1e−7 (relative) of Clarabel's and ``x`` within 1e−3."""
    h, w, bounds = 8, 9, (0.2, 0.9)
    tv = TotalVariation(isotropic)
    v = torch.rand(2, 1, h, w, generator=torch.Generator().manual_seed(4))
    lam = torch.tensor([0.05, 0.2])
    x, _ = TVProx(tv, bounds, lam, v)(v, tv.zero_dual(v), 3000)
    dv, dh = difference_matrices(h, w)
    for k in range(2):
        z = cp.Variable(h * w)
        tv_z = cp.sum(cp.norm(cp.vstack([dv @ z, dh @ z]), 2, axis=0)) if isotropic else cp.norm1(dv @ z) + cp.norm1(dh @ z)
        vk = v[k].flatten().numpy()
        problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(z - vk) + float(lam[k]) * tv_z), [z >= bounds[0], z <= bounds[1]])
        problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
        xk = x[k].flatten().numpy()
        gv, gh = dv @ xk, dh @ xk
        tv_x = np.sum(np.hypot(gv, gh)) if isotropic else np.sum(np.abs(gv) + np.abs(gh))
        value = 0.5 * np.sum((xk - vk) ** 2) + float(lam[k]) * tv_x
        assert abs(value - problem.value) <= 1e-7 * problem.value
        np.testing.assert_allclose(xk, z.value, atol=1e-3)
