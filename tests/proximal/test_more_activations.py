"""Tests of the proximal activations of issue 15 (softplus, log-sigmoid, ELU, CELU, softsign,
tanhshrink, hard sigmoid) beyond the generic checks of test_prox_maps.py, against independent
values: the dilogarithm against mpmath, Ψ against numerical quadrature of Ψ'(u) = σ⁻¹(u) − u,
Φ' = σ by finite differences, the Fenchel–Young equality that fixes their constants, B_Ψ at
extreme arguments, gradcheck, prox_{tΨ} at extreme v and t against bisection, softplus's
threshold, softsign's open domain, and a lifted network that reproduces its module.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lbinv.proximal import LogSigmoidProx, SoftplusProx, proximal_activation
from lbinv.proximal._dilog import li2_exp_neg, li2_exp_neg_folded, li2_neg_exp, li2_series
from tests.helpers import generator
from tests.proximal import references as ref

F64 = torch.float64

# (id, module factory, exact σ in NumPy, σ⁻¹ in NumPy (scalar-safe), interior sample of dom Ψ, prox reference)
CASES = [
    ("softplus1", lambda: nn.Softplus(), lambda z: ref.softplus(z), ref.softplus_inv, (1e-6, 0.05, 0.7, 3.0, 25.0),
     lambda v, t: ref.softplus_prox(v, t)),
    ("softplus2.5", lambda: nn.Softplus(2.5), lambda z: ref.softplus(z, 2.5), lambda u: ref.softplus_inv(u, 2.5),
     (1e-5, 0.1, 1.0, 9.0), lambda v, t: ref.softplus_prox(v, t, 2.5)),
    ("softplus0.3", lambda: nn.Softplus(0.3, 50.0), lambda z: ref.softplus(z, 0.3), lambda u: ref.softplus_inv(u, 0.3),
     (1e-4, 0.4, 4.0, 40.0), lambda v, t: ref.softplus_prox(v, t, 0.3)),
    ("logsigmoid", nn.LogSigmoid, lambda z: -ref.softplus(-z), lambda u: -ref.softplus_inv(-u),
     (-30.0, -2.0, -0.3, -1e-6), lambda v, t: -ref.softplus_prox(-np.asarray(v), t)),
    ("elu1", lambda: nn.ELU(), lambda z: ref.explinear(z, 1.0, 1.0), lambda u: ref.explinear_inv(u, 1.0, 1.0),
     (-0.999, -0.5, -1e-3, 0.2, 7.0), lambda v, t: ref.explinear_prox(v, t, 1.0, 1.0)),
    ("elu0.3", lambda: nn.ELU(0.3), lambda z: ref.explinear(z, 0.3, 1.0), lambda u: ref.explinear_inv(u, 0.3, 1.0),
     (-0.299, -0.1, 0.5), lambda v, t: ref.explinear_prox(v, t, 0.3, 1.0)),
    ("celu2.5", lambda: nn.CELU(2.5), lambda z: ref.explinear(z, 2.5, 2.5), lambda u: ref.explinear_inv(u, 2.5, 2.5),
     (-2.49, -1.0, -0.01, 3.0), lambda v, t: ref.explinear_prox(v, t, 2.5, 2.5)),
    ("celu0.4", lambda: nn.CELU(0.4), lambda z: ref.explinear(z, 0.4, 0.4), lambda u: ref.explinear_inv(u, 0.4, 0.4),
     (-0.39, -0.2, 1.0), lambda v, t: ref.explinear_prox(v, t, 0.4, 0.4)),
    ("softsign", nn.Softsign, lambda z: z / (1 + np.abs(z)), ref.softsign_inv, (-0.999, -0.5, 1e-4, 0.3, 0.99),
     ref.softsign_prox),
    ("tanhshrink", nn.Tanhshrink, ref.tanhshrink, ref.tanhshrink_inv, (-8.0, -0.5, -1e-3, 2e-5, 0.3, 4.0),
     ref.tanhshrink_prox),
    ("hardsigmoid", nn.Hardsigmoid, ref.hardsigmoid, ref.hardsigmoid_inv, (0.01, 0.4, 0.97), ref.hardsigmoid_prox),
]
IDS = [c[0] for c in CASES]
DILOG = {"softplus1", "softplus2.5", "softplus0.3", "logsigmoid"}


@pytest.fixture(params=CASES, ids=IDS)
def case(request):
    if request.param[0] in DILOG and ref.scipy_special is None:
        pytest.skip("scipy is not installed")
    return request.param


def _t(x, dtype=F64) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype).reshape(1, -1)


def _wide_z() -> np.ndarray:
    return np.array([-1e6, -1e3, -60.0, -25.0, -7.0, -1.0, -1e-3, -1e-9, 0.0, 1e-9, 1e-3, 0.5, 3.0, 19.9, 25.0, 60.0,
                     1e3, 1e6])


# ---------------------------------------------------------------------------------------------
# the dilogarithm
# ---------------------------------------------------------------------------------------------
def test_dilogarithm_against_mpmath():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    ulps = 4 * np.finfo(np.float64).eps  # a few ulps: libm's exp/log1p differ by an ulp across builds
    x = np.array([0.0, 1e-300, 1e-12, 1e-4, 0.1, 0.5, math.log(2.0), 0.7, 1.0, 2.5, 10.0, 36.0, 100.0, 700.0])
    plain, shifted = li2_exp_neg(_t(x))
    for xi, p, s in zip(x, plain.ravel().tolist(), shifted.ravel().tolist()):
        xm = mpmath.mpf(xi)
        exact = mpmath.polylog(2, mpmath.exp(-xm))
        assert abs(p - exact) <= ulps * abs(exact) + 1e-300, xi
        # Li₂(e^{−x}) − π²/6 near x = 0 takes more digits than 40: Euler's reflection in mpmath
        w = -mpmath.expm1(-xm)
        shifted_exact = xm * mpmath.log(w) - mpmath.polylog(2, w) if 0 < xi < 1 else exact - mpmath.zeta(2)
        assert abs(s - shifted_exact) <= ulps * abs(shifted_exact), xi
    z = np.array([-700.0, -40.0, -5.0, -1.0, -1e-10, 0.0, 1e-10, 0.3, 1.0, 5.0, 40.0, 700.0, 1e5])
    for zi, val in zip(z, li2_neg_exp(_t(z)).ravel().tolist()):
        exact = mpmath.polylog(2, -mpmath.exp(mpmath.mpf(zi)))
        assert abs(val - exact) <= ulps * abs(exact), zi
    u = np.linspace(-math.log(2.0), math.log(2.0), 41)
    for ui, val in zip(u, li2_series(_t(u)).ravel().tolist()):
        exact = mpmath.polylog(2, 1 - mpmath.exp(-mpmath.mpf(ui)))
        assert abs(val - exact) <= ulps * abs(exact) + 1e-300, ui


def test_folded_dilogarithm_is_the_two_forms():
    """li2_exp_neg_folded (one series) gives li2_exp_neg's shifted value below log 2 and its plain
    value above (both checked against mpmath above), to a few ulps or ε/2 absolutely (the rounding
    of e^{−x} near 1, for x ≪ 1)."""
    x = _t([0.0, 1e-300, 1e-12, 1e-4, 0.1, 0.5, 0.6931, 0.6932, 0.7, 1.0, 2.5, 10.0, 36.0, 100.0, 700.0])
    plain, shifted = li2_exp_neg(x)
    folded, near = li2_exp_neg_folded(x)
    assert torch.equal(near, (x < math.log(2.0)).double())
    expected = torch.where(near > 0, shifted, plain)
    eps = np.finfo(np.float64).eps
    assert bool(((folded - expected).abs() <= 4 * eps * expected.abs() + eps / 2).all())


def test_dilogarithm_series_in_float32():
    """The shorter series below float64 is accurate to a few float32 ulps on |u| ≤ log 2."""
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 30
    u = np.linspace(-math.log(2.0), math.log(2.0), 41).astype(np.float32)
    for ui, val in zip(u, li2_series(_t(u, torch.float32)).ravel().tolist()):
        exact = mpmath.polylog(2, 1 - mpmath.exp(-mpmath.mpf(float(ui))))
        assert abs(val - exact) <= 4 * np.finfo(np.float32).eps * abs(exact), ui


@pytest.mark.parametrize("act", [SoftplusProx(), SoftplusProx(2.5), LogSigmoidProx()], ids=repr)
def test_softplus_bregman_given_sigma_on_wide_arguments(act):
    """The one-series B_Ψ the solvers evaluate (σ given) against the two-form one, in float64, for y
    from the edge of dom Ψ (0, subnormal, tiny, near log 2) to large and z up to ±1e6."""
    sign = -1.0 if isinstance(act, LogSigmoidProx) else 1.0
    ys = sign * np.array([0.0, 1e-310, 1e-300, 1e-17, 1e-9, 1e-3, 0.3, 0.69, 0.7, 1.0, 5.0, 40.0, 1e3])
    zs = _wide_z()
    y = torch.tensor(np.repeat(ys[:, None], zs.size, axis=1), dtype=F64)
    z = torch.tensor(np.repeat(zs[None, :], ys.size, axis=0), dtype=F64)
    reference = act._bregman_elem(y, z)
    given = act._bregman_given_sigma(y, z, act(z))
    assert bool(((given - reference).abs() <= 1e-14 * (1.0 + reference.abs())).all())


def test_dilogarithm_derivatives_are_exact():
    """d/dx Li₂(−eˣ) = −log(1 + eˣ) and d/dx Li₂(e^{−x}) = log(1 − e^{−x}) through autograd."""
    x = torch.linspace(-40.0, 40.0, 801, dtype=F64).requires_grad_(True)
    (g,) = torch.autograd.grad(li2_neg_exp(x).sum(), x)
    torch.testing.assert_close(g, -torch.logaddexp(x.detach(), torch.zeros(())), rtol=1e-15, atol=1e-15)
    y = torch.linspace(1e-6, 40.0, 801, dtype=F64).requires_grad_(True)
    for k in (0, 1):
        (g,) = torch.autograd.grad(li2_exp_neg(y)[k].sum(), y)
        torch.testing.assert_close(g, torch.log(-torch.expm1(-y.detach())), rtol=1e-14, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# σ, Ψ and Φ
# ---------------------------------------------------------------------------------------------
def test_sigma_is_the_module_and_the_exact_map(case):
    """act(z) is the module's output bit for bit; the solver's exact σ (prox at a tensor t = 1)
    matches the NumPy σ to 1e−12, incl. large |z|, and softplus's threshold moves it by at most
    log(1 + e^{−threshold})/β."""
    _, module, sigma, *_ = case
    act, m = proximal_activation(module()), module()
    z = _t(_wide_z())
    assert torch.equal(act(z), m(z))
    exact = act.prox(z, torch.ones(1, 1, dtype=F64))
    torch.testing.assert_close(exact, _t(sigma(_wide_z())), rtol=1e-12, atol=1e-300)
    gap = (exact - m(z)).abs()
    bound = math.log1p(math.exp(-m.threshold)) / m.beta if isinstance(m, nn.Softplus) else 0.0
    rounding = 4 * torch.finfo(F64).eps * z.abs()  # the module's own: x − tanh x cancels for small x
    assert bool((gap <= bound + 1e-12 * m(z).abs() + rounding).all())


def test_psi_matches_quadrature(case):
    """Ψ(u) = ∫₀ᵘ (σ⁻¹(s) − s) ds (Ψ(0) = 0; from the lower edge where 0 is not interior)."""
    integrate = pytest.importorskip("scipy.integrate")
    name, module, _, inv, sample, _ = case
    act = proximal_activation(module())
    u = np.asarray(sample, dtype=np.float64)

    if name == "tanhshrink":  # a scalar root finder rather than the vectorised bisection
        optimize = pytest.importorskip("scipy.optimize")

        def inv(s):
            return optimize.brentq(lambda w: w - math.tanh(w) - s, s - 1.01, s + 1.01, xtol=1e-300, rtol=1e-15)

    def integral(a, b):
        value, _ = integrate.quad(lambda s: float(inv(np.float64(s))) - s, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)
        return value

    expected = [integral(0.0, ui) for ui in u]
    psi = act._psi_elem(_t(u)).ravel()
    torch.testing.assert_close(psi, torch.tensor(expected, dtype=F64), rtol=1e-10, atol=1e-12)


def test_phi_derivative_is_sigma(case):
    """Φ' = σ by central differences of Φ, and by autograd to round-off."""
    _, module, sigma, *_ = case
    act = proximal_activation(module())
    z = np.concatenate([np.linspace(-12.0, 12.0, 97), [-3.0 + 1e-3, 3.0 - 1e-3]])
    z = z[np.abs(np.abs(z) - 3.0) > 1e-4]  # off the hard sigmoid's kinks
    h = 1e-6  # error O(h) where σ has a kink (ELU at 0), O(h²) elsewhere, plus eps·|Φ|/h
    fd = (act._phi_elem(_t(z + h)) - act._phi_elem(_t(z - h))) / (2 * h)
    torch.testing.assert_close(fd.ravel(), torch.tensor(sigma(z), dtype=F64), rtol=1e-7, atol=1e-6)
    zz = _t(z).requires_grad_(True)
    (g,) = torch.autograd.grad(act._phi_elem(zz).sum(), zz)
    torch.testing.assert_close(g.ravel(), torch.tensor(sigma(z), dtype=F64), rtol=1e-13, atol=1e-15)


def test_fenchel_young_equality(case):
    """Φ(z) + ½s² + Ψ(s) = z·s at s = σ(z): Ψ and Φ are conjugate with the same constant."""
    _, module, sigma, *_ = case
    act = proximal_activation(module())
    z = np.linspace(-15.0, 15.0, 61)
    s = sigma(z)
    lhs = act._phi_elem(_t(z)) + 0.5 * _t(s) ** 2 + act._psi_elem(act.project_data(_t(s)))
    torch.testing.assert_close(lhs.ravel(), torch.tensor(z * s, dtype=F64), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# the Bregman loss
# ---------------------------------------------------------------------------------------------
def _data(act, sample) -> np.ndarray:
    lo, hi = act.domain
    y = list(sample)
    y += [b for b in (lo, hi) if math.isfinite(b) and act.project_data(torch.tensor(b, dtype=F64)) == b]
    return np.asarray(y, dtype=np.float64)


def test_bregman_at_extreme_arguments(case):
    """For every y in dom Ψ (edges included) and z up to ±1e6: B finite, B ≥ ½(y − σ(z))²,
    B(σ(z), z) = 0 to round-off, ∇_z B = σ(z) − y by autograd (no NaN)."""
    _, module, sigma, _, sample, _ = case
    act = proximal_activation(module())
    zs = _wide_z()
    ys = _data(act, sample)
    y = torch.tensor(np.repeat(ys[:, None], zs.size, axis=1), dtype=F64)
    z = torch.tensor(np.repeat(zs[None, :], ys.size, axis=0), dtype=F64).requires_grad_(True)
    b = act._bregman_elem(y, z)
    (g,) = torch.autograd.grad(b.sum(), z)
    s = torch.tensor(sigma(zs), dtype=F64).expand_as(y)
    assert torch.isfinite(b).all() and torch.isfinite(g).all()
    bound = 0.5 * (y - s) ** 2
    assert bool((b >= bound - 1e-12 * (1 + bound)).all()), (b - bound).min()
    torch.testing.assert_close(g, s - y, rtol=1e-12, atol=1e-12)
    at_sigma = act._bregman_elem(act.project_data(s[:1]), z.detach()[:1])
    assert bool((at_sigma.abs() <= 1e-15 * (1 + s[:1].abs())).all()), at_sigma


def test_gradcheck(case):
    """prox_{tΨ} in (v, t), B_Ψ in (y, z) and Ψ are differentiable, with the right first derivatives."""
    name, module, _, _, sample, _ = case
    act = proximal_activation(module())
    g = generator(7)
    v = (3.0 * torch.randn(2, 6, generator=g, dtype=F64)).requires_grad_(True)
    with torch.no_grad():  # keep the finite differences off kinks (ELU at 0, hard sigmoid at ±3, its clamp)
        v.add_(0.05 * torch.sign(v))
        if name == "hardsigmoid":
            v.copy_(torch.tensor([[-2.5, -1.0, 0.3, 1.7, 2.6, -0.4], [0.5, -2.0, 1.1, 2.2, -1.5, 0.1]], dtype=F64))
    t = torch.tensor([[0.3], [2.5]], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, t: act.prox(v, t), (v, t))
    lo, hi = act.domain  # finite differences need Ψ' to vary slowly: off the edges and tanhshrink's 0
    inner = [u for u in sample if min(abs(u - lo), abs(u - hi)) > 1e-2 and (name != "tanhshrink" or abs(u) > 1e-2)]
    y = torch.tensor([inner] * 2, dtype=F64, requires_grad=True)
    z = (2.0 * torch.randn(y.shape, generator=g, dtype=F64)).requires_grad_(True)
    with torch.no_grad():
        z.add_(0.05 * torch.sign(z))
    assert torch.autograd.gradcheck(lambda y, z: act.bregman(y, z), (y, z))
    assert torch.autograd.gradcheck(lambda y: act.psi(y), (y,))


# ---------------------------------------------------------------------------------------------
# prox_{tΨ}
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [1e-4, 1e-2, 0.5, 0.999, 1.5, 100.0, 1e4])
def test_prox_extreme_inputs(case, t):
    """prox_{tΨ}(v) for |v| up to 1e6 against bisection of the optimality condition."""
    _, module, _, _, _, prox_ref = case
    act = proximal_activation(module())
    v = np.array([-1e6, -1e3, -60.0, -5.0, -1.0, -1e-6, 0.0, 1e-6, 0.3, 0.7, 1.5, 5.0, 60.0, 1e3, 1e6])
    u = act.prox(_t(v), t).ravel()
    assert torch.isfinite(u).all()
    expected = prox_ref(v, t)
    np.testing.assert_allclose(u.numpy(), expected, rtol=1e-9, atol=1e-12)
    u32 = act.prox(_t(v, torch.float32), t).ravel().double()
    assert torch.isfinite(u32).all()
    np.testing.assert_allclose(u32.numpy(), prox_ref(v.astype(np.float32).astype(np.float64), t), rtol=2e-5,
                               atol=2e-6)
    lo, hi = act.domain
    assert bool(((u >= lo) & (u <= hi)).all())
    lo32, hi32 = (float(torch.tensor(b, dtype=torch.float32)) for b in (lo, hi))  # the bounds in float32
    assert bool(((u32 >= lo32) & (u32 <= hi32)).all())


# ---------------------------------------------------------------------------------------------
# particulars
# ---------------------------------------------------------------------------------------------
def test_softplus_threshold_only_changes_sigma_itself():
    """nn.Softplus returns x where βx > threshold; act(z) does too, everything else is exact."""
    module = nn.Softplus(beta=2.0, threshold=20.0)
    act = proximal_activation(module)
    z = torch.tensor([[9.0, 10.0, 10.5, 12.0, 30.0]], dtype=F64)
    assert torch.equal(act(z)[0, 2:], z[0, 2:])  # βz > 20: the identity
    assert torch.equal(act(z), module(z))
    exact = torch.logaddexp(2.0 * z, torch.zeros(())) / 2.0
    torch.testing.assert_close(act.prox(z, torch.ones(1, 1, dtype=F64)), exact, rtol=1e-15, atol=0)
    zz = z.clone().requires_grad_(True)
    y = torch.full_like(z, 3.0)
    (g,) = torch.autograd.grad(act.bregman(y, zz).sum(), zz)
    torch.testing.assert_close(g, exact - y, rtol=1e-14, atol=1e-14)
    assert float((act(z) - exact).abs().max()) <= math.exp(-20.0) / 2.0


def test_softsign_open_domain():
    """Ψ(±1) = ∞: data on ±1 are treated as the nearest representable values inside; beyond, +inf."""
    act = proximal_activation(nn.Softsign())
    z = torch.tensor([[-3.0, 0.0, 2.0, 1e8]], dtype=F64)
    inside = 1.0 - 2.0**-53
    at_edge = act.bregman(torch.tensor([[1.0, -1.0, 1.0, 1.0]], dtype=F64), z)
    near_edge = act.bregman(torch.tensor([[inside, -inside, inside, inside]], dtype=F64), z)
    assert torch.isfinite(at_edge).all()
    torch.testing.assert_close(at_edge, near_edge, rtol=1e-15, atol=0)
    assert math.isclose(float(act.psi(torch.tensor([[1.0]], dtype=F64))), 53 * math.log(2.0) - 1.5, rel_tol=1e-9)
    assert math.isclose(float(act.psi(torch.tensor([[-1.0]]))), 24 * math.log(2.0) - 1.5, rel_tol=1e-5)  # float32
    assert math.isinf(float(act.bregman(torch.tensor([[1.5]], dtype=F64), torch.zeros(1, 1, dtype=F64))))
    # the closed-form prox neither overflows nor leaves [−1, 1]
    for dtype, big in ((F64, 1e300), (torch.float32, 1e30)):
        v = torch.tensor([[-big, -1.0, 1.0, big]], dtype=dtype)
        for t in (1e-3, 0.5, 3.0, 1e3):
            u = act.prox(v, t)
            assert torch.isfinite(u).all() and bool((u.abs() <= 1).all())
            assert u[0, 0] == -u[0, 3] and u[0, 1] == -u[0, 2]


def test_tanhshrink_inverse_and_y_derivatives():
    """σ⁻¹ by safeguarded Newton (tiny to huge |y|), and ∂_y Ψ = tanh σ⁻¹(y), ∂_y B = σ⁻¹(y) − z."""
    act = proximal_activation(nn.Tanhshrink())
    y = np.array([-1e6, -40.0, -2.0, -1e-3, -1e-12, 0.0, 1e-20, 1e-9, 1e-3, 0.5, 3.0, 1e4])
    w = act._inverse(_t(y)).ravel().numpy()
    np.testing.assert_allclose(w, ref.tanhshrink_inv(y), rtol=1e-12, atol=1e-100)
    assert w[5] == 0.0
    yy = _t(y[np.abs(y) > 1e-6]).requires_grad_(True)
    z = torch.linspace(-3.0, 3.0, yy.shape[1], dtype=F64).reshape(1, -1)
    (gy,) = torch.autograd.grad(act.bregman(yy, z).sum(), yy)
    wy = torch.tensor(ref.tanhshrink_inv(y[np.abs(y) > 1e-6]), dtype=F64).reshape(1, -1)
    torch.testing.assert_close(gy, wy - z, rtol=1e-12, atol=1e-12)
    (gp,) = torch.autograd.grad(act.psi(yy).sum(), yy)
    torch.testing.assert_close(gp, torch.tanh(wy), rtol=1e-12, atol=1e-12)


def test_lifted_network_reproduces_the_module():
    """The lifted network of a stack of the new activations computes the module's output."""
    from lbinv import LiftedNetwork

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(6, 8), nn.Softplus(), nn.Linear(8, 8), nn.ELU(0.5), nn.Linear(8, 8), nn.CELU(2.0),
        nn.Linear(8, 8), nn.Softsign(), nn.Linear(8, 8), nn.Tanhshrink(), nn.Linear(8, 8), nn.LogSigmoid(),
        nn.Linear(8, 8), nn.Hardsigmoid(), nn.Linear(8, 4), nn.Softplus(beta=3.0),
    ).double().eval()
    x = 4.0 * torch.randn(5, 6, dtype=F64)
    with torch.no_grad():
        torch.testing.assert_close(LiftedNetwork.from_module(net).forward(x), net(x), rtol=1e-13, atol=1e-13)
