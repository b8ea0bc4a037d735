"""Blocks that several lifted solvers share: the PDHG step of the input block and the lifted
variables of the multi-layer sweeps.

- :class:`PrimalDualStep`: one Condat–Vũ / PDHG update of ``(x, z)`` for ``f(x) + α TV(x) + ι_box(x)``
  (MATH.md §5, paper eqs. 12–14), with its step rules (:data:`STEP_RULES`, :func:`pdhg_step_sizes`);
  the one-layer :class:`~lbinv.solvers.pdhg.PDHG` and the input block of the paper's sweep
  (:class:`~lbinv.solvers.coordinate_descent.CoordinateDescent`) take it.
- :class:`LiftedBlocks`: the variables ``x_0, x_1, …`` of a lifted network (MATH.md §6), who reads
  each, the Lipschitz constants of the blocks' gradients, the cached pre-activations and the
  hidden blocks' proximal-gradient step; both sweeps
  (:mod:`~lbinv.solvers.coordinate_descent`, :mod:`~lbinv.solvers.accelerated_cd`) build on it.
"""

from __future__ import annotations

import math
import operator
from collections import defaultdict
from functools import reduce
from typing import Any, Iterable

import torch
from torch import Tensor

from lbinv._checks import check_number
from lbinv.lifted import LiftedNetwork
from lbinv.lifting import LiftedEdge
from lbinv.operators import operator_norm
from lbinv.regularizers import TotalVariation, project_box_
from lbinv.solvers.data_term import BregmanTerm
from lbinv.solvers.loop import Problem, lipschitz, masked, per_sample, sample_norm

#: Default primal/dual balance ``τ_z‖α∇‖`` of the "balanced" step rule (see docs/experiments.md, "Step sizes").
DEFAULT_BALANCE = 32.0

STEP_RULES = ("balanced", "paper")

HIDDEN_INITS = ("forward", "zeros")


def check_step_options(options: dict[str, Any]) -> None:
    """Refuse a ``step_rule`` not in :data:`STEP_RULES` or a ``balance`` that is not a positive number."""
    if options["step_rule"] not in STEP_RULES:
        raise ValueError(f"step_rule: expected one of {STEP_RULES}, got {options['step_rule']!r}")
    check_number("balance", options["balance"], minimum=0.0, strict=True)


def check_hidden_init(options: dict[str, Any]) -> None:
    """Refuse a ``hidden_init`` not in :data:`HIDDEN_INITS`."""
    if options["hidden_init"] not in HIDDEN_INITS:
        raise ValueError(f"hidden_init: expected one of {HIDDEN_INITS}, got {options['hidden_init']!r}")


def pdhg_step_sizes(lip: float, alpha: Tensor, k_norm: float, rule: str, balance: float) -> tuple[Tensor, Tensor]:
    """Primal and dual step sizes ``(τ_x, τ_z)``, each ``(B,)``, for PDHG with smooth part of
    Lipschitz constant ``lip`` and coupling operator ``K = α∇`` with ``‖∇‖ ≤ k_norm`` (MATH.md §5).

    Condat–Vũ convergence needs ``1/τ_x − τ_z ‖K‖² ≥ lip / 2``.

    - ``"paper"``: ``τ_z = 1/(8α)``, ``τ_x = 1/lip`` (valid while ``α ≤ lip/2``).
    - ``"balanced"``: ``τ_z ‖K‖ = balance`` and the condition
      with equality, ``1/τ_x = lip/2 + balance·‖K‖``. ``balance`` weighs the dual step against the
      primal one; the paper's rule is ``balance = 1/√8`` with a primal step below the bound.
    """
    k = alpha * k_norm
    if rule == "paper":
        tau_z = 1.0 / (k_norm**2 * alpha)
        tau_x = torch.full_like(alpha, 1.0 / lip)
    else:
        tau_z = balance / k
        tau_x = 1.0 / (0.5 * lip + balance * k)
    return tau_x, tau_z


class PrimalDualStep:
    """One Condat–Vũ / PDHG update of ``(x, z)`` for ``f(x) + α TV(x) + ι_box(x)``, batched::

        x⁺ = Proj_box( x − τ_x (∇f(x) − α div z) )
        z⁺ = Proj_{‖·‖≤1}( z + τ_z α ∇(2x⁺ − x) )

    It converges (Condat 2013, Vũ 2013) to a saddle point when ``1/τ_x − τ_z α²‖∇‖² ≥ L/2``, ``L``
    the Lipschitz constant of ``∇f``: :func:`pdhg_step_sizes` meets it with equality ("balanced")
    or, while ``α ≤ L/2``, below ("paper"). ``alpha``, ``tau_x`` and ``tau_z`` are ``(B,)``; with
    ``tv=None`` it is projected gradient descent on ``f`` with ``τ_x = 1/L`` (and ``z`` is None).

    :meth:`change` measures a step for the stopping test: ``max(‖Δx‖, ‖Δz‖ / (8ατ_z))``. The dual
    change is expressed per step of the paper's size ``τ_z = 1/(8α)``, so that ``tol`` means the
    paper's test under its step rule and the same thing under any other (a large dual step makes
    ``z`` move more per iteration in flat regions, where it does not affect ``x``).
    """

    def __init__(self, lip: float, problem: Problem, step_rule: str, balance: float) -> None:
        """Step sizes for a smooth term whose gradient is ``lip``-Lipschitz (``B_Ψ(data, Wx + b)``:
        :func:`~lbinv.solvers.loop.lipschitz` of ``‖W‖``)."""
        alpha, like = problem.alpha, problem.x_init
        self.tv, self.bounds = problem.tv, problem.bounds
        self.alpha = per_sample(alpha, like)
        if self.tv is None:
            tau_x, tau_z = torch.full_like(alpha, 1.0 / lip), torch.zeros_like(alpha)
        else:
            tau_x, tau_z = pdhg_step_sizes(lip, alpha, TotalVariation.NORM_BOUND, step_rule, balance)
            self.dual_scale = 1.0 / (TotalVariation.NORM_BOUND**2 * alpha * tau_z)
            self.primal_tv = per_sample(tau_x * alpha, like)  # τ_x α, per sample
            self.dual_tv = per_sample(tau_z * alpha, like).unsqueeze(1)  # τ_z α, per sample, against ∇x
        self.tau_x = per_sample(tau_x, like)
        self.tau_z = per_sample(tau_z, like)

    def change(self, x_new: Tensor, x_old: Tensor, z_new: Tensor | None, z_old: Tensor | None) -> Tensor:
        """Per-sample size of the last step, ``max(‖Δx‖, ‖Δz‖ / (8ατ_z))``."""
        dx = sample_norm(x_new - x_old)
        if z_new is None or z_old is None:
            return dx
        return torch.maximum(dx, sample_norm(z_new - z_old) * self.dual_scale)

    def __call__(self, x: Tensor, z: Tensor | None, grad_f: Tensor, active: Tensor | None) -> tuple[Tensor, Tensor | None]:
        # fused: every in-place operation acts on a tensor created here, never on x, z or grad_f
        # (x is the caller's x_init at the first step)
        x_new = torch.addcmul(x, self.tau_x, grad_f, value=-1.0)  # x − τ_x ∇f
        if self.tv is None or z is None:
            return masked(active, project_box_(x_new, self.bounds), x), None
        x_new = project_box_(x_new.addcmul_(self.primal_tv, self.tv.div(z)), self.bounds)  # + τ_x α div z
        x_new = masked(active, x_new, x)
        z_new = torch.addcmul(z, self.dual_tv, self.tv.grad(torch.lerp(x, x_new, 2.0)))  # z + τ_z α ∇(2x⁺ − x)
        z_new = masked(active, self.tv.project_dual_(z_new), z)
        return x_new, z_new


class LiftedBlocks:
    """The variables of a lifted network and what both sweeps share (MATH.md §6).

    Variables: ``x`` (= x_0, the input) and ``hidden`` (= [x_1, …, x_{K−1}], the hidden nodes'
    values); node ``k`` has the pre-activation ``a_k = Σ_j A_kj x_j + b_k`` and the data term
    ``B_k(target_k, a_k)`` (:class:`~lbinv.solvers.data_term.BregmanTerm`, ``terms[k]``), its target
    ``x_{k+1}`` or, for the last node, the data ``y``. Kept: the nodes that read each variable
    (``readers``), the Lipschitz constants ``L_j`` of the blocks' gradients (``lips``), and the
    pre-activations at the current variables (``pre``, recomputed when ``stale``).
    """

    def __init__(self, net: LiftedNetwork, problem: Problem, hidden_init: str) -> None:
        self.net, self.y, self.alpha, self.tv, self.tol = net, problem.y, problem.alpha, problem.tv, problem.tol
        self.x = x_init = problem.x_init
        self.terms = [BregmanTerm(node.activation) for node in net.nodes]
        # readers[j]: the nodes k that read x_j, each with the edges doing so
        self.readers: list[dict[int, list[LiftedEdge]]] = [defaultdict(list) for _ in range(len(net.nodes))]
        for k, node in enumerate(net.nodes):
            for edge in node.edges:
                self.readers[edge.source][k].append(edge)
        shapes = [net.input_shape, *(node.shape for node in net.nodes)]
        self.lips = [_lipschitz(readers, shape) for readers, shape in zip(self.readers, shapes)]
        if hidden_init == "forward":
            self.hidden = net.forward_all(x_init)[:-1]
        else:
            self.hidden = [x_init.new_zeros((x_init.shape[0], *node.shape)) for node in net.nodes[:-1]]
        self.hidden_steps = [1.0 / lip for lip in self.lips[1:]]
        # the preimages of the hidden blocks' last prox (smooth activations): where the next sweep's
        # prox is close, one Newton step from them solves it (ProxActivation.prox_and_preimage)
        self.preimages: list[Tensor | None] = [None] * len(self.hidden)
        # pre[k] = a_k at the current variables; after x_j moves, the a_k of its readers are stale
        # until needed (for a chain: one forward and one adjoint per layer and sweep)
        self.pre = [node.pre_activation(self._values()) for node in net.nodes]
        self.stale = [False] * len(net.nodes)
        # sigma_at[k] = (a, σ_k(a)) for the last pre-activation at which σ_k was evaluated by
        # _activation_at: pre-activations are never modified in place, so the tensor names its value
        self.sigma_at: list[tuple[Tensor, Tensor] | None] = [None] * len(net.nodes)

    def _values(self) -> list[Tensor]:
        return [self.x, *self.hidden]

    def _target(self, k: int) -> Tensor:
        """What node ``k``'s value should be: ``x_{k+1}``, or ``y`` for the last node."""
        return self.y if k == len(self.net.nodes) - 1 else self.hidden[k]

    def _pre(self, k: int) -> Tensor:
        if self.stale[k]:
            self.pre[k] = self.net.nodes[k].pre_activation(self._values())
            self.stale[k] = False
        return self.pre[k]

    def _activation_at(self, k: int, a: Tensor) -> Tensor:
        """``σ_k(a)``, evaluated once for each pre-activation tensor ``a`` in a row: node ``k``'s last
        ``(a, σ_k(a))`` is kept, so that ``σ_k`` at the current ``a_k`` (the end of one sweep, the start
        of the next) is not evaluated again by the objective or the next sweep."""
        cached = self.sigma_at[k]
        if cached is not None and cached[0] is a:
            return cached[1]
        value = self.net.nodes[k].activation(a)
        self.sigma_at[k] = (a, value)
        return value

    def _gradient(self, j: int) -> Tensor:
        """``Σ_k A_kjᵀ(σ_k(a_k) − target_k)``: the gradient in ``x_j`` of the terms of the nodes that read it."""
        return self._gradient_from({k: self._pre(k) for k in self.readers[j]}, j)

    def _gradient_from(self, pre: dict[int, Tensor], j: int) -> Tensor:
        """The gradient in ``x_j`` given the pre-activations ``pre[k]`` of its readers."""
        grad = None
        for k, edges in self.readers[j].items():
            residual = self.terms[k].residual(self._target(k), pre[k])
            for edge in edges:
                part = edge.affine.adjoint(residual)
                grad = part if grad is None else grad + part
        return torch.zeros_like(self._values()[j]) if grad is None else grad  # a node nothing reads

    def _moved(self, j: int) -> None:
        for k in self.readers[j]:
            self.stale[k] = True

    def _hidden_step(self, j: int, start: Tensor, grad: Tensor) -> Tensor:
        """The proximal-gradient step of hidden block ``x_j`` from ``start`` with the readers' gradient
        ``grad``, step ``τ = 1/L_j``: ``prox_{τ B_j(·, a_j)}(start − τ grad)``
        (:meth:`~lbinv.solvers.data_term.BregmanTerm.prox` at ``a_j − grad``, since ``B_j(·, a)`` is linear in ``a``)."""
        term, preimage = self.terms[j - 1], self.preimages[j - 1]
        new, self.preimages[j - 1] = term.prox(start, torch.sub(self._pre(j - 1), grad), self.hidden_steps[j - 1], preimage)
        return new

    def objective(self) -> Tensor:
        """``Σ_k B_{Ψ_k}(x_k, a_k) + α TV(x_0)`` per sample (paper eq. 3), from the cached pre-activations."""
        value = self._node_value(0)
        for k in range(1, len(self.net.nodes)):
            value = value + self._node_value(k)
        return value if self.tv is None else value + self.alpha * self.tv.value(self.x)

    def _node_value(self, k: int) -> Tensor:
        """``B_{Ψ_k}(x_{k+1}, a_k)`` per sample, given ``σ_k(a_k)`` where :meth:`_activation_at` has it."""
        a, cached = self._pre(k), self.sigma_at[k]
        return self.terms[k].value(self._target(k), a, cached[1] if cached is not None and cached[0] is a else None)


def _lipschitz(readers: dict[int, list[LiftedEdge]], shape: tuple[int, ...]) -> float:
    """A Lipschitz constant of ``g_j: x_j ↦ Σ_k A_kjᵀ(σ_k(a_k) − x_k)``: its Jacobian is ``Bᵀ D B`` with
    ``B x = (Σ_{edges k←j} A_e x)_k`` and ``0 ⪯ D ⪯ I`` (each σ_k is 1-Lipschitz), so ``‖B‖²`` (inflated by
    ``OPNORM_SAFETY``) bounds it: ``‖W_{j+1}‖²`` for a chain, else by power iteration on ``B``; both
    cached while the weights are unchanged.
    1 when that gradient vanishes (no reader)."""
    edges = [e for group in readers.values() for e in group]
    if len(edges) == 1:
        return lipschitz(edges[0].affine.opnorm())
    if not edges:
        return 1.0
    groups = list(readers.values())
    sizes = [math.prod(group[0].affine.out_shape) for group in groups]

    def forward(x: Tensor) -> Tensor:
        return torch.cat([_sum(e.affine.linear(x) for e in group).flatten(1) for group in groups], dim=1)

    def adjoint(y: Tensor) -> Tensor:
        parts = y.split(sizes, dim=1)
        return _sum(e.affine.adjoint(part.reshape(-1, *e.affine.out_shape)) for part, group in zip(parts, groups) for e in group)

    reference = edges[0].affine

    def compute(warm: dict[str, Any]) -> float:
        return operator_norm(forward, adjoint, shape, dtype=reference.dtype, device=reference.device, warm=warm)

    grouping = ("stacked_opnorm", tuple(len(group) for group in groups))  # which edges are summed
    return lipschitz(reference.cached_with([e.affine for e in edges[1:]], grouping, compute))


def _sum(parts: Iterable[Tensor]) -> Tensor:
    """``parts[0] + parts[1] + …``, left to right (the order of the builtin ``sum``)."""
    return reduce(operator.add, parts)
