"""Single-layer lifted-Bregman inversion by accelerated proximal gradient (FISTA).

Problem (paper eq. 6, MATH.md §3–5), per sample::

    min_x  F(x) = f(x) + g(x),   f(x) = B_Ψ(y, Wx + b),   g(x) = α TV(x) + ι_box(x).

``f`` is smooth, ``∇f(x) = Wᵀ(σ(Wx + b) − y)`` (no derivative of σ, MATH.md §2), with Lipschitz
constant ``L = ‖W‖₂²`` (:func:`~lbinv.solvers.loop.lipschitz`). One outer iteration, step ``τ = 1/L``::

    x̂ = prox_{τg}( u − τ∇f(u) )                         (proximal gradient step at the momentum point u)
    x⁺ = x̂ if F(x̂) ≤ F(x) else x                          (monotone: a step that increases F is rejected)
    t⁺ = (1 + √(1 + 4t²)) / 2,  u⁺ = x⁺ + ((t − 1)/t⁺)(x⁺ − x)

with the adaptive restart of O'Donoghue & Candès (2015): a sample restarts its momentum (``t⁺ = 1``,
``u⁺ = x⁺``) when its objective went up (the step is then also rejected, as in Beck & Teboulle's
monotone FISTA) or its momentum points uphill, ``⟨u − x̂, x̂ − x⟩ > 0``. ``W(u⁺) + b`` follows from
``Wx⁺ + b`` and ``Wx + b`` by linearity, so an iteration costs one product with ``W`` (at ``x̂``) and one
with ``Wᵀ`` (at ``u``), as a plain gradient step does.

The prox of ``τ(α TV + ι_box)`` (TV denoising with weight ``λ = τα``) has no closed form; it is
computed by the fast gradient projection (FGP) of Beck & Teboulle (2009) on its dual
(:class:`~lbinv.solvers.tv_prox.TVProx`) for ``m`` inner steps without any host synchronisation, warm-started from the dual ``p`` of the
previous outer iteration. ``m`` adapts at the checks (every ``check_every`` iterations, where the
loop synchronises anyway): it doubles while the prox's inexactness dominates the duality gap below
(its TV part is ``1/τ`` times the duality gap of the prox problem), and halves when it is a small
part, within ``[MIN_INNER_STEPS, max_inner_steps]``.

Stopping test — what ``tol`` means: a **relative duality gap**. With ``w = σ(Wx + b) − y`` and ``z``
the TV dual, ``r = Wᵀw − α div z = ∇f(x) − α div z``, Fenchel–Young (with equality for this ``w``)
and ``TV(x) ≥ ⟨z, ∇x⟩`` for ``‖z_ij‖ ≤ 1`` give, for the minimiser ``x*``::

    F(x) − F(x*) ≤ gap(x) := α(TV(x) − ⟨z, ∇x⟩) + ⟨r, x − x*⟩.

- With box bounds (both finite), ``⟨r, x − x*⟩ ≤ max_{x' ∈ box} ⟨r, x − x'⟩`` and ``gap`` is an exact
  duality gap: a **certified** upper bound on ``F(x) − F*``.
- Without (an unbounded ``x`` has no finite dual bound: ``div`` has no constant component), the
  second term is estimated by ``‖r‖ · R`` with ``R = RADIUS_FACTOR · ‖x − x_prev‖`` (``x_prev``: the
  iterate at the previous check) standing in for ``‖x − x*‖``: an **estimate**, not a bound. On
  the circle problems it stayed above the true gap at every check (about 1–3× the true gap near
  1e−6), and near the optimum the exact TV part dominates it.

A sample stops when ``gap(x) ≤ tol · F(x)``: ``tol`` bounds the relative objective gap
``(F(x) − F*) / F(x)`` (certified with a box, estimated without). An objective below
``√eps · F(x⁰)`` counts as that floor (a problem whose optimum is 0, e.g. an exact fit without
regulariser, would never meet a purely relative test). The gap is only as small as the TV dual is
accurate: below a relative 1e−9 or so it falls more slowly than the objective, so a tighter ``tol``
may run to ``max_iter`` with an ``x`` optimal to nearly machine precision.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from lbinv.lifted import LiftedLayer
from lbinv.regularizers import project_box_
from lbinv.solvers.loop import Problem, lipschitz, masked, next_momentum, per_sample, sample_norm
from lbinv.solvers.tv_prox import TVProx

#: Inner (FGP) steps per outer iteration at the start; they adapt between this floor and ``max_inner_steps``.
DEFAULT_INNER_STEPS = 20
MIN_INNER_STEPS = 10
DEFAULT_MAX_INNER_STEPS = 200
#: Without box bounds, ``‖x − x*‖`` is estimated as this factor times the distance moved since the last check.
RADIUS_FACTOR = 10.0
#: Inner steps double when the TV (prox) part of the gap is above this share of the gap, halve below the second.
INNER_MORE, INNER_LESS = 0.5, 0.1


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-sample inner product, ``(B,)``."""
    return (a * b).flatten(1).sum(1)


class FISTA:
    """Single-layer TV-regularised lifted-Bregman inversion by monotone FISTA with adaptive restart
    and a warm-started inner TV prox (see the module docstring); state ``x`` (iterate), ``u``
    (momentum point), ``z`` (TV dual).

    Batched: the step ``τ = 1/‖W‖²`` and the number of inner steps are shared; ``α`` (so the prox
    weight ``τα``), the momentum, the restarts, the rejections and the stopping test are per sample.
    """

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options: ClassVar[dict[str, Any]] = {"inner_steps": DEFAULT_INNER_STEPS, "max_inner_steps": DEFAULT_MAX_INNER_STEPS}

    def __init__(self, layer: LiftedLayer, problem: Problem, inner_steps: int, max_inner_steps: int) -> None:
        self.layer, self.y, self.alpha, self.tv = layer, problem.y, problem.alpha, problem.tv
        self.bounds, self.tol = problem.bounds, problem.tol
        self.max_inner_steps = int(max_inner_steps)
        self.inner_steps = min(int(inner_steps), self.max_inner_steps)
        self.tau = 1.0 / lipschitz(layer.affine.opnorm())
        x = project_box_(problem.x_init.clone(), self.bounds)
        self.x, self.ax = x, layer.affine.forward(x)  # ax = Wx + b
        self.u, self.au = self.x, self.ax
        self.fx = self._value(self.x, self.ax)
        # the scale below which an objective counts as 0 for the relative test: √eps · F(x⁰)
        self.f_floor = math.sqrt(torch.finfo(x.dtype).eps) * self.fx
        self.t = torch.ones_like(self.alpha)
        self.alpha_x = per_sample(self.alpha, x)
        self.z = None
        if self.tv is not None:
            self.tv_prox = TVProx(self.tv, self.bounds, self.tau * self.alpha, x)  # weight λ = τα, per sample
            self.z = self.tv_prox.initial_dual(x)
        self.bounded = self.bounds is not None and all(math.isfinite(v) for v in self.bounds)
        self.x_checked = self.x  # the iterate at the last check
        self.gap = torch.full_like(self.alpha, float("inf"))

    def _value(self, x: Tensor, ax: Tensor) -> Tensor:
        """``F(x)`` per sample from ``ax = Wx + b``."""
        value = self.layer.activation.bregman(self.y, ax)
        return value if self.tv is None else value + self.alpha * self.tv.value(x)

    def prox(self, v: Tensor, p: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """``prox_{τg}(v)`` by ``inner_steps`` FGP steps on the TV dual from ``p``; returns ``(x, p)``."""
        if self.tv is None:
            return project_box_(v.clone(), self.bounds), None
        return self.tv_prox(v, p, self.inner_steps)

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        layer, u, x, au, ax = self.layer, self.u, self.x, self.au, self.ax
        grad = layer.affine.adjoint(layer.activation(au) - self.y)
        x_hat, z_new = self.prox(torch.add(u, grad, alpha=-self.tau), self.z)
        ax_hat = layer.affine.forward(x_hat)
        f_hat = self._value(x_hat, ax_hat)
        worse = ~(f_hat <= self.fx)  # NaN counts as worse
        restart = worse | (_dot(u - x_hat, x_hat - x) > 0.0)
        t_next = torch.where(restart, 1.0, next_momentum(self.t))
        beta = torch.where(restart, 0.0, (self.t - 1.0) / t_next)
        x_new = torch.where(per_sample(worse, x), x, x_hat)
        ax_new = torch.where(per_sample(worse, ax), ax, ax_hat)
        u_new = torch.lerp(x_new, x, per_sample(-beta, x))  # x⁺ + β(x⁺ − x)
        au_new = torch.lerp(ax_new, ax, per_sample(-beta, ax))  # W u⁺ + b, by linearity
        self.x, self.ax, self.u, self.au = (masked(active, x_new, x), masked(active, ax_new, ax),
                                            masked(active, u_new, u), masked(active, au_new, au))
        self.fx = masked(active, torch.where(worse, self.fx, f_hat), self.fx)
        self.t = masked(active, t_next, self.t)
        if z_new is not None:
            self.z = masked(active, z_new, self.z)
        if measure:
            self._measure(active)
        return active

    def _measure(self, active: Tensor | None) -> None:
        """The duality gap at ``x`` (module docstring), and the number of inner steps for the next window."""
        x, z = self.x, self.z
        r = self.layer.affine.adjoint(self.layer.activation(self.ax) - self.y)  # ∇f(x)
        gap = x.new_zeros(x.shape[0])
        if self.tv is not None:
            grad_x = self.tv.grad(x)
            gap = self.alpha * (self.tv.pointwise_norm(grad_x).flatten(1).sum(1) - _dot(z, grad_x))
            r = r.addcmul_(self.alpha_x, self.tv.div(z), value=-1.0)
        tv_part = gap
        if self.bounded:
            lo, hi = self.bounds
            gap = gap + torch.where(r > 0, r * (x - lo), r * (x - hi)).flatten(1).sum(1)
        else:
            gap = gap + sample_norm(r) * RADIUS_FACTOR * sample_norm(x - self.x_checked)
        self.x_checked = x
        self.gap = masked(active, gap, self.gap)
        if self.tv is not None:
            share = tv_part / gap.clamp_min(torch.finfo(gap.dtype).tiny)
            if active is not None:
                share = torch.where(active, share, 0.0)
            share = float(share.max().detach())  # one host synchronisation per check, as the loop's own
            if share > INNER_MORE:
                self.inner_steps = min(2 * self.inner_steps, self.max_inner_steps)
            elif share < INNER_LESS:
                self.inner_steps = max(min(MIN_INNER_STEPS, self.max_inner_steps), self.inner_steps // 2)

    def done(self) -> Tensor:
        """Samples whose duality gap is at most ``tol`` times their objective (see the module docstring)."""
        return (self.gap <= self.tol * torch.maximum(self.fx, self.f_floor)) & torch.isfinite(self.gap)

    def objective(self) -> Tensor:
        """``F(x)`` per sample: kept with ``x`` at every step."""
        return self.fx
