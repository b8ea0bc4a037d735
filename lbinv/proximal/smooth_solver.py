r"""The prox_{tΨ} solver the smooth activations share (MATH.md §2): :class:`_SmoothProx`, whose
subclasses are sigmoid and tanh (:mod:`~lbinv.proximal.smooth`), softplus, log-sigmoid, ELU and CELU
(:mod:`~lbinv.proximal.smooth_unbounded`) and tanhshrink (:mod:`~lbinv.proximal.tanhshrink`): the
safeguarded Newton solve, a subclass's fast solver, and Newton steps from a given preimage.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lbinv._checks import check_step
from lbinv.proximal.base import ProxActivation, StepSize, blockwise, is_unit_step

__all__ = ["START_STEPS"]

#: Most Newton steps a prox takes from a given start (:meth:`_SmoothProx._from_start`): where it is
#: close, one suffices; a few more reach round-off from a start within about 1e−4 in float64.
START_STEPS = 3


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
    #: (:meth:`prox_and_preimage`); None: no warm start (a σ without such a bound, tanhshrink; or whose
    #: cold solver is cheaper than the steps that would miss: ELU and CELU, 1.5–1.75× slower warm)
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
        """:meth:`~lbinv.proximal.ProxActivation.prox_and_preimage`: on the CPU, for a Python float t
        in (0, 1) and without gradients, u and its preimage w, from ``start`` where Newton steps
        suffice (:meth:`_from_start`). Elsewhere w is None: on other devices the test of a start would
        synchronise (and keeping w would only cost memory)."""
        live = torch.is_grad_enabled() and (v.requires_grad or (isinstance(t, Tensor) and t.requires_grad))
        if live or isinstance(t, Tensor) or not 0.0 < t < 1.0 or self._curvature is None or v.device.type != "cpu":
            return self.prox(v, t), None
        step = float(t)
        with torch.no_grad():
            vd = v.detach()
            if start is None or (start.shape, start.dtype, start.device) != (vd.shape, vd.dtype, vd.device):
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
