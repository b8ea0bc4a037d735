"""Tests of the proximal maps of lbinv.proximal (base, piecewise, smooth, smooth_unbounded) against
independent values (MATH.md §2).

References are written here in NumPy straight from the MATH.md table (Ψ, Φ, closed-form
prox), from torch's own activation modules (σ), from the optimality conditions of the prox,
from a bisection solver in the primal variable u (for sigmoid/tanh prox), and from closed
forms of the Bernoulli KL divergence at the domain edges. The activations of issue 15
(softplus, log-sigmoid, ELU, CELU, softsign, tanhshrink, hard sigmoid) take their references
from tests/proximal/references.py (SciPy's dilogarithm, closed forms, bisection) and run
through the same generic checks; tests/proximal/test_more_activations.py has their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from lbinv.proximal import (
    CELUProx,
    ClampProx,
    ELUProx,
    HardsigmoidProx,
    IdentityProx,
    LeakyReLUProx,
    LogSigmoidProx,
    ProxActivation,
    ReLUProx,
    SigmoidProx,
    SoftplusProx,
    SoftshrinkProx,
    SoftsignProx,
    TanhProx,
    TanhshrinkProx,
    proximal_activation,
)
from tests.helpers import generator
from tests.proximal import references as refs

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: {"rtol": 2e-5, "atol": 2e-6}, torch.float64: {"rtol": 1e-11, "atol": 1e-12}}


# ---------------------------------------------------------------------------------------------
# independent NumPy references (float64), straight from the MATH.md table
# ---------------------------------------------------------------------------------------------
def _xlogx(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)


def _logit(u):
    with np.errstate(divide="ignore"):
        return np.log(u) - np.log1p(-u)


def _sigmoid_prox_ref(v, t):
    return refs.prox_by_bisection(_logit, v, t, 0.0, 1.0)


def _tanh_prox_ref(v, t):
    with np.errstate(divide="ignore"):
        return refs.prox_by_bisection(np.arctanh, v, t, -1.0, 1.0)


def _tanh_psi_ref(u):
    # MATH.md form u·artanh(u) + ½(log(1 − u²) − u²); limit log 2 − ½ at u = ±1
    inner = np.abs(u) < 1
    us = np.where(inner, u, 0.0)
    val = us * np.arctanh(us) + 0.5 * (np.log1p(-us * us) - us * us)
    return np.where(inner, val, math.log(2.0) - 0.5)


@dataclass
class Spec:
    id: str
    module: Callable[[], nn.Module]
    cls: type
    lo: float
    hi: float
    psi: Callable  # Ψ on dom Ψ
    phi: Callable  # Φ = (½(·)² + Ψ)*, used for moderate |z|
    prox: Callable  # prox of tΨ
    kind: str  # "smooth" | "indicator" | "l1"
    dpsi: Callable | None = None  # Ψ' for smooth Ψ (interior of the domain)
    lam: float = 0.0
    sigma: Callable | None = None  # σ = Φ' exactly, where the torch module rounds it off (softplus)
    open_domain: bool = False  # Ψ = +inf on the edges of the domain (softsign)


def _leaky(a: float) -> Spec:
    c = (1 - a) / a
    return Spec(
        f"leaky{a}",
        lambda: nn.LeakyReLU(a),
        LeakyReLUProx,
        -math.inf,
        math.inf,
        psi=lambda u: 0.5 * c * np.minimum(u, 0) ** 2,
        phi=lambda z: 0.5 * np.maximum(z, 0) ** 2 + 0.5 * a * np.minimum(z, 0) ** 2,
        prox=lambda v, t: np.where(v >= 0, v, v / (1 + t * c)),
        kind="smooth",
        dpsi=lambda u: c * np.minimum(u, 0),
    )


def _clamp(lo: float, hi: float, module: Callable[[], nn.Module], name: str) -> Spec:
    def phi(z):
        s = np.clip(z, lo, hi)
        return z * s - 0.5 * s * s

    return Spec(
        name,
        module,
        ReLUProx if name == "relu" else ClampProx,
        lo,
        hi,
        psi=lambda u: np.zeros_like(u),
        phi=phi,
        prox=lambda v, t: np.clip(v, lo, hi) + 0 * t,
        kind="indicator",
    )


LAM = 0.5
SPECS = [
    _clamp(0.0, math.inf, nn.ReLU, "relu"),
    _leaky(0.1),
    _leaky(0.5),
    _clamp(-1.0, 1.0, nn.Hardtanh, "hardtanh"),
    _clamp(-0.5, 2.0, lambda: nn.Hardtanh(-0.5, 2.0), "hardtanh_asym"),
    _clamp(0.0, 6.0, nn.ReLU6, "relu6"),
    Spec(
        "sigmoid",
        nn.Sigmoid,
        SigmoidProx,
        0.0,
        1.0,
        psi=lambda u: _xlogx(u) + _xlogx(1 - u) - 0.5 * u * u,
        phi=lambda z: np.log1p(np.exp(z)),
        prox=_sigmoid_prox_ref,
        kind="smooth",
        dpsi=lambda u: _logit(u) - u,
    ),
    Spec(
        "tanh",
        nn.Tanh,
        TanhProx,
        -1.0,
        1.0,
        psi=_tanh_psi_ref,
        phi=lambda z: np.log(np.cosh(z)),
        prox=_tanh_prox_ref,
        kind="smooth",
        dpsi=lambda u: np.arctanh(u) - u,
    ),
    Spec(
        "softshrink",
        lambda: nn.Softshrink(LAM),
        SoftshrinkProx,
        -math.inf,
        math.inf,
        psi=lambda u: LAM * np.abs(u),
        phi=lambda z: 0.5 * np.maximum(np.abs(z) - LAM, 0) ** 2,
        prox=lambda v, t: np.sign(v) * np.maximum(np.abs(v) - t * LAM, 0),
        kind="l1",
        lam=LAM,
    ),
    Spec(
        "identity",
        nn.Identity,
        IdentityProx,
        -math.inf,
        math.inf,
        psi=lambda u: np.zeros_like(u),
        phi=lambda z: 0.5 * z * z,
        prox=lambda v, t: v + 0 * t,
        kind="smooth",
        dpsi=lambda u: np.zeros_like(u),
    ),
]


def _softplus(beta: float, threshold: float = 20.0) -> Spec:
    return Spec(
        f"softplus{beta}",
        lambda: nn.Softplus(beta, threshold),
        SoftplusProx,
        0.0,
        math.inf,
        psi=lambda u: refs.softplus_psi(u, beta),
        phi=lambda z: refs.softplus_phi(z, beta),
        prox=lambda v, t: refs.softplus_prox(v, t, beta),
        kind="smooth",
        dpsi=lambda u: refs.softplus_dpsi(u, beta),
        sigma=lambda z: refs.softplus(z, beta),
    )


def _explinear(name: str, alpha: float) -> Spec:
    c = 1.0 if name == "elu" else alpha
    return Spec(
        f"{name}{alpha}",
        (lambda: nn.ELU(alpha)) if name == "elu" else (lambda: nn.CELU(alpha)),
        ELUProx if name == "elu" else CELUProx,
        -alpha,
        math.inf,
        psi=lambda u: refs.explinear_psi(u, alpha, c),
        phi=lambda z: refs.explinear_phi(z, alpha, c),
        prox=lambda v, t: refs.explinear_prox(v, t, alpha, c),
        kind="smooth",
        dpsi=lambda u: refs.explinear_dpsi(u, alpha, c),
    )


NEEDS_SCIPY = pytest.mark.skipif(refs.scipy_special is None, reason="scipy (the dilogarithm reference) is not installed")
NEW_SPECS = [
    _softplus(1.0),
    _softplus(2.5),
    _softplus(0.5, threshold=40.0),
    Spec(
        "logsigmoid",
        nn.LogSigmoid,
        LogSigmoidProx,
        -math.inf,
        0.0,
        psi=lambda u: refs.softplus_psi(-u),
        phi=lambda z: refs.softplus_phi(-z),
        prox=lambda v, t: -refs.softplus_prox(-np.asarray(v), t),
        kind="smooth",
        dpsi=lambda u: -refs.softplus_dpsi(-u),
    ),
    _explinear("elu", 1.0),
    _explinear("elu", 0.4),
    _explinear("celu", 0.5),
    _explinear("celu", 2.5),
    Spec(
        "softsign",
        nn.Softsign,
        SoftsignProx,
        -1.0,
        1.0,
        psi=refs.softsign_psi,
        phi=refs.softsign_phi,
        prox=refs.softsign_prox,
        kind="smooth",
        dpsi=lambda u: refs.softsign_inv(u) - u,
        open_domain=True,
    ),
    Spec(
        "tanhshrink",
        nn.Tanhshrink,
        TanhshrinkProx,
        -math.inf,
        math.inf,
        psi=refs.tanhshrink_psi,
        phi=refs.tanhshrink_phi,
        prox=refs.tanhshrink_prox,
        kind="smooth",
        dpsi=refs.tanhshrink_dpsi,
    ),
    Spec(
        "hardsigmoid",
        nn.Hardsigmoid,
        HardsigmoidProx,
        0.0,
        1.0,
        psi=refs.hardsigmoid_psi,
        phi=refs.hardsigmoid_phi,
        prox=refs.hardsigmoid_prox,
        kind="smooth",
        dpsi=lambda u: refs.hardsigmoid_inv(u) - u,
    ),
]
SPECS += NEW_SPECS
SPEC_IDS = [s.id for s in SPECS]
T_VALUES = [0.05, 0.3, 1.0, 2.5, 10.0]


_PARAMS = [pytest.param(s, marks=NEEDS_SCIPY) if "softplus" in s.id or s.id == "logsigmoid" else s for s in SPECS]


@pytest.fixture(params=_PARAMS, ids=SPEC_IDS)
def spec(request) -> Spec:
    return request.param


def _act(spec: Spec) -> ProxActivation:
    act = proximal_activation(spec.module())
    assert isinstance(act, spec.cls)
    return act


def _z(dtype, device, scale=3.0, shape=(6, 2, 5), seed=0) -> torch.Tensor:
    return (scale * torch.randn(shape, generator=generator(seed), dtype=torch.float64)).to(dtype=dtype, device=device)


def _y_in_domain(spec: Spec, dtype, device, shape=(6, 2, 5), seed=1, edges=True) -> torch.Tensor:
    """Random data in dom Ψ, a share of it on the edges of the domain."""
    g = generator(seed)
    lo, hi = spec.lo, spec.hi
    if math.isinf(lo) and math.isinf(hi):
        y = 2.0 * torch.randn(shape, generator=g, dtype=torch.float64)
    elif math.isinf(hi):
        y = torch.rand(shape, generator=g, dtype=torch.float64).mul(4.0).add(lo)
    elif math.isinf(lo):
        y = torch.rand(shape, generator=g, dtype=torch.float64).mul(-4.0).add(hi)
    else:
        y = lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)
    if edges and not spec.open_domain:  # an open domain has no edges in dom Ψ
        flat = y.view(-1)
        if not math.isinf(lo):
            flat[::7] = lo
        if not math.isinf(hi):
            flat[3::7] = hi
    return y.to(dtype=dtype, device=device)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().double().numpy()


def _close(actual: torch.Tensor, expected, dtype, scale=1.0):
    expected = torch.as_tensor(np.asarray(expected, dtype=np.float64))
    tol = TOL[dtype]
    torch.testing.assert_close(
        actual.detach().cpu().double(), expected, rtol=tol["rtol"] * scale, atol=tol["atol"] * scale
    )


# ---------------------------------------------------------------------------------------------
# σ = prox_Ψ equals the torch activation
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_call_and_prox_t1_equal_torch_activation(spec, dtype, device):
    act = _act(spec)
    module = spec.module()
    z = _z(dtype, device)
    z.view(-1)[:4] = torch.tensor([1e3, -1e3, 0.0, 40.0], dtype=dtype)
    expected = module(z)
    for out in (act(z), act.prox(z, 1.0), act.prox(z)):
        assert out.dtype == dtype and out.device == z.device and out.shape == z.shape
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# prox of tΨ
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("t", T_VALUES)
def test_prox_matches_reference(spec, dtype, device, t):
    act = _act(spec)
    v = _z(dtype, device, scale=3.0)
    u = act.prox(v, t)
    assert u.dtype == dtype and u.device == v.device and u.shape == v.shape
    # the reference is evaluated at the (rounded) input actually passed
    _close(u, spec.prox(_np(v), t), dtype, scale=10.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prox_tensor_t_per_sample(spec, dtype):
    act = _act(spec)
    v = _z(dtype, "cpu", scale=4.0)
    t = torch.tensor([0.05, 0.3, 1.0, 2.5, 10.0, 1e-3], dtype=dtype).view(-1, 1, 1)
    u = act.prox(v, t)
    assert u.shape == v.shape and u.dtype == dtype
    for b in range(v.shape[0]):  # per-sample float-t calls as the reference
        _close(u[b], act.prox(v[b : b + 1], float(t[b])).squeeze(0), dtype, scale=10.0)
        _close(u[b], spec.prox(_np(v[b]), float(t[b])), dtype, scale=10.0)
    # an elementwise t of v's full shape is allowed as well
    t_full = torch.rand(v.shape, generator=generator(5), dtype=torch.float64).mul(3.0).add(0.01).to(dtype)
    _close(act.prox(v, t_full), spec.prox(_np(v), _np(t_full)), dtype, scale=10.0)


@pytest.mark.parametrize("t", [1e-4, 0.3, 2.5, 1e4])
def test_prox_optimality_condition(spec, t):
    """u = prox_{tΨ}(v)  ⇔  (v − u)/t ∈ ∂Ψ(u), checked with the subgradient of each Ψ."""
    act = _act(spec)
    v = _z(torch.float64, "cpu", scale=3.0)
    u = _np(act.prox(v, t))
    vn = _np(v)
    p = (vn - u) / t  # must lie in ∂Ψ(u)
    if spec.kind == "smooth":
        assert np.all((u >= spec.lo) & (u <= spec.hi))
        # the residual u − v + tΨ'(u) is conditioned by 1 + tΨ''(u): check it where u is not
        # within 1e-6 of an edge; there, compare with the bisection reference instead
        width = 1.0 if math.isinf(spec.hi - spec.lo) else spec.hi - spec.lo
        inner = (u > spec.lo + 1e-6 * width) & (u < spec.hi - 1e-6 * width)
        ui, vi = u[inner], vn[inner]
        d1 = spec.dpsi(ui)
        d2 = np.abs(spec.dpsi(ui + 1e-7) - spec.dpsi(ui - 1e-7)) / 2e-7  # Ψ'' (size only)
        residual = ui - vi + t * d1
        tol = 1e-12 * (1 + np.abs(vi) + t * np.abs(d1)) + 1e-15 * (1 + t * d2)
        assert np.all(np.abs(residual) <= tol), np.max(np.abs(residual) / tol)
        np.testing.assert_allclose(u[~inner], spec.prox(vn[~inner], t), rtol=1e-9, atol=1e-12)
    elif spec.kind == "indicator":
        assert np.all(u >= spec.lo) and np.all(u <= spec.hi)
        interior = (u > spec.lo) & (u < spec.hi)
        assert np.all(p[interior] == 0)
        assert np.all(p[u == spec.lo] <= 0) and np.all(p[u == spec.hi] >= 0)
    else:  # λ|·|
        nz = u != 0
        np.testing.assert_allclose(p[nz], spec.lam * np.sign(u[nz]), rtol=1e-12, atol=1e-12)
        assert np.all(np.abs(p[~nz]) <= spec.lam * (1 + 1e-12))


@pytest.mark.parametrize("t", [0.05, 1.0, 3.0])
def test_prox_minimises_its_objective(spec, t):
    """Variational check with Ψ from MATH.md: ½(u−v)² + tΨ(u) is minimal at u = prox_{tΨ}(v)."""
    act = _act(spec)
    v = _z(torch.float64, "cpu", scale=2.5)
    u = _np(act.prox(v, t))
    vn = _np(v)

    def objective(x):
        return 0.5 * (x - vn) ** 2 + t * spec.psi(x)

    f_star = objective(u)
    for delta in (-0.3, -1e-2, -1e-4, 1e-4, 1e-2, 0.3):
        other = np.clip(u + delta, spec.lo, spec.hi)
        assert np.all(objective(other) >= f_star - 1e-12 * (1 + np.abs(f_star)))


@pytest.mark.parametrize("t", [0.2, 3.0])
def test_smooth_prox_implicit_derivatives(t):
    """du/dv = 1/(1 + tΨ''(u)) and du/dt = −Ψ'(u)/(1 + tΨ''(u)) for sigmoid and tanh."""
    cases = [
        (SigmoidProx(), lambda u: _logit(u) - u, lambda u: 1 / (u * (1 - u)) - 1),
        (TanhProx(), lambda u: np.arctanh(u) - u, lambda u: 1 / (1 - u * u) - 1),
    ]
    for act, d1, d2 in cases:
        v = _z(torch.float64, "cpu", scale=1.0).requires_grad_(True)
        tt = torch.full((v.shape[0], 1, 1), t, dtype=torch.float64, requires_grad=True)
        u = act.prox(v, tt)
        gv, gt = torch.autograd.grad(u.sum(), (v, tt))
        un = _np(u)
        np.testing.assert_allclose(_np(gv), 1 / (1 + t * d2(un)), rtol=1e-8)
        expected_t = (-d1(un) / (1 + t * d2(un))).reshape(v.shape[0], -1).sum(1)
        np.testing.assert_allclose(_np(gt).ravel(), expected_t, rtol=1e-7, atol=1e-10)


def test_smooth_prox_extreme_inputs_and_steps():
    """Newton with bisection safeguard: accurate for tiny/huge t and saturating v, no NaN."""
    v = torch.tensor([-1e3, -60.0, -5.0, -1.0, -1e-6, 0.0, 1e-6, 0.3, 0.7, 1.0, 1.5, 5.0, 60.0, 1e3], dtype=torch.float64)
    for act, ref, (lo, hi) in [(SigmoidProx(), _sigmoid_prox_ref, (0, 1)), (TanhProx(), _tanh_prox_ref, (-1, 1))]:
        for t in [1e-4, 1e-2, 0.5, 1.5, 100.0, 1e4]:
            u = act.prox(v, t)
            assert torch.isfinite(u).all()
            assert bool(((u >= lo) & (u <= hi)).all())
            np.testing.assert_allclose(_np(u), ref(_np(v), t), rtol=1e-9, atol=1e-12)
            u32 = act.prox(v.float(), t)
            assert torch.isfinite(u32).all()
            np.testing.assert_allclose(_np(u32), ref(_np(v.float()), t), rtol=1e-5, atol=1e-6)


def test_prox_rejects_nonpositive_t(spec):
    act = _act(spec)
    v = _z(torch.float64, "cpu")
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="t"):
            act.prox(v, bad)


def test_prox_under_inference_mode_and_no_grad(spec):
    act = _act(spec)
    v = _z(torch.float32, "cpu")
    t = torch.full((v.shape[0], 1, 1), 0.4)
    expected = spec.prox(_np(v), 0.4)
    with torch.inference_mode():
        _close(act.prox(v, t), expected, torch.float32, scale=10.0)
    with torch.no_grad():
        _close(act.prox(v.requires_grad_(True), t), expected, torch.float32, scale=10.0)


# ---------------------------------------------------------------------------------------------
# Ψ and the Bregman loss
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_psi_matches_reference(spec, dtype):
    act = _act(spec)
    y = _y_in_domain(spec, dtype, "cpu")
    out = act.psi(y)
    assert out.shape == (y.shape[0],) and out.dtype == dtype
    _close(out, spec.psi(_np(y)).reshape(y.shape[0], -1).sum(1), dtype, scale=10.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bregman_matches_generic_formula(spec, dtype):
    """B = Σ ½y² + Ψ(y) + Φ(z) − yz with Ψ, Φ from the MATH.md table (moderate z)."""
    act = _act(spec)
    y = _y_in_domain(spec, dtype, "cpu")
    z = _z(dtype, "cpu", scale=2.0)
    yn, zn = _np(y), _np(z)
    expected = (0.5 * yn**2 + spec.psi(yn) + spec.phi(zn) - yn * zn).reshape(y.shape[0], -1).sum(1)
    out = act.bregman(y, z)
    assert out.shape == (y.shape[0],) and out.dtype == dtype
    _close(out, expected, dtype, scale=50.0)


def test_generic_fallback_formula_uses_the_right_phi(spec):
    """The base-class form ½y² + Ψ(y) + Φ(z) − yz (used by subclasses without a stable form)
    agrees with the MATH.md table, i.e. the private Ψ and Φ pieces are right."""
    act = _act(spec)
    y = _y_in_domain(spec, torch.float64, "cpu")
    z = _z(torch.float64, "cpu", scale=2.0)
    yn, zn = _np(y), _np(z)
    generic = ProxActivation._bregman_elem(act, y, z)
    _close(generic, 0.5 * yn**2 + spec.psi(yn) + spec.phi(zn) - yn * zn, torch.float64, scale=50.0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bregman_vanishes_at_sigma(spec, dtype, device):
    act = _act(spec)
    z = _z(dtype, device, scale=5.0)
    z.view(-1)[:6] = torch.tensor([1e3, -1e3, 0.0, 30.0, -30.0, 1e-3], dtype=dtype)
    y = spec.module()(z)  # the torch activation
    b = act.bregman(y, z)
    assert b.shape == (z.shape[0],)
    assert torch.isfinite(b).all()
    n = z[0].numel()
    atol = (1e-6 if dtype == torch.float32 else 1e-14) * n
    torch.testing.assert_close(b.cpu(), torch.zeros(z.shape[0], dtype=dtype), rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bregman_lower_bound(spec, dtype, device):
    """B_Ψ(y, z) ≥ ½‖y − σ(z)‖² ≥ 0 on random y ∈ dom Ψ (edges included)."""
    act = _act(spec)
    for seed in range(3):
        y = _y_in_domain(spec, dtype, device, seed=10 + seed)
        z = _z(dtype, device, scale=4.0, seed=20 + seed)
        b = act.bregman(y, z)
        bound = 0.5 * ((y - spec.module()(z)) ** 2).reshape(y.shape[0], -1).sum(1)
        slack = (1e-5 if dtype == torch.float32 else 1e-12) * (1 + bound)
        assert bool((b >= bound - slack).all()), (b - bound).min()
        assert bool((bound >= 0).all())


def test_bregman_gradient_in_z_is_sigma_minus_y(spec, device):
    act = _act(spec)
    y = _y_in_domain(spec, torch.float64, device)
    z = _z(torch.float64, device, scale=4.0)
    z.view(-1)[:4] = torch.tensor([1e3, -1e3, 50.0, -50.0], dtype=torch.float64)
    z.requires_grad_(True)
    (grad,) = torch.autograd.grad(act.bregman(y, z).sum(), z)
    sigma = spec.module()(z.detach()) if spec.sigma is None else torch.as_tensor(spec.sigma(_np(z)), device=device)
    torch.testing.assert_close(grad, sigma - y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_overflow_for_large_z(spec, dtype):
    act = _act(spec)
    y = _y_in_domain(spec, dtype, "cpu", shape=(4, 6))
    z = torch.tensor([1e3, -1e3, 5e2, -5e2, 1e2, -1e2], dtype=dtype).repeat(4, 1)
    z[1:] *= torch.tensor([1.0, -1.0, 0.3], dtype=dtype).view(3, 1)
    b = act.bregman(y, z)
    assert torch.isfinite(b).all() and bool((b >= 0).all())
    for t in (0.01, 1.0, 7.0):
        u = act.prox(z, t)
        assert torch.isfinite(u).all()
        assert torch.isfinite(act.psi(u)).all()
        assert torch.isfinite(act.bregman(act.project_data(y), u)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["sigmoid", "tanh"])
def test_edge_data_give_finite_bregman(name, dtype):
    """y on the edge of dom Ψ: B(1, z) = −log σ(z) (sigmoid) / log(1 + e^{−2z}) (tanh), etc."""
    z64 = np.array([-1e3, -30.0, -1.0, 0.0, 1.0, 30.0, 1e3])
    z = torch.tensor(z64, dtype=dtype).view(-1, 1)
    if name == "sigmoid":
        act, y_hi, y_lo = SigmoidProx(), 1.0, 0.0
        b_hi, b_lo = np.logaddexp(0, -z64), np.logaddexp(0, z64)  # −log σ(z), −log(1 − σ(z))
        psi_edge = -0.5  # Ψ(1) = −½, Ψ(0) = 0
        psi_lo = 0.0
    else:
        act, y_hi, y_lo = TanhProx(), 1.0, -1.0
        b_hi, b_lo = np.logaddexp(0, -2 * z64), np.logaddexp(0, 2 * z64)
        psi_edge = psi_lo = math.log(2.0) - 0.5
    for y_val, expected in ((y_hi, b_hi), (y_lo, b_lo)):
        y = torch.full_like(z, y_val)
        b = act.bregman(y, z)
        assert torch.isfinite(b).all()
        _close(b, expected, dtype, scale=10.0)
        zz = z.clone().double().requires_grad_(True)
        (g,) = torch.autograd.grad(act.bregman(y.double(), zz).sum(), zz)
        assert torch.isfinite(g).all()
    _close(act.psi(torch.tensor([[y_hi], [y_lo]], dtype=dtype)), [psi_edge, psi_lo], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_project_data_lands_in_domain(spec, dtype):
    act = _act(spec)
    assert act.domain == (spec.lo, spec.hi)
    y = 5.0 * torch.randn(6, 10, generator=generator(3), dtype=torch.float64).to(dtype)
    p = act.project_data(y)
    assert p.shape == y.shape and p.dtype == dtype
    assert bool(((p >= spec.lo) & (p <= spec.hi)).all())
    lo, hi = spec.lo, spec.hi
    if spec.open_domain:  # into the largest closed interval of this dtype inside (lo, hi)
        lo, hi = (float(torch.nextafter(torch.tensor(b, dtype=dtype), torch.tensor(0.0, dtype=dtype))) for b in (lo, hi))
        assert bool(((p > spec.lo) & (p < spec.hi)).all())
    np.testing.assert_array_equal(_np(p), _np(torch.as_tensor(np.clip(_np(y), lo, hi)).to(dtype)))  # bounds rounded
    assert torch.isfinite(act.bregman(p, y)).all()
    assert torch.isfinite(act.psi(p)).all()


def test_outside_domain_gives_inf(spec):
    act = _act(spec)
    if math.isinf(spec.lo) and math.isinf(spec.hi):
        pytest.skip("dom Ψ is the whole line")
    y = _y_in_domain(spec, torch.float64, "cpu", edges=False)
    bad = spec.lo - 0.5 if not math.isinf(spec.lo) else spec.hi + 0.5
    y[0, 0, 0] = bad
    z = _z(torch.float64, "cpu")
    b, psi = act.bregman(y, z), act.psi(y)
    assert math.isinf(b[0]) and b[0] > 0 and torch.isfinite(b[1:]).all()
    assert math.isinf(psi[0]) and psi[0] > 0 and torch.isfinite(psi[1:]).all()


def test_bregman_and_psi_need_a_batch_dim():
    with pytest.raises(ValueError, match="batched"):
        ReLUProx().bregman(torch.tensor(1.0), torch.tensor(0.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_bregman_given_sigma_is_the_same_value(spec, dtype):
    """bregman(y, z, σ(z)) (the solvers pass a σ(z) they already have) equals bregman(y, z), which
    is checked against the references above; with a live z the given σ is ignored (∇_z B = σ − y)."""
    act = _act(spec)
    y = _y_in_domain(spec, dtype, "cpu")
    z = _z(dtype, "cpu", scale=4.0)
    z.view(-1)[:4] = torch.tensor([1e3, -1e3, 0.5, -30.0], dtype=dtype)
    sigma = spec.module()(z)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(act.bregman(y, z, sigma), act.bregman(y, z), rtol=tol, atol=tol)
    if dtype == torch.float64:
        z.requires_grad_(True)
        (grad,) = torch.autograd.grad(act.bregman(y, z, torch.zeros_like(z)).sum(), z)
        exact = spec.module()(z.detach()) if spec.sigma is None else torch.as_tensor(spec.sigma(_np(z)))
        torch.testing.assert_close(grad, exact - y, rtol=1e-12, atol=1e-12)
