"""Multi-layer lifted-Bregman inversion by inertial block coordinate descent (the problem of MATH.md §6).

The objective and the blocks are those of :mod:`lbinv.solvers.coordinate_descent` (paper eqs. 15–17);
the sweep differs in three ways:

- **Momentum on every block** (iPALM, Pock & Sabach 2016): block ``x_j`` takes its proximal-gradient
  step from the extrapolated point ``u_j = x_j + β (x_j − x_j^prev)`` (its value one sweep earlier),
  with FISTA's ``β = (t − 1)/t⁺``, ``t⁺ = (1 + √(1 + 4t²))/2``, per sample. The gradient at ``u_j``
  needs the readers' ``a_k(u_j)``: one product with ``A_kj`` of ``u_j − x_j``, or, for a node that
  reads ``x_0`` only, ``a_k(x_0) + β (a_k(x_0) − a_k(x_0^prev))`` by linearity.
- **Hidden blocks follow their inputs**: the blocks before ``x_j`` moved in this sweep, so its node's
  value ``σ_j(a_j)`` changed (``x_j`` is the value of node ``j − 1`` in code, ``net.nodes[j - 1]``);
  ``x_j`` steps from ``u_j + ρ_j (σ_j(a_j) − σ_j(a_j°))``, ``a_j°`` its pre-activation at the start
  of the sweep. With the readers fixed, the exact minimiser of block ``j`` answers a change ``δ``
  of ``σ_j(a_j)`` by ``(Ψ_j'' + H_j)⁻¹ Ψ_j'' δ`` (``(I + H_j)⁻¹ δ`` for a piecewise-linear ``σ_j``),
  ``0 ⪯ H_j ⪯ L_j`` its readers' curvature; as ``Ψ_j'' ⪰ I``, the eigenvalues lie in
  ``[1/(1 + L_j), 1]``: per sample ``ρ_j = max(c, 1/(1 + L_j))``, where
  ``c`` starts at 1 (follow fully: the directions the readers do not see) and halves whenever the
  sample's objective rises. Without it the blocks crawl along the valley in which the hidden
  variables track the input (docs/performance.md, "Several layers: convergence").
- **The input block is a proximal-gradient step**, ``x_0 ← prox_{τ₀(α TV + ι_box)}(u_0 − τ₀ g_0)``
  with ``τ₀ = 1/L_0``, the TV prox by a few warm-started FGP steps (:class:`~lbinv.solvers.tv_prox.TVProx`),
  instead of the paper's PDHG step. The hidden blocks' step is the paper's.

Guarantee: the joint problem is not convex, so no rate is claimed: a sample whose objective rose
over a sweep restarts its momentum (``t = 1``; O'Donoghue & Candès 2015) and halves ``c``. A fixed
point of the sweep moves no block, so it is a fixed point of the paper's sweep too. How it compares
with the paper's sweep: docs/performance.md, "Inertial coordinate descent against the paper's sweep".

Stopping test — what ``tol`` means: the objective fell by at most ``tol · F`` over the last
``check_every`` sweeps (and did not rise beyond rounding).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

import torch
from torch import Tensor

from lbinv._checks import check_int
from lbinv.lifted import LiftedNetwork
from lbinv.regularizers import project_box_
from lbinv.solvers.blocks import LiftedBlocks, check_hidden_init
from lbinv.solvers.loop import Problem, masked, next_momentum, per_sample, rose
from lbinv.solvers.tv_prox import TVProx

#: FGP steps of the input block's TV prox per sweep (warm-started, so the prox sharpens over the sweeps).
DEFAULT_INPUT_INNER_STEPS = 5


class AcceleratedCoordinateDescent(LiftedBlocks):
    """State ``x``, ``hidden`` (as :class:`~lbinv.solvers.coordinate_descent.LiftedBlocks`), their values one
    sweep earlier, the TV dual ``z`` of the input block's prox, and per sample the momentum ``t`` and
    the factor ``c`` of how far hidden blocks follow their inputs."""

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options: ClassVar[dict[str, Any]] = {"hidden_init": "forward", "input_inner_steps": DEFAULT_INPUT_INNER_STEPS}

    @staticmethod
    def check_options(options: dict[str, Any]) -> None:
        """Refuse a bad value of one of :attr:`options`."""
        check_hidden_init(options)
        check_int("input_inner_steps", options["input_inner_steps"])

    def __init__(self, net: LiftedNetwork, problem: Problem, hidden_init: str, input_inner_steps: int) -> None:
        problem = replace(problem, x_init=project_box_(problem.x_init.clone(), problem.bounds))
        super().__init__(net, problem, hidden_init)
        self.bounds, self.inner_steps = problem.bounds, int(input_inner_steps)
        self.input_step = 1.0 / self.lips[0]
        self.z = problem.initial_dual()  # the TV dual of the input block's prox
        if self.tv is not None:
            self.tv_prox = TVProx(self.tv, self.bounds, self.input_step * self.alpha, self.x)
        self.previous = self._values()
        # a node that reads x_0 only: its pre-activation at x_0's previous value (extrapolation by linearity)
        self.reads_input_only = [{e.source for e in node.edges} == {0} for node in net.nodes]
        self.pre_previous: list[Tensor | None] = [None] * len(net.nodes)
        self.t = torch.ones_like(self.alpha)
        self.follow = torch.ones_like(self.alpha)  # c: how far hidden blocks follow (module docstring)
        self.follow_floor = [1.0 / (1.0 + lip) for lip in self.lips[1:]]  # 1/(1 + L_j) per hidden block
        self.value = self.objective()
        # an objective below eps · F(x_init) counts as that floor (an exact fit, F* = 0, still stops)
        self.f_floor = torch.finfo(self.value.dtype).eps * self.value
        self.value_checked = self.value  # the objective at the last check (the first window starts at x_init)
        self.decrease = torch.full_like(self.value, float("inf"))

    def _pre(self, k: int) -> Tensor:
        """``a_k`` at the current variables; when the stale ``a_k`` of a node that reads ``x_0`` only is
        replaced, the old one is kept as ``pre_previous[k]``: ``a_k`` at ``x_0``'s value one sweep earlier,
        since ``x_0`` moves once per sweep and its readers are refreshed before it moves again."""
        if self.stale[k] and self.reads_input_only[k]:
            self.pre_previous[k] = self.pre[k]
        return super()._pre(k)

    def _extrapolated_gradient(self, j: int, beta: Tensor, shift: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(u_j, ∇_j at u_j)``: the momentum point of block ``j`` (moved by ``shift``, if any) and the
        gradient of its readers' terms there."""
        x_j = self._values()[j]
        u = x_j.addcmul(per_sample(beta, x_j), x_j - self.previous[j])
        if shift is not None:
            u = u.add_(shift)
        pre, move = {}, u - x_j
        for k, edges in self.readers[j].items():
            a, a_previous = self._pre(k), self.pre_previous[k]
            if self.reads_input_only[k] and a_previous is not None:
                pre[k] = a.addcmul(per_sample(beta, a), a - a_previous)  # by linearity
            else:
                pre[k] = a + sum(e.affine.linear(move) for e in edges)
        return u, self._gradient_from(pre, j)

    def _follow_shift(self, j: int, start_pre: Tensor) -> Tensor:
        """``ρ_j (σ_j(a_j) − σ_j(a_j°))``: how far hidden block ``j`` follows its node's change in this sweep."""
        start = self._activation_at(j - 1, start_pre)  # known from the last sweep, unless a_j moved since
        change = self._activation_at(j - 1, self._pre(j - 1)) - start
        rho = self.follow.clamp_min(self.follow_floor[j - 1])
        return change.mul_(per_sample(rho, change))

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        t_next = next_momentum(self.t)
        beta = (self.t - 1.0) / t_next
        current = self._values()
        start_pre = [self._pre(k) for k in range(len(self.net.nodes) - 1)]  # a_j° of the hidden nodes
        u, grad = self._extrapolated_gradient(0, beta)
        v = u.add(grad, alpha=-self.input_step)
        if self.z is None:
            new = project_box_(v, self.bounds)
        else:
            new, z = self.tv_prox(v, self.z, self.inner_steps)
            self.z = masked(active, z, self.z)
        self.x = masked(active, new, self.x)
        self._moved(0)
        for j in range(1, len(self.net.nodes)):
            u, grad = self._extrapolated_gradient(j, beta, self._follow_shift(j, start_pre[j - 1]))
            self.hidden[j - 1] = masked(active, self._hidden_step(j, u, grad), self.hidden[j - 1])
            self._moved(j)
        self.previous = [masked(active, c, p) for c, p in zip(current, self.previous)]
        value = self.objective()
        risen = rose(value, self.value)  # beyond rounding; NaN counts as a rise
        self.t = masked(active, torch.where(risen, 1.0, t_next), self.t)
        self.follow = masked(active, torch.where(risen, 0.5 * self.follow, self.follow), self.follow)
        self.value = masked(active, value, self.value)
        if measure:
            self.decrease = masked(active, self.value_checked - self.value, self.decrease)
            self.value_checked = self.value
        return active

    def done(self) -> Tensor:
        """The objective fell by at most ``tol · F`` (and did not rise beyond rounding, :func:`~lbinv.solvers.loop.rose`)
        over the last check window. A ``tol`` below the dtype's resolution is never met: a fall of
        exactly 0 there is rounding, not proof."""
        scale = torch.maximum(self.value, self.f_floor)
        resolvable = self.tol >= torch.finfo(self.value.dtype).eps
        return ~rose(self.value, self.value + self.decrease) & (self.decrease <= self.tol * scale) & resolvable
