"""Single-layer lifted-Bregman inversion by accelerated proximal gradient (FISTA).

Problem (paper eq. 6, MATH.md §3–5), per sample::

    min_x  F(x) = f(x) + g(x),   f(x) = B_Ψ(y, Wx + b),   g(x) = α TV(x) + ι_box(x).

``f`` is smooth, ``∇f(x) = Wᵀ(σ(Wx + b) − y)`` (no derivative of σ, MATH.md §2), with Lipschitz
constant ``L = ‖W‖₂²`` (:class:`~lbinv.solvers.data_term.LayerDataTerm`, shared with PDHG). One outer
iteration, from the momentum point ``u`` with the sample's step ``τ``::

    x̂ = prox_{τg}( u − τ∇f(u) )                         (proximal gradient step)
    if f(x̂) > f(u) + ⟨∇f(u), x̂ − u⟩ + ‖x̂ − u‖²/(2τ):    (the step failed the sufficient-decrease test)
        x, u, t stay;  τ⁺ = max(τ/2, 1/L)
    else:
        x⁺ = x̂ if F(x̂) ≤ (1 + 4ε) F_best else x          (monotone up to rounding, F_best = min F so far)
        t⁺ = (1 + √(1 + 4t²)) / 2,  u⁺ = x⁺ + ((t − 1)/t⁺)(x⁺ − x),  τ⁺ = min(1.25 τ, 3/L)

with the adaptive restart of O'Donoghue & Candès (2015): a sample restarts its momentum (``t⁺ = 1``,
``u⁺ = x⁺``) when its objective went up (the step is then also rejected, as in Beck & Teboulle's
monotone FISTA) or its momentum points uphill, ``⟨u − x̂, x̂ − x⟩ > 0``. ``W(u⁺) + b`` follows from
``Wx⁺ + b`` and ``Wx + b`` by linearity, and the test reads ``f(u)`` and ``⟨∇f(u), x̂ − u⟩ =
⟨σ(Wu + b) − y, Wx̂ − Wu⟩`` from them, so an iteration costs one product with ``W`` (at ``x̂``) and one
with ``Wᵀ`` (at ``u``), as a plain gradient step does.

The step. ``τ = 1/L`` always passes the test (``L`` bounds the curvature of ``f`` in every
direction), so ``τ`` never falls below it; the test lets it grow where the curvature along the steps
is smaller, as it is for a ReLU (``σ' = 0`` on the inactive units) and for a smooth step direction,
which ``W`` shortens far more than ``‖W‖`` says. It grows from the first check on and only while that
check found the gap above ``STEP_FLOOR_MARGIN = 10`` times its rounding floor (below): near the floor, a
longer step stirs the rounding noise of ``F``, whose chance new lows would hold off the stop there.
The cap ``3/L`` (``STEP_MAX``): the TV prox's weight is ``τα``, and its inner steps grow with it for no
fewer outer iterations. On the paper's 64×64 circle
it halves the iterations to ``tol = 1e−6``, and with a box that does not bind the certified stop
follows (docs/performance.md, "FISTA: a step that grows"). Backtracking that grows the step is
Scheinberg, Goldfarb & Bai's (2014) idea; their momentum rule, which keeps the rate with growing steps,
is not used (no rate is claimed, below).

"Went up" means: above the lowest objective accepted so far, ``F_best``, by more than
``ROUNDING_SLACK = 4`` units ``ε`` (the dtype's machine epsilon) of it (:func:`~lbinv.solvers.loop.rose`),
so the objective never exceeds ``(1 + 4ε) F_best``: a strict ``F(x̂) ≤ F(x)`` stalls the iteration
at the precision of the arithmetic, as rounding noise in ``x̂`` raises ``α TV`` at first order
(docs/performance.md, "FISTA: went up means beyond rounding").

Guarantee: with an exact prox, no restarts and ``τ = 1/L``, monotone FISTA has ``F(x_k) − F* ≤
2L‖x₀ − x*‖² / (k + 1)²`` (Beck & Teboulle 2009); the growing step, the adaptive restarts and the
inexact prox (below) have no such bound, so no rate is claimed. The objective of the accepted iterates never rises beyond
rounding, and a sample reported ``converged`` has met the duality-gap test below: with finite
bounds, a certified ``F(x) − F* ≤ tol · F(x)``.

The prox of ``τ(α TV + ι_box)`` (TV denoising with weight ``λ = τα``) has no closed form; it is
computed by the fast gradient projection (FGP) of Beck & Teboulle (2009) on its dual
(:class:`~lbinv.solvers.tv_prox.TVProx`) for ``m`` inner steps without any host synchronisation, warm-started from the dual ``p`` of the
previous outer iteration. ``m`` adapts at the checks (every ``check_every`` iterations, where the
loop synchronises anyway): it doubles while the prox's inexactness dominates the duality gap below
(its TV part is ``1/τ`` times the duality gap of the prox problem), and halves when it is a small
part, within ``[MIN_INNER_STEPS, max_inner_steps]``. With a box, the gap this compares with is the
smaller of the certified gap and the unboxed estimate (below; ``r`` without its entries at a bound
that point out of the box; the certified gap alone for a sample that did not move since the last
check): the box term of the certified gap is first order in ``r`` (below), it held the inner steps at
their floor, and the inexact prox slowed the iterates themselves (docs/performance.md, "FISTA: the
inner steps and the certificate").

Stopping test — what ``tol`` means: a **relative duality gap**. Write ``f(x) = φ(Wx + b)`` with
``φ(a) = B_Ψ(y, a)``. For any ``w`` with ``y + w ∈ dom Ψ`` and any TV dual ``z`` with ``‖z_ij‖ ≤ 1``
(the dual norm of the pointwise one: ℓ∞ for anisotropic TV), weak duality gives
``F* ≥ −φ*(w) + ⟨w, b⟩ − max_{x' ∈ box} ⟨α div z − Wᵀw, x'⟩`` (from ``φ(a') ≥ ⟨w, a'⟩ − φ*(w)``
and ``TV(x') ≥ ⟨z, ∇x'⟩ = −⟨div z, x'⟩``), and Fenchel–Young for ``φ``,
``φ(a) + φ*(w) − ⟨w, a⟩ = B_Ψ(y + w, a)`` (MATH.md §2: ``φ*(w) = (½‖·‖² + Ψ)(y + w) − ½‖y‖² − Ψ(y)``),
turns ``F(x)`` minus that bound into, with ``r = Wᵀw − α div z``::

    F(x) − F* ≤ gap(x; w, z) := B_Ψ(y + w, Wx + b) + α(TV(x) − ⟨z, ∇x⟩) + Σ_i max_{lo ≤ x'_i ≤ hi} r_i (x_i − x'_i).

At ``w₀ = σ(Wx + b) − y`` the first term vanishes and ``r = ∇f(x) − α div z``.

- With box bounds (both finite) this is a **certified** upper bound on ``F(x) − F*`` for every such
  ``(w, z)``, so the solver takes, per sample, the smallest over a few candidates: ``(w₀, z)`` with
  the solver's own ``z`` (the dual of its last prox) and, at checks where some active sample's gap is
  within ``REFINE_FACTOR`` of its test, refined ones (:meth:`~lbinv.solvers.box_certificate.BoxCertificate.refined_gap`):
  ``(w₀, z₁)``, ``(w₀ + βv, z₂)`` and ``GALERKIN_ROUNDS`` corrections of the latter. ``v = W1`` on the
  units where ``y + w₀ = σ(Wx + b)`` lies inside ``dom Ψ`` (elsewhere 0), ``β`` such that ``Σ_i r_i = 0``
  over the pixels strictly inside the box (what an optimum has there: ``r = 0``); ``zₖ`` comes from
  ``DUAL_REFINE_STEPS`` FGP steps from the solver's ``z`` (each correction: from the previous ``z``) on
  ``½ Σ_i ψ_i(r_i)``, ``ψ_i(r) = r²`` inside the box, ``min(r, 0)²`` at ``lo`` and ``max(r, 0)²`` at
  ``hi`` (a pixel at a bound costs nothing for ``r`` pointing out of the box), projected onto
  ``‖z_ij‖ ≤ 1``. Such a ``z`` leaves ``r`` about constant on each region that saturated
  ``‖z_ij‖ = 1`` enclose (where ``z_ij`` is free, ``∇r = 0`` there), and no ``z`` changes those
  constants (``div z`` sums to 0 over a region whose boundary flux is fixed): only ``w`` does. A
  correction (:meth:`~lbinv.solvers.box_certificate.BoxCertificate.galerkin_round`, one product with
  ``W`` and one with ``Wᵀ``) moves ``w`` by
  ``γ₁v + γ₂v₂``, ``v₂ = W e`` on the same units, ``e = ψ'(r)``, with ``γ`` from the Galerkin
  conditions ``⟨r⁺, 1_inside⟩ = ⟨r⁺, e⟩ = 0`` on the new residual (a 2×2 system per sample), then
  refines ``z``. A candidate with ``y + w ∉ dom Ψ`` has an infinite gap and never wins; the exact gap
  is evaluated at every candidate, so these choices only decide how small it gets, never its validity.
- Without (an unbounded ``x`` has no finite dual bound: ``div`` has no constant component), the
  box term is replaced by ``‖r‖ · R`` at ``w₀`` and the solver's ``z``, with ``R = RADIUS_FACTOR · ‖x − x_prev‖``
  (``x_prev``: the iterate at the previous check) standing in for ``‖x − x*‖``: an **estimate**, not
  a bound (how it compared with the true gap: docs/performance.md, "FISTA: the inner steps and the
  certificate").

How far the certificate lags: its box term is first order in ``r``, while ``F(x) − F*`` is second
order, so with a box the test is met later than the true gap would allow. On the paper's 64×64 circle
(float64, tol=1e−6, a box (0, 1) that does not bind) the certified stop comes at 140 iterations, the
estimated one without bounds at 130 (with the fixed step ``1/L``: 340, 360 without the Galerkin
corrections, against 240, where the true gap first fell below 1e−6; docs/performance.md, "FISTA: the
inner steps and the certificate").

A sample stops when ``gap(x) ≤ tol · F(x)``: ``tol`` bounds the relative objective gap
``(F(x) − F*) / F(x)`` (certified with a box, estimated without). An objective below
``√eps · F(x⁰)`` counts as that floor (a problem whose optimum is 0, e.g. an exact fit without
regulariser, would never meet a purely relative test). ``converged`` is True only for this test.

The rounding floor of the gap. ``x`` is only known to ``ε|x|`` per pixel, so the residual ``r``
cannot fall below about ``ρ = ε (L|x| + |∇f(x)| + α|div z|)`` per pixel (the rounding of ``x`` seen
through the step ``1/L``, and of the terms of ``r`` and of ``u − τ∇f(u)``), and the box certificate
weighs it with the distance to the farther bound: ``floor = Σ_i ρ_i max(x_i − lo, hi − x_i)``
(without a box ``‖ρ‖ · R``), plus ``ε α (TV(x) + |⟨z, ∇x⟩|)`` for the TV part; it is computed at
every check. The true suboptimality there is far smaller (docs/performance.md, "FISTA: the rounding
floor of the gap").
A sample whose gap has made no new low (by ``STALL_FALL``), nor its objective (by
``STALL_OBJECTIVE_FALL · ε``), in the last ``max(STALL_ITERS, k/2)`` of its ``k`` iterations, while
still above ``tol · F(x)``, stops there with ``converged`` False (a gap still falling slowly goes on):
at its rounding floor, or above it where the iterates settled but the certificate cannot show it
(in float32 the data term's own rounding, which the floor estimate leaves out, stops the iterates
short of where the first-order box term would meet ``tol``). A solve with such stops warns once at its end (``UserWarning``), naming
``tol``, the dtype, where the gap stopped and the remedies: at the floor, a ``tol`` at least the floor
estimate (rounded up to 1, 2 or 5 × 10ᵏ) or a float64 copy; above it, a float64 copy (below float64)
or a ``tol`` at least the gap reached (in float64). ``tol = 0`` never stops that way (it asks for
``max_iter`` iterations).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, ClassVar

import torch
from torch import Tensor

from lbinv._checks import check_int
from lbinv.lifted import LiftedLayer
from lbinv.regularizers import project_box_
from lbinv.solvers.box_certificate import BoxCertificate, box_term
from lbinv.solvers.data_term import LayerDataTerm
from lbinv.solvers.loop import Problem, masked, next_momentum, per_sample, rose, sample_dot, sample_norm
from lbinv.solvers.tv_prox import TVProx

#: Inner (FGP) steps per outer iteration at the start; they adapt between this floor and ``max_inner_steps``.
DEFAULT_INNER_STEPS = 20
MIN_INNER_STEPS = 10
DEFAULT_MAX_INNER_STEPS = 200
#: The step, in units ``1/L``, grows by ``STEP_GROW`` after each step that passes the sufficient-decrease test,
#: up to ``STEP_MAX``, and shrinks by ``STEP_SHRINK``, not below 1, after one that fails it (module docstring).
STEP_GROW, STEP_SHRINK, STEP_MAX = 1.25, 0.5, 3.0
#: ... and only from the first check on, while the gap is above this many times its rounding floor (module docstring).
STEP_FLOOR_MARGIN = 10.0
#: Without box bounds, ``‖x − x*‖`` is estimated as this factor times the distance moved since the last check.
RADIUS_FACTOR = 10.0
#: Inner steps double when the TV (prox) part of the gap is above this share of the gap, halve below the second.
INNER_MORE, INNER_LESS = 0.5, 0.1
#: At each check with a box where some active sample's gap is within this factor of its test, the gap is also
#: taken at refined dual points (:class:`~lbinv.solvers.box_certificate.BoxCertificate`, module docstring).
REFINE_FACTOR = 30.0
#: A sample at its gap's rounding floor stops (unconverged) once its gap has gone ``max(STALL_ITERS, k/2)``
#: of its ``k`` iterations without falling to ``STALL_FALL`` times its value at the last such fall, nor the
#: objective by more than ``STALL_OBJECTIVE_FALL`` units ε (relative) below its own last low.
STALL_FALL, STALL_ITERS, STALL_OBJECTIVE_FALL = 0.9, 100, 64.0


def _round_up(v: float) -> float:
    """``v > 0`` rounded up to 1, 2 or 5 × 10ᵏ (a ``tol`` to suggest)."""
    if not 0.0 < v < math.inf:
        return v
    scale = 10.0 ** math.floor(math.log10(v))
    return next(m * scale for m in (1.0, 2.0, 5.0, 10.0) if m * scale >= v * (1.0 - 1e-9))


class FISTA:
    """Single-layer TV-regularised lifted-Bregman inversion by monotone FISTA with adaptive restart
    and a warm-started inner TV prox (see the module docstring); state ``x`` (iterate), ``u``
    (momentum point), ``z`` (TV dual).

    Batched: the step ``τ = 1/‖W‖²`` and the number of inner steps are shared; ``α`` (so the prox
    weight ``τα``), the momentum, the restarts, the rejections and the stopping tests (:meth:`done`,
    and :meth:`stalled` at the rounding floor) are per sample.
    """

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options: ClassVar[dict[str, Any]] = {"inner_steps": DEFAULT_INNER_STEPS, "max_inner_steps": DEFAULT_MAX_INNER_STEPS}

    @staticmethod
    def check_options(options: dict[str, Any]) -> None:
        """Refuse a bad value of one of :attr:`options`."""
        for name in ("inner_steps", "max_inner_steps"):
            check_int(name, options[name])

    def __init__(self, layer: LiftedLayer, problem: Problem, inner_steps: int, max_inner_steps: int) -> None:
        self.alpha, self.tv, self.bounds, self.tol = problem.alpha, problem.tv, problem.bounds, problem.tol
        self.data = LayerDataTerm(layer, problem.y)
        self.max_inner_steps = int(max_inner_steps)
        self.inner_steps = min(int(inner_steps), self.max_inner_steps)
        self.lip = self.data.lipschitz
        self.tau = torch.full_like(problem.alpha, 1.0 / self.lip)  # the step, per sample: ≥ 1/L (module docstring)
        x = project_box_(problem.x_init.clone(), self.bounds)
        self.x, self.ax = x, self.data.pre_activation(x)  # ax = Wx + b
        self.u, self.au = self.x, self.ax
        self.fx = self._value(self.x, self.ax)
        self.f_best = self.fx  # the lowest objective accepted so far
        self.eps = torch.finfo(x.dtype).eps
        # the scale below which an objective counts as 0 for the relative test: √eps · F(x⁰)
        self.f_floor = math.sqrt(self.eps) * self.fx
        self.t = torch.ones_like(self.alpha)
        self.alpha_x = per_sample(self.alpha, x)
        self.z = problem.initial_dual()  # the inner TV prox's dual
        if self.tv is not None:
            self.tv_prox = TVProx(self.tv, self.bounds, self.tau * self.alpha, x)  # weight λ = τα, per sample
        #: finite bounds: the box of the certified gap (module docstring), else None
        self.box = self.bounds if self.bounds is not None and all(math.isfinite(v) for v in self.bounds) else None
        if self.box is not None and self.tv is not None and self.z is not None:  # the refined certificate
            self.certificate = BoxCertificate(self.data, self.alpha, self.tv, self.box, self.z)
        self.x_checked = self.x  # the iterate at the last check
        self.gap = torch.full_like(self.alpha, float("inf"))
        self.floor = torch.zeros_like(self.alpha)  # the gap's rounding floor at the last check (module docstring)
        self.gap_ref = torch.full_like(self.alpha, float("inf"))  # the gap at its last new low
        self.f_ref = self.fx  # the objective at its last new low
        self.low_at = torch.zeros_like(self.alpha, dtype=torch.long)  # the iteration of the last new low of either
        self.iterations = 0
        self.stall_stops = torch.zeros_like(self.alpha, dtype=torch.bool)  # samples :meth:`stalled` stopped

    def _value(self, x: Tensor, ax: Tensor) -> Tensor:
        """``F(x)`` per sample from ``ax = Wx + b``."""
        return self.data.objective(x, self.alpha, self.tv, ax)

    def prox(self, v: Tensor, p: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``prox_{τg}(v)`` by ``inner_steps`` FGP steps on the TV dual from ``p``; returns ``(x, p)``."""
        if p is None:
            return project_box_(v, self.bounds), None
        return self.tv_prox(v, p, self.inner_steps)

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        u, x, au, ax, tau = self.u, self.x, self.au, self.ax, self.tau
        f_u, residual = self.data.value_and_residual(au)  # f(u), σ(Wu + b) − y
        v = u.addcmul(per_sample(-tau, u), self.data.layer.affine.adjoint(residual))  # u − τ∇f(u)
        if self.z is not None:
            self.tv_prox.reweight(tau * self.alpha)
        x_hat, z_new = self.prox(v, self.z)
        ax_hat = self.data.pre_activation(x_hat)
        f_hat = self.data.value(ax_hat)
        # the sufficient-decrease test of the step: f(x̂) ≤ f(u) + ⟨∇f(u), x̂ − u⟩ + ‖x̂ − u‖²/(2τ), the inner
        # product taken as ⟨σ(Wu + b) − y, Wx̂ − Wu⟩; beyond rounding, NaN failing
        move = x_hat - u
        failed = rose(f_hat, f_u + sample_dot(residual, ax_hat - au) + sample_dot(move, move) / (2.0 * tau))
        if self.tv is not None:
            f_hat = f_hat + self.alpha * self.tv.value(x_hat)
        worse = rose(f_hat, self.f_best) & ~failed  # beyond rounding (module docstring)
        restart = worse | ((sample_dot(-move, x_hat - x) > 0.0) & ~failed)
        t_next = torch.where(restart, 1.0, next_momentum(self.t))
        beta = torch.where(restart, 0.0, (self.t - 1.0) / t_next)
        keep = failed | worse
        x_new = torch.where(per_sample(keep, x), x, x_hat)
        ax_new = torch.where(per_sample(keep, ax), ax, ax_hat)
        # a failed step leaves x, u and t as they were, and the next one tries a shorter step from u
        u_new = torch.where(per_sample(failed, u), u, torch.lerp(x_new, x, per_sample(-beta, x)))  # x⁺ + β(x⁺ − x)
        au_new = torch.where(per_sample(failed, au), au, torch.lerp(ax_new, ax, per_sample(-beta, ax)))  # W u⁺ + b
        self.x, self.ax, self.u, self.au = (
            masked(active, x_new, x),
            masked(active, ax_new, ax),
            masked(active, u_new, u),
            masked(active, au_new, au),
        )
        self.fx = masked(active, torch.where(keep, self.fx, f_hat), self.fx)
        self.f_best = torch.minimum(self.f_best, self.fx)
        self.t = masked(active, torch.where(failed, self.t, t_next), self.t)
        grown = torch.where(failed, STEP_SHRINK * tau, STEP_GROW * tau).clamp_(1.0 / self.lip, STEP_MAX / self.lip)
        # the step grows only while the last check found the gap well above its rounding floor: near the floor
        # a longer step stirs the rounding noise of F, whose chance new lows would hold off :meth:`stalled`
        clear = torch.isfinite(self.gap) & (self.gap > STEP_FLOOR_MARGIN * self.floor)
        grown = torch.where(clear, grown, 1.0 / self.lip)
        self.tau = masked(active, grown, tau)
        self.iterations += 1
        if z_new is not None and self.z is not None:
            self.z = masked(active, z_new, self.z)  # feasible, a warm start even from a failed step
        if measure:
            self._measure(active)
        return active

    def _measure(self, active: Tensor | None) -> None:
        """The duality gap at ``x`` and its rounding floor (module docstring), the stall count, and
        the number of inner steps for the next window."""
        x, z, tv, box = self.x, self.z, self.tv, self.box
        grad_f = self.data.gradient(self.ax)  # ∇f(x) = Wᵀw₀
        r = grad_f
        scale = x.abs().mul_(self.lip).add_(r.abs())  # L|x| + |∇f(x)| (+ α|div z| below): ρ/ε
        gap = floor = x.new_zeros(x.shape[0])
        if tv is not None and z is not None:
            grad_x = tv.grad(x)
            tv_x, tv_z = tv.pointwise_norm(grad_x).flatten(1).sum(1), sample_dot(z, grad_x)
            gap = self.alpha * (tv_x - tv_z)
            floor = self.alpha * (tv_x + tv_z.abs())
            alpha_div_z = self.alpha_x * tv.div(z)
            scale.add_(alpha_div_z.abs())
            r = r - alpha_div_z
        tv_part = gap
        radius = RADIUS_FACTOR * sample_norm(x - self.x_checked)
        if box is not None:
            lo, hi = box
            gap = gap + box_term(r, x, lo, hi)
            floor = floor + sample_dot(scale, torch.maximum(x - lo, hi - x))
            # the schedule of the inner steps compares the TV part with the estimate of the unboxed case
            # (module docstring); r on a pixel at a bound, pointing out of the box, is no residual there
            free = torch.where(((x <= lo) & (r > 0)) | ((x >= hi) & (r < 0)), 0.0, r)
            estimate = tv_part + sample_norm(free) * radius
            schedule_gap = torch.where(radius > 0.0, torch.minimum(gap, estimate), gap)
        else:
            gap = gap + sample_norm(r) * radius
            floor = floor + sample_norm(scale) * radius
            schedule_gap = gap
        self.x_checked = x
        if tv is not None and z is not None:
            share = tv_part / schedule_gap.clamp_min(torch.finfo(gap.dtype).tiny)
            # the refined certificate only where it may decide the test: a gap within REFINE_FACTOR of it
            near = gap <= REFINE_FACTOR * self.tol * torch.maximum(self.fx, self.f_floor)
            if active is not None:
                share, near = torch.where(active, share, 0.0), near & active
            # one host synchronisation per check, as the loop's own
            share, near = torch.stack([share.max(), near.any().to(share.dtype)]).detach().tolist()
            if share > INNER_MORE:
                self.inner_steps = min(2 * self.inner_steps, self.max_inner_steps)
            elif share < INNER_LESS:
                self.inner_steps = max(min(MIN_INNER_STEPS, self.max_inner_steps), self.inner_steps // 2)
            if near and box is not None:
                gap = torch.fmin(gap, self.certificate.refined_gap(x, self.ax, grad_f, grad_x, tv_x, z))
        self.gap = masked(active, gap, self.gap)
        self.floor = masked(active, self.eps * floor, self.floor)
        fell = gap <= STALL_FALL * self.gap_ref  # NaN: not
        descending = self.f_best < self.f_ref * (1.0 - STALL_OBJECTIVE_FALL * self.eps)  # not at a floor yet
        self.gap_ref = masked(active, torch.where(fell, gap, self.gap_ref), self.gap_ref)
        self.f_ref = masked(active, torch.where(descending, self.f_best, self.f_ref), self.f_ref)
        self.low_at = masked(active, torch.where(fell | descending, self.iterations, self.low_at), self.low_at)

    def done(self) -> Tensor:
        """Samples whose duality gap is at most ``tol`` times their objective (see the module docstring)."""
        return (self.gap <= self.tol * torch.maximum(self.fx, self.f_floor)) & torch.isfinite(self.gap)

    def stalled(self) -> Tensor:
        """Samples that cannot meet their test: not :meth:`done`, and without a new low of the gap or
        the objective for ``max(STALL_ITERS, k/2)`` iterations (module docstring): at the gap's rounding
        floor, or where the iterates settled above it (float32 rounding in the data term, which the
        floor estimate leaves out). The loop stops them unconverged, without a host synchronisation;
        :meth:`finish` warns. Never with ``tol = 0``."""
        if self.tol <= 0.0:
            return torch.zeros_like(self.gap, dtype=torch.bool)
        window = max(STALL_ITERS, self.iterations // 2)
        stuck = (self.iterations - self.low_at >= window) & ~self.done()
        self.stall_stops |= stuck
        return stuck

    def finish(self) -> None:
        """After the loop: one warning if :meth:`stalled` stopped any sample. Its text depends only on
        ``tol``, the dtype, where the gap stopped (at its rounding floor or above) and the larger of the
        two rounded up to 1, 2 or 5 × 10ᵏ, so that a training run inverting at every epoch shows it once
        or a few times. Above the floor in a dtype below float64 it suggests no ``tol``: there the gap,
        first order in the residual, stops far above the iterates' true gap (measured: a certified 0.1–0.5
        of ``F`` where ``F`` was within 1e−6 of the float64 optimum), and a float64 copy certifies."""
        if not bool(self.stall_stops.any()):  # one host synchronisation per solve (and one more to warn)
            return
        stops = self.stall_stops
        reached = _round_up(float((torch.maximum(self.gap, self.floor)[stops] / self.fx[stops]).max()))
        at_floor = bool((self.gap <= self.floor)[stops].all())
        dtype = str(self.x.dtype).removeprefix("torch.")
        copy = "invert a float64 copy (copy.deepcopy(model).double(), y.double())"
        kind = "certified" if self.box is not None else "estimated"
        within = f"with converged=False (their objective is within the gap they reached of the optimum, {kind})"
        if at_floor:
            remedy = f"pass tol >= {reached:.0e}" + ("" if self.x.dtype == torch.float64 else f", or {copy}")
            text = (
                f"tol={self.tol:g} is below the rounding floor of the {kind} duality gap in {dtype} for some samples: "
                f"they stopped at that floor {within}. To meet it, {remedy}."
            )
        else:
            text = (
                f"the {kind} duality gap stopped falling above tol={self.tol:g} in {dtype} for some samples, at up to "
                f"{reached:.0e} of the objective: they stopped there {within}. "
            )
            if self.x.dtype == torch.float64:
                text += f"To meet it, pass tol >= {reached:.0e}."
            else:
                text += f"In {dtype} the gap, first order in the residual, can stop far above the true one; to certify tol, {copy}."
        warnings.warn(f"FISTA: {text}", stacklevel=4)  # the caller of invert (finish <- iterate <- invert)

    def objective(self) -> Tensor:
        """``F(x)`` per sample: kept with ``x`` at every step."""
        return self.fx
