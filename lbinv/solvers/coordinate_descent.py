"""Multi-layer lifted-Bregman inversion by coordinate descent (MATH.md §6, paper eqs. 15–17).

Variables: the input ``x_0``, the TV dual ``z`` and one auxiliary ``x_k`` per hidden node (the last
node's value is the data ``y``). Node k has the pre-activation ``a_k = Σ_j A_kj x_j + b_k``
(:class:`~lbinv.lifted.LiftedNode`); for a chain, ``a_k = W_k x_{k−1} + b_k``. One Gauss–Seidel sweep
in topological order:

- ``(x_0, z)``: one PDHG step of §5 on ``Σ_k B_k(x_k, a_k)`` over the nodes that read ``x_0``;
- for each hidden ``x_j`` a proximal-gradient step on the terms that contain it, its own
  ``B_j(x_j, a_j)`` and the smooth ``B_k(x_k, a_k)`` of the nodes k that read it::

      g_j = Σ_k A_kjᵀ(σ_k(a_k) − x_k)
      x_j ← prox_{(τ_j/(1+τ_j)) Ψ_j}( [x_j + τ_j (a_j − g_j)] / (1 + τ_j) ),  τ_j = 1 / L_j

  (the prox of ``τ(½‖·‖² + Ψ_j)`` after a gradient step), with ``L_j = ‖(Σ_{edges k←j} A_kj)_k‖²``
  bounding the Lipschitz constant of ``g_j``: ``‖W_{j+1}‖²`` for a chain, as in the paper.

The problem is convex in each block, not jointly. Stopping test: every block (``x_0``, ``z`` as
in :meth:`~lbinv.solvers.pdhg.PrimalDualStep.change`, and each ``x_j``) moved less than ``tol`` in
the last sweep.

This is the paper's sweep (``solver="pdhg"``). :class:`LiftedBlocks` holds what it shares with the
inertial sweep of :mod:`lbinv.solvers.accelerated_cd` (the default): the blocks, who reads them,
their Lipschitz constants, the cached pre-activations and the hidden blocks' step.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, ClassVar

import torch
from torch import Tensor

from lbinv.lifted import LiftedNetwork
from lbinv.operators import operator_norm
from lbinv.solvers.loop import Problem, StepTest, lipschitz, masked, sample_norm
from lbinv.solvers.pdhg import PDHG, PrimalDualStep

HIDDEN_INITS = ("forward", "zeros")


class LiftedBlocks:
    """What both sweeps share: the variables ``x`` (= x_0), ``hidden`` (= [x_1, …, x_{K−1}], the hidden
    nodes' values), the nodes that read each variable, the Lipschitz constants of the blocks'
    gradients, and the pre-activations ``a_k`` at the current variables (recomputed when stale)."""

    def __init__(self, net: LiftedNetwork, problem: Problem, hidden_init: str) -> None:
        self.net, self.y, self.alpha, self.tv, self.tol = net, problem.y, problem.alpha, problem.tv, problem.tol
        self.x = x_init = problem.x_init
        # readers[j]: the nodes k that read x_j, each with the edges doing so
        self.readers: list[dict[int, list]] = [defaultdict(list) for _ in range(len(net.nodes))]
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
        # pre[k] = a_k at the current variables; after x_j moves, the a_k of its readers are stale
        # until needed (for a chain: one forward and one adjoint per layer and sweep)
        self.pre = [node.pre_activation(self._values()) for node in net.nodes]
        self.stale = [False] * len(net.nodes)

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

    def _gradient(self, j: int) -> Tensor:
        """``Σ_k A_kjᵀ(σ_k(a_k) − target_k)``: the gradient in ``x_j`` of the terms of the nodes that read it."""
        return self._gradient_from({k: self._pre(k) for k in self.readers[j]}, j)

    def _gradient_from(self, pre: dict[int, Tensor], j: int) -> Tensor:
        """The gradient in ``x_j`` given the pre-activations ``pre[k]`` of its readers."""
        grad = None
        for k, edges in self.readers[j].items():
            residual = self.net.nodes[k].activation(pre[k]) - self._target(k)
            for edge in edges:
                part = edge.affine.adjoint(residual)
                grad = part if grad is None else grad + part
        return torch.zeros_like(self._values()[j]) if grad is None else grad  # a node nothing reads

    def _moved(self, j: int) -> None:
        for k in self.readers[j]:
            self.stale[k] = True

    def _hidden_step(self, j: int, start: Tensor, grad: Tensor) -> Tensor:
        """The proximal-gradient step of hidden block ``x_j`` from ``start`` with the readers' gradient ``grad``::

            prox_{(τ/(1+τ)) Ψ_j}( [start + τ (a_j − grad)] / (1 + τ) ),  τ = 1 / L_j
        """
        tau = self.hidden_steps[j - 1]
        v = torch.sub(self._pre(j - 1), grad).mul_(tau / (1.0 + tau)).add_(start, alpha=1.0 / (1.0 + tau))
        return self.net.nodes[j - 1].activation.prox(v, tau / (1.0 + tau))

    def objective(self) -> Tensor:
        """``Σ_k B_{Ψ_k}(x_k, a_k) + α TV(x_0)`` per sample (paper eq. 3), from the cached pre-activations."""
        value = sum(node.activation.bregman(self._target(k), self._pre(k)) for k, node in enumerate(self.net.nodes))
        return value if self.tv is None else value + self.alpha * self.tv.value(self.x)


class CoordinateDescent(LiftedBlocks, StepTest):
    """The paper's sweep (eqs. 15–17): a PDHG step on ``(x_0, z)``, then one proximal-gradient step per
    hidden block, in topological order; the stopping test of :class:`~lbinv.solvers.loop.StepTest`."""

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options: ClassVar[dict[str, Any]] = {**PDHG.options, "hidden_init": "forward"}

    def __init__(self, net: LiftedNetwork, problem: Problem, step_rule: str, balance: float, hidden_init: str) -> None:
        super().__init__(net, problem, hidden_init)
        self.primal_dual = PrimalDualStep(self.lips[0], problem, step_rule, balance)
        self.z = self.primal_dual.initial_dual(self.x)
        self.last_change = torch.full_like(self.alpha, float("inf"))

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        x_old, z_old = self.x, self.z
        self.x, self.z = self.primal_dual(x_old, z_old, self._gradient(0), active)
        moved = self.primal_dual.change(self.x, x_old, self.z, z_old) if measure else None
        self._moved(0)
        for j in range(1, len(self.net.nodes)):
            x_j = self.hidden[j - 1]
            new = masked(active, self._hidden_step(j, x_j, self._gradient(j)), x_j)
            if measure:
                moved = torch.maximum(moved, sample_norm(new - x_j))
            self.hidden[j - 1] = new
            self._moved(j)
        if measure:
            self.last_change = moved
        return active


def _lipschitz(readers: dict[int, list], shape: tuple[int, ...]) -> float:
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
        return torch.cat([sum(e.affine.linear(x) for e in group).flatten(1) for group in groups], dim=1)

    def adjoint(y: Tensor) -> Tensor:
        parts = y.split(sizes, dim=1)
        return sum(e.affine.adjoint(part.reshape(-1, *e.affine.out_shape)) for part, group in zip(parts, groups) for e in group)

    reference = edges[0].affine

    def compute(warm: dict) -> float:
        return operator_norm(forward, adjoint, shape, dtype=reference.dtype, device=reference.device, warm=warm)

    grouping = ("stacked_opnorm", tuple(len(group) for group in groups))  # which edges are summed
    return lipschitz(reference.cached_with([e.affine for e in edges[1:]], grouping, compute))

