"""Tests of the fast prox_{tΨ} solvers of the smooth activations (issue 26): a Wright omega guess or
bounds, a fixed number of Halley/Newton steps and a final Newton step (lbinv/proximal/_roots.py),
for a Python float t; a tensor t (and t > 1 for sigmoid, tanh, softplus) keeps the safeguarded
Newton solve.

References are independent: the root of the optimality condition (1 − t)u + t·σ⁻¹(u) = v found by
mpmath at 40 digits, the Wright omega function of SciPy, and the safeguarded solver of the same
class. Accuracy is asked relative to the conditioning of u = σ(w): |u − u*| ≤ c·eps·(|u*| +
|w*|·σ'(w*)), i.e. u is σ evaluated at a preimage correct to a few ulps (for t ≫ 1 the error of
the residual, of order t·eps, is allowed for).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lbinv.proximal import (
    CELUProx,
    ELUProx,
    LeakyReLUProx,
    LogSigmoidProx,
    SigmoidProx,
    SoftplusProx,
    SoftshrinkProx,
    SoftsignProx,
    TanhProx,
    proximal_activation,
)
from lbinv.proximal._roots import omega_, tanh_root_bound
from lbinv.proximal.base import CPU_BLOCK, blockwise
from tests.helpers import generator

mpmath = pytest.importorskip("mpmath")

F64 = torch.float64
V_EDGES = [-1e6, -1e3, -60.0, -30.0, -7.0, -1.5, -1.0, -0.3, -1e-3, -1e-6, -1e-12, 0.0, 1e-12, 1e-6, 1e-3, 0.3, 1.0,
           1.5, 7.0, 30.0, 60.0, 1e3, 1e6]
T_BELOW_ONE = [1e-6, 1e-3, 0.05, 0.5, 0.9, 0.999]


# ------------------------------------------------------------------------------------------------
# mpmath references: (u*, w*, σ'(w*)) for one (v, t), σ(w*) = u*
# ------------------------------------------------------------------------------------------------
def _root(f, lo, hi):
    """The root of an increasing f on [lo, hi] (mpmath numbers), to the working precision: regula
    falsi with the Illinois modification, and a bisection step every third step."""
    lo, hi = mpmath.mpf(lo), mpmath.mpf(hi)
    flo, fhi = f(lo), f(hi)
    assert flo <= 0 <= fhi, (lo, hi, flo, fhi)
    side = 0
    for i in range(2000):
        if flo == 0:
            return lo
        if fhi == 0 or hi - lo <= mpmath.eps * 8 * max(1, abs(lo), abs(hi)):
            return hi
        m = (lo + hi) / 2 if i % 3 == 2 else (lo * fhi - hi * flo) / (fhi - flo)
        if not lo < m < hi:
            m = (lo + hi) / 2
        fm = f(m)
        if fm <= 0:
            lo, flo = m, fm
            if side == -1:
                fhi /= 2
            side = -1
        else:
            hi, fhi = m, fm
            if side == 1:
                flo /= 2
            side = 1
    raise AssertionError("no convergence")


def _ref_explinear(v, t, alpha, c):
    """ELU (c = 1) and CELU (c = α): q = w/c solves A·expm1(q) + Bq = v on [v/B, 0] (v < 0)."""
    v, t = mpmath.mpf(v), mpmath.mpf(t)
    if v >= 0:
        return float(v), float(v), 1.0
    A, B = (1 - t) * alpha, t * c
    lo = min(v / B, v / (A + B))
    q = _root(lambda q: A * mpmath.expm1(q) + B * q - v, lo, 0)
    return float(alpha * mpmath.expm1(q)), float(c * q), float(alpha / c * mpmath.exp(q))


def _ref_sigmoid(v, t):
    v, t = mpmath.mpf(v), mpmath.mpf(t)
    sig = lambda w: 1 / (1 + mpmath.exp(-w))  # noqa: E731
    lo, hi = (v - max(0, 1 - t)) / t, (v - min(0, 1 - t)) / t
    w = _root(lambda w: (1 - t) * sig(w) + t * w - v, lo - 1, hi + 1)
    s = sig(w)
    return float(s), float(w), float(s * (1 - s))


def _ref_tanh(v, t):
    v, t = mpmath.mpf(v), mpmath.mpf(t)
    r = abs(1 - t) / t
    w = _root(lambda w: (1 - t) * mpmath.tanh(w) + t * w - v, v / t - r - 1, v / t + r + 1)
    return float(mpmath.tanh(w)), float(w), float(1 - mpmath.tanh(w) ** 2)


def _ref_softplus(v, t, beta=1.0):
    x, t = mpmath.mpf(v) * beta, mpmath.mpf(t)
    sp = lambda w: mpmath.log1p(mpmath.exp(w))  # noqa: E731
    y = x - (1 - t) * mpmath.log(2)
    w = _root(lambda w: (1 - t) * sp(w) + t * w - x, min(y, y / t) - 1, max(x, x / t) + 1)
    return float(sp(w) / beta), float(w / beta), float(1 / (1 + mpmath.exp(-w)))


CASES = {
    "elu1": (lambda: ELUProx(1.0), lambda v, t: _ref_explinear(v, t, 1.0, 1.0)),
    "elu0.3": (lambda: ELUProx(0.3), lambda v, t: _ref_explinear(v, t, 0.3, 1.0)),
    "celu0.5": (lambda: CELUProx(0.5), lambda v, t: _ref_explinear(v, t, 0.5, 0.5)),
    "celu2.5": (lambda: CELUProx(2.5), lambda v, t: _ref_explinear(v, t, 2.5, 2.5)),
    "sigmoid": (SigmoidProx, _ref_sigmoid),
    "tanh": (TanhProx, _ref_tanh),
    "softplus1": (SoftplusProx, _ref_softplus),
    "softplus2.5": (lambda: SoftplusProx(2.5), lambda v, t: _ref_softplus(v, t, 2.5)),
}


def _reference(ref, v: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """(u*, allowed scale |u*| + |w*|·σ'(w*)) at each v, at 40 digits."""
    with mpmath.workdps(40):
        out = [ref(float(x), t) for x in v]
    u = np.array([o[0] for o in out])
    scale = np.abs(u) + np.array([abs(o[1]) * o[2] for o in out])
    return u, scale


def _check(act, ref, v: np.ndarray, t: float, dtype, factor: float) -> None:
    x = torch.tensor(v, dtype=dtype).reshape(1, -1)
    vr = x.double().numpy().ravel()  # the reference at the input actually passed
    u_ref, scale = _reference(ref, vr, t)
    u = act.prox(x, t).double().numpy().ravel()
    eps = torch.finfo(dtype).eps
    tiny = torch.finfo(dtype).tiny
    err = np.abs(u - u_ref)
    bound = factor * eps * scale * max(1.0, t) + tiny
    assert np.all(err <= bound), (t, vr[np.argmax(err / bound)], np.max(err / bound))


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("t", T_BELOW_ONE)
def test_fast_prox_against_mpmath_float64(name, t):
    make, ref = CASES[name]
    _check(make(), ref, np.array(V_EDGES), t, F64, factor=16.0)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("t", [1e-6, 0.05, 0.5, 0.999])
def test_fast_prox_against_mpmath_float32(name, t):
    make, ref = CASES[name]
    v = np.array([x for x in V_EDGES if abs(x) <= 1e3])
    _check(make(), ref, v, t, torch.float32, factor=16.0)


@pytest.mark.parametrize("name", ["elu1", "elu0.3", "celu0.5", "celu2.5"])
@pytest.mark.parametrize("t", [1.001, 1.5, 4.0, 100.0])
def test_explinear_fast_prox_above_one_against_mpmath(name, t):
    make, ref = CASES[name]
    v = np.array([x for x in V_EDGES if x < 0])
    _check(make(), ref, v, t, F64, factor=16.0)
    _check(make(), ref, v[np.abs(v) <= 1e3], t, torch.float32, factor=16.0)


def test_relative_accuracy_near_zero():
    """u ≈ v/(1 − t + t·σ⁻¹'(0)) for tiny v: relative accuracy, not only absolute (u = α·expm1(q)
    with q from a Newton step on the expm1 form; σ(w) and tanh(w) at a relatively exact w)."""
    v = -torch.logspace(-300, -20, 30, dtype=F64).reshape(1, -1)  # second-order terms below 1e-20
    for act in (ELUProx(1.0), CELUProx(0.5), TanhProx()):
        for t in (1e-3, 0.5, 0.9):
            u = act.prox(v, t)
            # to first order in v: (1 − t)u + t·σ⁻¹'(0)·u = v, σ⁻¹'(0) = c/α (explinear), 1 (tanh)
            slope = getattr(act, "_c", 1.0) / getattr(act, "alpha", 1.0)
            torch.testing.assert_close(u, v / (1.0 - t + t * slope), rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("t", [1e-4, 0.3, 0.999, 2.5])
def test_explinear_is_exact_for_nonnegative_v(t):
    """prox_{tΨ}(v) = v for v ≥ 0, to the bit (q is clipped to exactly 0 there)."""
    v = torch.tensor([[0.0, 1e-300, 1e-12, 0.5, 3.0, 1e6]], dtype=F64)
    for act in (ELUProx(0.7), CELUProx(2.0)):
        assert torch.equal(act.prox(v, t), v)
        assert torch.equal(act.prox(v.float(), t), v.float())


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("t", [1e-5, 0.2, 0.7])
def test_fast_prox_agrees_with_the_safeguarded_solver(name, t):
    """The fast solver and the safeguarded Newton solve of the same class (also behind a tensor t)."""
    act = CASES[name][0]()
    v = 4.0 * torch.randn(4, 500, generator=generator(3), dtype=F64)
    fast = act.prox(v, t)
    safe = act.prox(v, torch.tensor(t, dtype=F64))
    torch.testing.assert_close(fast, safe, rtol=1e-13, atol=1e-15)


def test_cpu_blocks_give_the_same_result():
    """On the CPU a large tensor is solved block by block: the same numbers as one block."""
    n = 2 * CPU_BLOCK + 123
    v = 3.0 * torch.randn(1, n, generator=generator(4))
    for act in (SigmoidProx(), TanhProx(), ELUProx(), SoftplusProx(2.0), LogSigmoidProx()):
        whole = act.prox(v, 0.4)
        parts = torch.cat([act.prox(p, 0.4) for p in v.split(CPU_BLOCK, dim=1)], dim=1)
        assert torch.equal(whole, parts)


def test_cpu_blocks_give_the_same_bregman():
    """B_Ψ given σ(z) is evaluated block by block on the CPU: the same numbers as one block."""
    n = 2 * CPU_BLOCK + 123
    z = 3.0 * torch.randn(2, n, generator=generator(5))
    for act in (SigmoidProx(), TanhProx(), CELUProx(0.5), SoftplusProx(), LogSigmoidProx()):
        y, s = act(z + torch.randn(z.shape, generator=generator(6))), act(z)
        whole = act._bregman_given_sigma(y, z, s)
        assert torch.equal(blockwise(act._bregman_given_sigma, y, z, s), whole)
        assert torch.equal(act.bregman(y, z, s), whole.sum(dim=1))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_fast_prox_extreme_magnitudes_stay_finite(dtype):
    big = 1e30 if dtype == torch.float32 else 1e300
    v = torch.tensor([[-big, -1e20, -1e10, -1.0, 0.0, 1.0, 1e10, 1e20, big]], dtype=dtype)
    for act in (SigmoidProx(), TanhProx(), ELUProx(0.5), CELUProx(3.0), SoftplusProx(), LogSigmoidProx()):
        for t in (1e-8, 0.5, 0.99999):
            u = act.prox(v, t)
            assert torch.isfinite(u).all(), (act, t, u)
            lo, hi = act.domain
            assert bool(((u >= lo) & (u <= hi)).all()), (act, t, u)


def test_fast_prox_gradients_are_the_implicit_ones():
    """With a live v the solvers also give the preimage w, and one live Newton step the derivative."""
    v = (2.0 * torch.randn(2, 7, generator=generator(6), dtype=F64)).requires_grad_(True)
    for act in (SigmoidProx(), TanhProx(), ELUProx(0.5), SoftplusProx(1.5)):
        assert torch.autograd.gradcheck(lambda v: act.prox(v, 0.35), (v,))


@pytest.mark.parametrize("name", list(CASES))
def test_a_prox_with_a_live_input_has_the_same_value(name):
    """With v needing a gradient the solvers return the same u (ELU with α < 1 returned v/(1 − t + tα)
    above 0: the preimage given for v > 0 was 0)."""
    act = CASES[name][0]()
    v = 3.0 * torch.randn(50, generator=generator(11), dtype=F64)
    for t in (0.05, 0.6):
        live = act.prox(v.clone().requires_grad_(True), t).detach()
        torch.testing.assert_close(live, act.prox(v, t), rtol=1e-12, atol=1e-300)  # (the live step's rounding)


def test_omega_guess_against_scipy():
    special = pytest.importorskip("scipy.special")
    L = np.concatenate([np.linspace(-80.0, 20.0, 20001), np.logspace(1.3, 12, 500)])
    exact = special.wrightomega(L).real
    for dtype in (torch.float32, F64):
        guess = omega_(torch.tensor(L, dtype=dtype)).double().numpy()
        ok = exact > torch.finfo(dtype).tiny * 1e3
        assert np.max(np.abs(guess[ok] / exact[ok] - 1)) <= 0.043


@pytest.mark.parametrize("t", [1e-6, 0.01, 0.3, 0.7, 0.999])
def test_tanh_root_bound_is_close(t):
    """The guess of sigmoid's and tanh's solvers is within 10% of the root W of a·tanh W + bW = C
    (bisection in float64), wherever tanh W is not 1 to round-off (there one Newton step is exact)."""
    C = torch.cat([torch.linspace(0.0, 50.0, 5001, dtype=F64)[1:], torch.logspace(-8, 8, 400, dtype=F64)])
    for a, b in ((1.0 - t, 4.0 * t), (1.0 - t, t)):  # sigmoid, tanh
        guess = 0.5 * tanh_root_bound(C, C - a, a, b)
        lo, hi = torch.zeros_like(C), C / b
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            below = a * torch.tanh(mid) + b * mid < C
            lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
        root = 0.5 * (lo + hi)
        inside = torch.tanh(root) < 1.0 - 1e-12
        assert float(((guess - root).abs() / root)[inside].max()) <= 0.1


def test_piecewise_and_softsign_forms():
    """LeakyReLU, soft-thresholding (tensor t), softsign: the closed forms of MATH.md §2."""
    v = torch.linspace(-5.0, 5.0, 101, dtype=F64).reshape(1, -1)
    t = torch.tensor([[0.3]], dtype=F64)
    leaky = LeakyReLUProx(0.2)
    expected = torch.where(v >= 0, v, v / (1 + 0.3 * 4.0))
    torch.testing.assert_close(leaky.prox(v, 0.3), expected, rtol=1e-15, atol=0)
    torch.testing.assert_close(leaky.prox(v, t), expected, rtol=1e-15, atol=1e-16)
    shrink = SoftshrinkProx(0.5)
    assert torch.equal(shrink.prox(v, t), torch.sign(v) * torch.relu(v.abs() - 0.15))
    soft = SoftsignProx()
    a = v.abs()
    ref = 2 * v / (1 + a + torch.sqrt((1 - a) ** 2 + 4 * 0.3 * a))
    torch.testing.assert_close(soft.prox(v, 0.3), ref, rtol=1e-15, atol=1e-16)
    assert proximal_activation(nn.LeakyReLU(1.0)).prox(v, 0.7).equal(v)
