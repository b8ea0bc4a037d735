"""Single-layer lifted-Bregman inversion by PDHG (MATH.md §5, paper eqs. 12–14): the paper's solver.

Saddle-point problem ``min_x max_{‖z_ij‖≤1} f(x) + α⟨∇x, z⟩ + ι_box(x)``, ``f(x) = B_Ψ(y, Wx + b)``
(:class:`~lbinv.solvers.data_term.LayerDataTerm`)::

    x⁺ = Proj_box( x − τ_x ( Wᵀ(σ(Wx + b) − y) − α div z ) )
    z⁺ = Proj_{‖·‖≤1}( z + τ_z α ∇(2x⁺ − x) )

(:class:`~lbinv.solvers.blocks.PrimalDualStep`). The smooth term's gradient needs no derivative of σ
(MATH.md §2) and is ``L``-Lipschitz with ``L = ‖W‖₂²``; with step sizes that satisfy
``1/τ_x − τ_z α²‖∇‖² ≥ L/2`` (:func:`~lbinv.solvers.blocks.pdhg_step_sizes`) the iterates converge
to a saddle point (Condat 2013, Vũ 2013), at the ergodic rate O(1/k) of the primal–dual gap.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lbinv.lifted import LiftedLayer
from lbinv.solvers.blocks import DEFAULT_BALANCE, PrimalDualStep, check_step_options
from lbinv.solvers.data_term import LayerDataTerm
from lbinv.solvers.loop import Problem, StepTest


class PDHG(StepTest):
    """Single-layer TV-regularised lifted-Bregman inversion; state ``x``, ``z`` (the TV dual).

    Stopping test: :meth:`~lbinv.solvers.blocks.PrimalDualStep.change` ``≤ tol`` (the paper's
    ``‖Δx‖, ‖Δz‖ < tol`` with the dual change measured per paper-sized dual step).
    """

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options: ClassVar[dict[str, Any]] = {"step_rule": "balanced", "balance": DEFAULT_BALANCE}

    @staticmethod
    def check_options(options: dict[str, Any]) -> None:
        """Refuse a bad value of one of :attr:`options`."""
        check_step_options(options)

    def __init__(self, layer: LiftedLayer, problem: Problem, step_rule: str, balance: float) -> None:
        self.alpha, self.tv, self.tol = problem.alpha, problem.tv, problem.tol
        self.data = LayerDataTerm(layer, problem.y)
        self.x = problem.x_init
        self.primal_dual = PrimalDualStep(self.data.lipschitz, problem, step_rule, balance)
        self.z = problem.initial_dual()
        self.last_change = torch.full_like(self.alpha, float("inf"))

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        x_old, z_old = self.x, self.z
        grad = self.data.gradient(self.data.pre_activation(x_old))
        self.x, self.z = self.primal_dual(x_old, z_old, grad, active)
        if measure:
            self.last_change = self.primal_dual.change(self.x, x_old, self.z, z_old)
        return active

    def objective(self) -> Tensor:
        """``B_Ψ(y, Wx + b) + α TV(x)`` per sample (paper eq. 6)."""
        return self.data.objective(self.x, self.alpha, self.tv)
