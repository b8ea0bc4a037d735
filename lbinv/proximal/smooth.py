r"""Smooth proximal activations with a bounded range (MATH.md §2): sigmoid and tanh (prox_{tΨ} by a
few Halley/Newton steps from a close guess, or by safeguarded Newton; their base class
:class:`_SmoothProx` the unbounded ones of :mod:`~lbinv.proximal.smooth_unbounded` share) and
softsign (prox_{tΨ} in closed form).

Import the classes from :mod:`lbinv.proximal`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lbinv._checks import check_step
from lbinv.proximal._roots import halley_denominator_, newton_steps, tanh_root_bound
from lbinv.proximal.base import ProxActivation, StepSize, blockwise, is_unit_step, softplus

__all__ = ["SigmoidProx", "SoftsignProx", "TanhProx"]

#: Most Newton steps a prox takes from a given start (:meth:`_SmoothProx._from_start`): where it is
#: close, one suffices; a few more reach round-off from a start within about 1e−4 in float64.
START_STEPS = 3

_LOG2 = math.log(2.0)


def _saturate(v: Tensor, t: float) -> Tensor:
    """``v`` clipped to ±t·(max/16) of its dtype, for sigmoid and tanh (t < 1): beyond, the preimage
    w ≈ v/t would overflow, and u is the edge of the range to round-off on either side of the clip."""
    bound = t * torch.finfo(v.dtype).max / 16.0
    return v.clamp(min=-bound, max=bound)


def _logcosh(z: Tensor) -> Tensor:
    """``log cosh z = |z| + softplus(−2|z|) − log 2``, finite for every finite z."""
    a = z.abs()
    return a + softplus(-2.0 * a) - _LOG2


def _xlogx(u: Tensor) -> Tensor:
    """u·log u for u ≥ 0, 0 at u = 0 (as torch.xlogy(u, u), with a plain logarithm)."""
    return u * torch.log(u.clamp(min=torch.finfo(u.dtype).tiny))


def _xlogx_(u: Tensor) -> Tensor:
    """:func:`_xlogx` in a new tensor, without gradients (fewer temporaries)."""
    return torch.clamp(u, min=torch.finfo(u.dtype).tiny).log_().mul_(u)


def _bernoulli_cross(p: Tensor, q: Tensor, x: Tensor) -> Tensor:
    """p·softplus(−x) + q·softplus(x) for p + q = 1, as p·max(−x, 0) + q·max(x, 0) + log1p(e^{−|x|}):
    non-negative terms, one exponential and one logarithm. With x⁺ = relu(x) (derivative 0 at 0) and
    x⁻ = x − x⁺ (derivative 1), |x| = x⁺ − x⁻: the derivative at x = 0 is ½ − p = sigmoid(0) − p."""
    xp = torch.relu(x)
    xn = x - xp
    return torch.log1p(torch.exp(xn - xp)).add_(q * xp).sub_(p * xn)


def _newton_bisection_step(w: Tensor, h: Tensor, dh: Tensor, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of Newton's method for the root of an increasing h, safeguarded by bisection on its
    bracket [lo, hi]: (w, lo, hi) updated from h = h(w) and dh = h'(w), elementwise (no device sync)."""
    pos = h > 0
    hi = torch.where(pos, w, hi)
    lo = torch.where(pos, lo, w)
    wn = w - h / dh
    return torch.where((wn >= lo) & (wn <= hi), wn, 0.5 * (lo + hi)), lo, hi


class _SmoothProx(ProxActivation):
    r"""σ continuous, strictly increasing and 1-Lipschitz, with range the interior of dom Ψ.

    Since u + Ψ'(u) = σ⁻¹(u), the optimality condition of prox_{tΨ}(v) is
    (1 − t)u + t·σ⁻¹(u) = v. Substituting u = σ(w) gives the scalar equation

        h(w) = (1 − t)·σ(w) + t·w − v = (σ(w) − v) − t·(σ(w) − w) = 0,
        h'(w) = (1 − t)σ'(w) + t ∈ [min(t, 1), max(t, 1)],

    which never evaluates σ⁻¹ (no log(0) or atanh(±1) at the edges of the domain). Its root
    lies in a bracket: for a bounded range (r_lo, r_hi), [(v − max((1−t)r))/t,
    (v − min((1−t)r))/t], r ∈ {r_lo, r_hi}, started at clamp(v, bracket); for an unbounded
    range, from h' ∈ [min(t, 1), max(t, 1)] (σ' ∈ [0, 1]), w* lies between v − h(v)/min(t, 1)
    and v − h(v)/max(t, 1), started at v (so σ(v) = v, as ELU for v > 0, is exact at once).
    It is solved elementwise by Newton's method safeguarded by bisection on that bracket, for
    a fixed number of steps (no synchronisation with the device). For a convex σ (softplus,
    ELU, CELU) h is convex (t < 1) or concave (t > 1), so Newton converges monotonically after
    its first step; a σ with an inflection overrides ``_bracket`` to start on the side from
    which it does (tanhshrink). The result is returned as u = σ(w), which is exact at finite
    domain edges (σ saturates there).

    h is evaluated in its second form, with σ(w) − w from ``_shift``, which a subclass whose
    σ(w) − w cancels for large ``|w|`` (softplus: log(1 + e^{−βw})/β) computes directly: for a large
    t, h is t times that small difference, which the first form would lose in float32.

    That solver is the general one, and it takes ``newton_steps`` steps. For a Python float t, the
    one the solvers pass, a subclass may give a fast solver instead (``_solve``, issue 26): a guess
    within a few per cent of the root for every v — from bounds and asymptotic forms, the Wright
    omega function at exponential edges (:mod:`~lbinv.proximal._roots`) — then one Halley step (and
    one step more in float64) and a final Newton step, without masks: as many elementwise
    passes as a few forwards of σ. Sigmoid, tanh and softplus (so log-sigmoid) have one for t < 1,
    ELU and CELU for every t ≠ 1 (``_has_fast_solver``); on the CPU a large tensor is solved in blocks
    of :data:`~lbinv.proximal.base.CPU_BLOCK` entries (:func:`~lbinv.proximal.base.blockwise`). A
    tensor t (per sample) uses the safeguarded solver.

    A caller that solves the same prox again for a nearby v (a hidden block, sweep after sweep) passes
    the preimage it got back (:meth:`prox_and_preimage`): where one Newton step from it is below a
    threshold, that step is the answer to round-off, with one evaluation of σ.

    Subclasses give ``_sigma`` (σ, exact, used by the solver), ``_dsigma`` (σ'), optionally
    ``_shift``, ``_has_fast_solver`` with ``_solve``, ``_curvature`` (for the warm start) and, when
    the torch module rounds or switches differently, ``_forward`` (σ as the module computes it,
    returned for t = 1).
    """

    newton_steps: int = 20
    #: K with ``|σ''| ≤ K·σ'`` everywhere, so that ``|h''| ≤ K·h'`` for t < 1: the warm start's bound
    #: (:meth:`prox_and_preimage`); None: no warm start (a σ without such a bound).
    _curvature: float | None = None

    def _sigma(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        """σ'(w), given both w and s = σ(w) (whichever gives it more accurately)."""
        raise NotImplementedError

    def _shift(self, s: Tensor, w: Tensor) -> Tensor:
        """σ(w) − w, given both w and s = σ(w)."""
        return s - w

    def _forward(self, v: Tensor) -> Tensor:
        """σ(v) exactly as the torch module computes it: prox_{tΨ} for the Python number t = 1."""
        return self._sigma(v)

    def _bracket(self, vd: Tensor, td: StepSize, a: StepSize) -> tuple[Tensor, Tensor, Tensor]:
        """(lo, hi, w0): a bracket of the root of h and the starting point (see the class docstring)."""
        r_lo, r_hi = self.domain  # the range of σ is the interior of the domain
        if math.isfinite(r_lo) and math.isfinite(r_hi):
            m_lo: StepSize
            m_hi: StepSize
            if isinstance(a, Tensor):
                m1, m2 = a * r_lo, a * r_hi
                m_lo, m_hi = torch.minimum(m1, m2), torch.maximum(m1, m2)
            else:
                m_lo, m_hi = min(a * r_lo, a * r_hi), max(a * r_lo, a * r_hi)
            lo, hi = (vd - m_hi) / td, (vd - m_lo) / td
            return lo, hi, torch.minimum(torch.maximum(vd, lo), hi)
        h0 = a * self._shift(self._sigma(vd), vd)  # h(v)
        if isinstance(td, Tensor):
            q1, q2 = h0 / td.clamp(max=1.0), h0 / td.clamp(min=1.0)
        else:
            q1, q2 = h0 / min(td, 1.0), h0 / max(td, 1.0)
        return vd - torch.maximum(q1, q2), vd - torch.minimum(q1, q2), vd

    def _has_fast_solver(self, t: float) -> bool:
        """Whether :meth:`_solve` solves for this Python float t ≠ 1 (else the safeguarded Newton solve)."""
        return False

    def _solve(self, v: Tensor, t: float, want_w: bool) -> tuple[Tensor, Tensor | None]:
        """The fast solver, where :meth:`_has_fast_solver`: ``(u, w)`` with u = prox_{tΨ}(v) and, when
        ``want_w``, its preimage w (σ(w) = u) (``v`` is detached)."""
        raise NotImplementedError

    def _newton_parts(self, w: Tensor, v: Tensor, t: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(σ(w), h(w), h'(w), σ'(w)) of the class docstring's h, in new tensors."""
        s = self._sigma(w)
        ds = self._dsigma(s, w)
        h = (s - v).sub_(self._shift(s, w), alpha=t)
        return s, h, ds.mul(1.0 - t).add_(t), ds

    def _solve_with_preimage(self, v: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """(prox_{tΨ}(v), its preimage) without a start: the fast solver, else the safeguarded one."""
        if self._has_fast_solver(t):
            return blockwise(lambda block: self._solve(block, t, True), v)
        w = self._newton_bisection(v, t)
        return self._sigma(w), w

    def _close(self, delta: Tensor, start: Tensor, threshold: float) -> Tensor:
        """Where the Newton step ``start − delta`` is exact to round-off: ``|δ| ≤ θ`` (:meth:`_from_start`).
        σ(0) = 0 asks more near 0, where u ≈ σ'(0)·w keeps its relative accuracy."""
        return delta.abs() <= threshold

    def _from_start(self, v: Tensor, t: float, start: Tensor) -> tuple[Tensor, Tensor]:
        """Newton steps δ from ``start``, at most :data:`START_STEPS`, until one is :meth:`_close`:
        ``|δ| ≤ θ = √(ε/(2K))``, so that its error, ≤ (K/2)δ² ≤ ε/4 (|h''| ≤ K·h'), and that of
        u = σ(w) − σ'(w)δ are round-off. The entries whose last step is not close (NaN included) are
        solved afresh; each step works on the entries left."""
        assert self._curvature is not None
        threshold = math.sqrt(torch.finfo(v.dtype).eps / (2.0 * self._curvature))
        s, h, dh, ds = self._newton_parts(start, v, t)
        delta = h.div_(dh)
        close = self._close(delta, start, threshold)
        u, w = s.addcmul_(ds, delta, value=-1.0), start - delta
        if bool(close.all()):
            return u, w
        left = close.logical_not_().view(-1).nonzero().squeeze(1)  # flat indices of the entries left
        for _ in range(START_STEPS - 1):
            v_left, w_left = v.reshape(-1)[left], w.view(-1)[left]
            s, h, dh, ds = self._newton_parts(w_left, v_left, t)
            delta = h.div_(dh)
            close = self._close(delta, w_left, threshold)
            u.view(-1)[left], w.view(-1)[left] = s.addcmul_(ds, delta, value=-1.0), w_left - delta
            left = left[~close]
            if left.numel() == 0:
                return u, w
        u.view(-1)[left], w.view(-1)[left] = self._solve_with_preimage(v.reshape(-1)[left], t)
        return u, w

    def prox_and_preimage(self, v: Tensor, t: StepSize, start: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """:meth:`~lbinv.proximal.ProxActivation.prox_and_preimage`: for a Python float t in (0, 1),
        without gradients, u and its preimage w; from ``start`` on the CPU where one Newton step
        suffices (:meth:`_from_start`; on other devices that test would synchronise)."""
        live = torch.is_grad_enabled() and (v.requires_grad or (isinstance(t, Tensor) and t.requires_grad))
        if live or isinstance(t, Tensor) or not 0.0 < t < 1.0:
            return self.prox(v, t), None
        step = float(t)
        with torch.no_grad():
            vd = v.detach()
            warm = (
                start is not None
                and self._curvature is not None
                and vd.device.type == "cpu"
                and (start.shape, start.dtype, start.device) == (vd.shape, vd.dtype, vd.device)
            )
            if not warm:
                return self._solve_with_preimage(vd, step)
            assert start is not None
            return blockwise(lambda block, begin: self._from_start(block, step, begin), vd, start.contiguous())

    def _newton_bisection(self, vd: Tensor, td: StepSize) -> Tensor:
        """The preimage w of prox_{tΨ}(v) by Newton's method safeguarded by bisection (class docstring)."""
        a = 1.0 - td
        lo, hi, w = self._bracket(vd, td, a)
        for _ in range(self.newton_steps):
            s = self._sigma(w)
            h = (s - vd) - td * self._shift(s, w)
            w, lo, hi = _newton_bisection_step(w, h, a * self._dsigma(s, w) + td, lo, hi)
        return w

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if is_unit_step(t):
            return self._forward(v)
        live = torch.is_grad_enabled() and (v.requires_grad or (isinstance(t, Tensor) and t.requires_grad))
        with torch.no_grad():
            vd = v.detach()
            w: Tensor | None = None
            if not isinstance(t, Tensor) and self._has_fast_solver(float(t)):  # a Python float t
                step = float(t)
                if not live:  # on the CPU block by block, whose temporaries stay in the cache
                    return blockwise(lambda block: self._solve(block, step, False)[0], vd)
                _, w = self._solve(vd, step, True)
            if w is None:  # no fast solver for this t
                td = t.detach() if isinstance(t, Tensor) else float(t)
                w = self._newton_bisection(vd, td)
        if live:
            # one more Newton step with live inputs: its value equals w (h(w) ≈ 0) and its
            # derivative is the implicit one, dw/dv = 1/h'(w), dw/dt = −∂_t h/h'(w).
            td = t.detach() if isinstance(t, Tensor) else float(t)
            s = self._sigma(w)
            w = w - ((s - v) - t * self._shift(s, w)) / ((1.0 - td) * self._dsigma(s, w) + td)
        return self._sigma(w)


class SigmoidProx(_SmoothProx):
    r"""Logistic sigmoid = prox of the Fermi–Dirac entropy minus ½u² (MATH.md §2, derived).

    Ψ(u) = u log u + (1 − u) log(1 − u) − u²/2 on [0, 1], Φ(z) = softplus(z);
    prox_{tΨ}(v) is the root of (1 − t)u + t·logit(u) = v (sigmoid(v) for t = 1).
    B_Ψ is the Bernoulli Kullback–Leibler divergence KL(y ‖ sigmoid(z)):

    ``B(y, z) = y log y + (1−y) log(1−y) + y·softplus(−z) + (1−y)·softplus(z)``.
    """

    domain = (0.0, 1.0)
    _curvature = 1.0  # σ'' = σ'(1 − 2σ)

    def _has_fast_solver(self, t: float) -> bool:
        return t < 1.0

    def _solve(self, v: Tensor, t: float, want_w: bool) -> tuple[Tensor, Tensor | None]:
        # In ŵ = w/2, with a = 1 − t, (1 − t)σ(w) + tw = v reads a·tanh ŵ + 4t·ŵ = 2v − a (σ(w) =
        # (1 + tanh ŵ)/2): |ŵ| is started from the bound of tanh_root_bound, ŵ with the sign of
        # 2v − a; |2v − a| − a = max(−2v, 2(v − a)) keeps small |v| exact. Then Newton steps in w.
        v = _saturate(v, t)
        a = 1.0 - t
        c = v.mul(2.0).sub_(a)
        shift = torch.maximum(v.neg(), v.sub(a)).mul_(2.0)
        w = tanh_root_bound(c.abs(), shift, a, 4.0 * t).copysign_(c)
        s, s1, h, d1 = c, shift, torch.empty_like(w), torch.empty_like(w)  # c, shift are free now
        work = torch.empty_like(w)
        steps = 2 + newton_steps(v.dtype)  # one Halley step, Newton steps, the final Newton step
        for step in range(steps):
            torch.sigmoid(w, out=s)
            torch.addcmul(s, s, s, value=-1.0, out=s1)  # σ' = s(1 − s)
            torch.mul(w, t, out=h).sub_(v).add_(s, alpha=a)  # h = as + tw − v
            torch.mul(s1, a, out=d1).add_(t)  # h' = aσ' + t
            if step == 0:  # Halley, h'' = aσ'(1 − 2s)
                halley_denominator_(d1, h, s.mul_(-2.0 * a).add_(a).mul_(s1), work)
            h.div_(d1)
            if step == steps - 1:  # u = σ(w − δ) to first order, s − σ'δ
                return s.addcmul_(s1, h, value=-1.0), w.sub_(h) if want_w else None
            w.sub_(h)
        raise AssertionError("unreachable")

    def _sigma(self, w: Tensor) -> Tensor:
        return torch.sigmoid(w)

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        return s * (1.0 - s)

    def _psi_elem(self, u: Tensor) -> Tensor:
        q = 1.0 - u
        return torch.xlogy(u, u) + torch.xlogy(q, q) - 0.5 * u * u

    def _phi_elem(self, z: Tensor) -> Tensor:
        return softplus(z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        q = 1.0 - y
        return _xlogx(y) + _xlogx(q) + y * softplus(-z) + q * softplus(z)

    def _bregman_given_sigma(self, y: Tensor, z: Tensor, s: Tensor) -> Tensor:
        # y·softplus(−z) + q·softplus(z) = q·z⁺ − y·z⁻ + log1p(e^{−|z|}), and
        # log1p(e^{−|z|}) = −log max(s, 1 − s) (1 − s exact for s ≥ ½): one logarithm
        q = 1.0 - y
        out = _xlogx_(y).add_(_xlogx_(q)).addcmul_(q, z.clamp(min=0.0)).addcmul_(y, z.clamp(max=0.0), value=-1.0)
        return out.sub_(torch.maximum(s, torch.sub(1.0, s)).log_())


class TanhProx(_SmoothProx):
    r"""tanh = prox of Ψ(u) = ½(1+u)log(1+u) + ½(1−u)log(1−u) − ½u² on [−1, 1] (MATH.md §2).

    (Equivalently u·artanh u + ½(log(1 − u²) − u²).) Φ(z) = log cosh z, computed as
    ``|z| + softplus(−2|z|) − log 2``. prox_{tΨ}(v) is the root of (1 − t)u + t·artanh(u) = v
    (tanh(v) for t = 1). With p = (1 + y)/2, q = (1 − y)/2 and tanh z = 2·sigmoid(2z) − 1,
    B_Ψ is the Bernoulli KL divergence KL(p ‖ sigmoid(2z)):

    ``B(y, z) = p log p + q log q + p·softplus(−2z) + q·softplus(2z)``,

    which equals ½(1+y)log(1+y) + ½(1−y)log(1−y) + log cosh z − yz exactly (the two log 2
    terms cancel) but has no cancellation between ``|z|`` and ``yz`` when ``|z|`` is large.
    """

    domain = (-1.0, 1.0)
    _curvature = 2.0  # σ'' = −2σσ'

    def _close(self, delta: Tensor, start: Tensor, threshold: float) -> Tensor:
        # near 0, |h''| ≤ 2|tanh| h' ≈ 2(|w| + |δ|)h': the step's error (|w| + |δ|)δ² is relatively
        # below ε/4 where |δ| ≤ θ (θ² = ε/4) and |δ|³ ≤ (ε/8)|w|
        step = delta.abs()
        return (step <= threshold) & (step * step * step <= start.abs().mul_(torch.finfo(step.dtype).eps / 8.0))

    def _has_fast_solver(self, t: float) -> bool:
        return t < 1.0

    def _solve(self, v: Tensor, t: float, want_w: bool) -> tuple[Tensor, Tensor | None]:
        # (1 − t)·tanh w + tw = v is odd: W = |w| is the root of a·tanh W + tW = |v|, a = 1 − t,
        # started from the bound of tanh_root_bound. Its steps use E = 1 − tanh W = 2σ(−2W), which
        # keeps tanh's tail (where tanh W rounds to 1); the last one is in w with tanh itself, for
        # the relative accuracy of small u.
        v = _saturate(v, t)
        a = 1.0 - t
        C = v.abs()
        W = tanh_root_bound(C, C - a, a, t).mul_(0.5)
        one_minus_C = C.neg_().add_(1.0)
        E, S2, h, d1 = torch.empty_like(W), torch.empty_like(W), torch.empty_like(W), torch.empty_like(W)
        for step in range(1 + newton_steps(v.dtype)):
            torch.mul(W, -2.0, out=E).sigmoid_().mul_(2.0)  # 1 − tanh W
            torch.addcmul(E, E, E, value=-0.5, out=S2).mul_(2.0)  # 1 − tanh² W = E(2 − E)
            torch.add(W, E, out=h).sub_(1.0).mul_(t).add_(one_minus_C).sub_(E)  # tanh W − |v| + t(W − tanh W)
            torch.mul(S2, a, out=d1).add_(t)  # h'
            if step == 0:  # Halley, h'' = −2a·tanh W·(1 − tanh² W)
                halley_denominator_(d1, h, E.neg_().add_(1.0).mul_(S2).mul_(-2.0 * a), S2)
            W.sub_(h.div_(d1))
        w = W.copysign_(v)
        T = torch.tanh(w, out=E)
        torch.mul(T, T, out=S2).neg_().add_(1.0)
        torch.sub(w, T, out=h).mul_(t).add_(T).sub_(v)  # h = (T − v) + t(w − T)
        h.div_(torch.mul(S2, a, out=d1).add_(t))
        u = T.addcmul_(S2, h, value=-1.0)  # tanh(w − δ) to first order
        return u, w.sub_(h) if want_w else None

    def _sigma(self, w: Tensor) -> Tensor:
        return torch.tanh(w)

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        return 1.0 - s * s

    def _psi_elem(self, u: Tensor) -> Tensor:
        p, q = 1.0 + u, 1.0 - u
        return 0.5 * (torch.xlogy(p, p) + torch.xlogy(q, q)) - 0.5 * u * u

    def _phi_elem(self, z: Tensor) -> Tensor:
        return _logcosh(z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        p, q = 0.5 * (1.0 + y), 0.5 * (1.0 - y)
        return _xlogx(p) + _xlogx(q) + _bernoulli_cross(p, q, 2.0 * z)

    def _bregman_given_sigma(self, y: Tensor, z: Tensor, s: Tensor) -> Tensor:
        # _bernoulli_cross(p, q, 2z) = 2(q·z⁺ − p·z⁻) + log1p(e^{−2|z|}), and
        # log1p(e^{−2|z|}) = −log((1 + |tanh z|)/2): one logarithm
        p, q = torch.add(y, 1.0).mul_(0.5), torch.sub(1.0, y).mul_(0.5)
        cross = torch.mul(q, z.clamp(min=0.0)).addcmul_(p, z.clamp(max=0.0), value=-1.0)
        out = _xlogx_(p).add_(_xlogx_(q)).add_(cross, alpha=2.0)
        return out.sub_(s.abs().mul_(0.5).add_(0.5).log_())


class SoftsignProx(ProxActivation):
    r"""Softsign ``σ(x) = x/(1 + |x|)`` (``σ' = 1/(1 + |x|)² ≤ 1``): prox of an even Ψ on (−1, 1), in closed form.

    ``σ⁻¹(u) = u/(1 − |u|)``, so ``Ψ'(u) = u|u|/(1 − |u|)`` and

    - ``Ψ(u) = −log(1 − |u|) − |u| − ½u²``, which is +∞ at u = ±1: dom Ψ = (−1, 1) is open;
    - ``Φ(z) = |z| − log(1 + |z|)``;
    - prox_{tΨ}(v): for v ≥ 0 the optimality condition (1 − t)u + t·u/(1 − u) = v is the
      quadratic (1 − t)u² − (1 + v)u + v = 0, whose root in [0, 1) is, in the form without
      cancellation (any t > 0, odd in v),
      ``u = 2v / (1 + |v| + √((1 − |v|)² + 4t|v|))`` (t = 1: ``v/(1 + |v|)``), evaluated with
      ``q = 1/(1 + |v|)`` as ``vq / (½ + ½√(((|v| − 1)q)² + 4t·|v|q·q))``, which cannot overflow;
    - with ``x = (1 − |y|)(1 + |z|)`` and g(x) = x − 1 − log x ≥ 0 (Itakura–Saito),
      ``B(y, z) = g(x) + (|y||z| − yz)``: both terms are ≥ 0, zero together iff y = σ(z)
      (log x is log1p(x − 1) for ``|x − 1| < ½``, else ``log(1 − |y|) + log(1 + |z|)``).

    Because Ψ(±1) = ∞, :meth:`project_data` clips data into the closed interval of the
    largest representable numbers inside (−1, 1) (±(1 − 2⁻⁵³) in float64, ±(1 − 2⁻²⁴) in
    float32), where Ψ is finite (≈ 35.2 and 15.1): data equal to ±1, which softsign never
    outputs, get a large but finite loss rather than +∞. Data beyond ±1 give +∞ as usual.
    """

    domain = (-1.0, 1.0)

    def project_data(self, y: Tensor) -> Tensor:
        inside = 1.0 - torch.finfo(y.dtype).eps / 2  # the largest number below 1 (no device sync)
        return torch.clamp(y, -inside, inside)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if is_unit_step(t):
            return F.softsign(v)
        a = v.abs()
        q = 1.0 / (a + 1.0)
        if isinstance(t, Tensor) or (torch.is_grad_enabled() and v.requires_grad):
            d = (a - 1.0) * q
            return v * q / (0.5 + 0.5 * torch.sqrt(d * d + (4.0 * t) * a * q * q))
        d = a.sub(1.0).mul_(q)  # (|v| − 1)q = 1 − 2q
        a.mul_(q).mul_(q).mul_(4.0 * t)  # 4t·|v|q·q = 4t·q(1 − q)
        d.mul_(d).add_(a).sqrt_().mul_(0.5).add_(0.5)
        return q.mul_(v).div_(d)

    def _psi_elem(self, u: Tensor) -> Tensor:
        a = u.abs()
        return -torch.log1p(-a) - a - 0.5 * a * a

    def _phi_elem(self, z: Tensor) -> Tensor:
        a = z.abs()
        return a - torch.log1p(a)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        ay, az = y.abs(), z.abs()
        d = (1.0 - ay) * (1.0 + az) - 1.0  # x − 1, accurate where x is not small
        # log x: log1p(d) near x = 1; from the factors where x is small (d would have lost it)
        log_x = torch.where(d.abs() < 0.5, torch.log1p(d), torch.log1p(-ay) + torch.log1p(az))
        return (d - log_x) + (ay * az - y * z)
