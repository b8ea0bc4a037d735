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

The problem is convex in each block, not jointly: no step raises the objective of a hidden block
(each is a proximal-gradient step with a valid step size), but no convergence to a joint minimiser
is claimed. Stopping test: every block (``x_0``, ``z`` as in
:meth:`~lbinv.solvers.blocks.PrimalDualStep.change`, and each ``x_j``) moved less than ``tol`` in the
last sweep.

This is the paper's sweep (``solver="pdhg"``). The blocks, who reads them, their Lipschitz
constants, the cached pre-activations and the hidden blocks' step are
:class:`~lbinv.solvers.blocks.LiftedBlocks`, shared with the inertial sweep of
:mod:`lbinv.solvers.accelerated_cd` (the default); the input block's step is
:class:`~lbinv.solvers.blocks.PrimalDualStep`, shared with :class:`~lbinv.solvers.pdhg.PDHG`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lbinv.lifted import LiftedNetwork
from lbinv.solvers.blocks import LiftedBlocks, PrimalDualStep, check_hidden_init
from lbinv.solvers.loop import Problem, StepTest, masked, sample_norm
from lbinv.solvers.pdhg import PDHG


class CoordinateDescent(LiftedBlocks, StepTest):
    """The paper's sweep (eqs. 15–17): a PDHG step on ``(x_0, z)``, then one proximal-gradient step per
    hidden block, in topological order; the stopping test of :class:`~lbinv.solvers.loop.StepTest`."""

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options: ClassVar[dict[str, Any]] = {**PDHG.options, "hidden_init": "forward"}

    @staticmethod
    def check_options(options: dict[str, Any]) -> None:
        """Refuse a bad value of one of :attr:`options`."""
        PDHG.check_options(options)
        check_hidden_init(options)

    def __init__(self, net: LiftedNetwork, problem: Problem, step_rule: str, balance: float, hidden_init: str) -> None:
        super().__init__(net, problem, hidden_init)
        self.primal_dual = PrimalDualStep(self.lips[0], problem, step_rule, balance)
        self.z = problem.initial_dual()
        self.last_change = torch.full_like(self.alpha, float("inf"))

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        x_old, z_old = self.x, self.z
        self.x, self.z = self.primal_dual(x_old, z_old, self._gradient(0), active)
        moved = self.primal_dual.change(self.x, x_old, self.z, z_old) if measure else self.last_change
        self._moved(0)
        for j in range(1, len(self.net.nodes)):
            x_j = self.hidden[j - 1]
            new = masked(active, self._hidden_step(j, x_j, self._gradient(j)), x_j)
            if measure:
                moved = torch.maximum(moved, sample_norm(new - x_j))
            self.hidden[j - 1] = new
            self._moved(j)
        self.last_change = moved
        return active
