"""Independent NumPy (and SciPy) references for the proximal activations of issue 15: softplus,
log-sigmoid, ELU/CELU, softsign, tanhshrink and hard sigmoid.

Written from the definitions, not from lbinv's code: σ⁻¹ in closed form (or by plain bisection
for tanhshrink), Ψ from SciPy's ``spence`` (Li₂(w) = spence(1 − w)) or elementary closed forms,
Φ likewise, and prox_{tΨ} by plain bisection of the optimality condition (1 − t)u + t·σ⁻¹(u) = v
in u (in w, u = σ(w), for tanhshrink, where σ⁻¹ has no closed form).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction

import numpy as np

try:
    from scipy import special as scipy_special
except ImportError:  # pragma: no cover - scipy comes with the dev extras (through cvxpy)
    scipy_special = None

ZETA2 = math.pi**2 / 6


def bisect(f: Callable[[np.ndarray], np.ndarray], lo, hi, iters: int = 400) -> np.ndarray:
    """Root of an increasing f between lo and hi (arrays), elementwise, by plain bisection."""
    a, b = np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for _ in range(iters):
            m = 0.5 * (a + b)
            pos = f(m) > 0
            b = np.where(pos, m, b)
            a = np.where(pos, a, m)
    return 0.5 * (a + b)


def prox_by_bisection(inv: Callable, v, t, lo, hi) -> np.ndarray:
    """prox_{tΨ}(v): the root u in [lo, hi] of (1 − t)u + t·σ⁻¹(u) = v."""
    v, t = np.broadcast_arrays(np.asarray(v, dtype=np.float64), np.asarray(t, dtype=np.float64))
    lo, hi = np.broadcast_to(lo, v.shape), np.broadcast_to(hi, v.shape)
    return bisect(lambda u: (1 - t) * u + t * inv(u) - v, lo, hi)


def _errstate():
    return np.errstate(divide="ignore", invalid="ignore", over="ignore")


# --------------------------------------------------------------------------------- softplus
def softplus(x, beta=1.0):
    return np.logaddexp(0.0, beta * np.asarray(x, dtype=np.float64)) / beta


def softplus_inv(u, beta=1.0):
    with _errstate():
        return u + np.log(-np.expm1(-beta * u)) / beta


def softplus_dpsi(u, beta=1.0):
    with _errstate():
        return np.log(-np.expm1(-beta * u)) / beta


def softplus_psi(u, beta=1.0):
    """(Li₂(e^{−βu}) − π²/6)/β², Li₂(w) = spence(1 − w)."""
    return (scipy_special.spence(-np.expm1(-beta * np.asarray(u, dtype=np.float64))) - ZETA2) / beta**2


def softplus_phi(z, beta=1.0):
    """−Li₂(−e^{βz})/β² (moderate z: e^{βz} must not overflow)."""
    return -scipy_special.spence(1.0 + np.exp(beta * np.asarray(z, dtype=np.float64))) / beta**2


def softplus_prox(v, t, beta=1.0):
    v = np.asarray(v, dtype=np.float64)
    return prox_by_bisection(lambda u: softplus_inv(u, beta), v, t, 0.0, np.abs(v) + (1 + np.max(t)) / beta + 1)


# ----------------------------------------------------------------------- ELU (c = 1), CELU (c = α)
def explinear(x, alpha, c):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0) / c))


def explinear_inv(u, alpha, c):
    with _errstate():
        return np.where(u > 0, u, c * np.log1p(np.minimum(u, 0) / alpha))


def explinear_dpsi(u, alpha, c):
    return explinear_inv(u, alpha, c) - u


def explinear_psi(u, alpha, c):
    un = np.minimum(np.asarray(u, dtype=np.float64), 0)
    p = alpha + un
    with _errstate():
        plogp = np.where(p > 0, c * p * np.log(p / alpha), 0.0)
    return plogp - c * un - 0.5 * un**2


def explinear_phi(z, alpha, c):
    z = np.asarray(z, dtype=np.float64)
    return np.where(z > 0, 0.5 * z**2, alpha * c * np.expm1(np.minimum(z, 0) / c) - alpha * z)


def explinear_prox(v, t, alpha, c):
    v = np.asarray(v, dtype=np.float64)
    return prox_by_bisection(lambda u: explinear_inv(u, alpha, c), v, t, -alpha, np.maximum(v, 0) + 1)


# ---------------------------------------------------------------------------------- softsign
def softsign_inv(u):
    with _errstate():
        return u / (1 - np.abs(u))


def softsign_psi(u):
    a = np.abs(u)
    with _errstate():
        return -np.log1p(-a) - a - 0.5 * a**2


def softsign_phi(z):
    a = np.abs(z)
    return a - np.log1p(a)


def softsign_prox(v, t):
    return prox_by_bisection(softsign_inv, v, t, -1.0, 1.0)


# -------------------------------------------------------------------------------- tanhshrink
def tanhshrink(w):
    """w − tanh w; by tanh's Taylor series (Bernoulli numbers) for |w| < 0.25, where it cancels."""
    w = np.asarray(w, dtype=np.float64)
    ws = np.where(np.abs(w) < 0.25, w, 0.0)
    series = sum(_TANH_TAYLOR[n] * ws ** (2 * n - 1) for n in range(len(_TANH_TAYLOR) - 1, 1, -1))
    return np.where(np.abs(w) < 0.25, -series, w - np.tanh(w))


def _tanh_taylor(terms: int) -> list[float]:
    """T_n with tanh w = Σ_{n≥1} T_n w^{2n−1}, T_n = 2^{2n}(2^{2n} − 1)B_{2n}/(2n)! (index 0 unused)."""
    bern = [Fraction(1)]
    for m in range(1, 2 * terms + 1):
        bern.append(-sum(math.comb(m + 1, k) * bern[k] for k in range(m)) / (m + 1))
    return [0.0] + [float(4**n * (4**n - 1) * bern[2 * n] / math.factorial(2 * n)) for n in range(1, terms + 1)]


_TANH_TAYLOR = _tanh_taylor(14)


def tanhshrink_inv(u):
    """σ⁻¹(u) by bisection: |σ⁻¹(u) − u| = |tanh σ⁻¹(u)| < 1."""
    u = np.asarray(u, dtype=np.float64)
    return bisect(lambda w: tanhshrink(w) - u, u - 1.0, u + 1.0)


def _logcosh(w):
    return np.logaddexp(w, -w) - math.log(2.0)


def tanhshrink_psi(u):
    w = tanhshrink_inv(u)
    return _logcosh(w) - 0.5 * np.tanh(w) ** 2


def tanhshrink_phi(z):
    return 0.5 * z**2 - _logcosh(z)


def tanhshrink_dpsi(u):
    return tanhshrink_inv(u) - u


def tanhshrink_prox(v, t):
    """Bisection in w of (1 − t)σ(w) + t·w = v (h' ≥ min(t, 1)), then u = σ(w)."""
    v, t = np.broadcast_arrays(np.asarray(v, dtype=np.float64), np.asarray(t, dtype=np.float64))
    radius = np.abs(1 - t) / np.minimum(t, 1) + 1
    w = bisect(lambda w: (1 - t) * tanhshrink(w) + t * w - v, v - radius, v + radius)
    return tanhshrink(w)


# ------------------------------------------------------------------------------- hard sigmoid
def hardsigmoid(x):
    return np.clip(np.asarray(x, dtype=np.float64) / 6 + 0.5, 0, 1)


def hardsigmoid_inv(u):
    return 6 * u - 3


def hardsigmoid_psi(u):
    return 2.5 * u**2 - 3 * u


def hardsigmoid_phi(z):
    s = hardsigmoid(z)
    return (z + 3) * s - 3 * s**2


def hardsigmoid_prox(v, t):
    return np.clip((v + 3 * t) / (1 + 5 * t), 0, 1)
