"""Landweber iteration with Morozov's discrepancy principle (MATH.md §8), the paper's baseline.

    x^{k+1} = Proj_box( x^k − ω Wᵀ(σ(Wx^k + b) − y^δ) ),   x⁰ = x_init (default 0),   ω = 1/‖W‖₂²

(PDHG of §5 with α = 0). Each sample stops at the first k with ``‖σ(Wx^k + b) − y^δ‖ ≤ η δ``;
without a noise level it runs until ``‖x^{k+1} − x^k‖ ≤ tol``.

Guarantee: the step is gradient descent on the convex ``f(x) = B_Ψ(y^δ, Wx + b)`` (projected onto
the box) with step ``1/L``, so ``f(x^k) − f* ≤ L‖x⁰ − x*‖² / (2k)``; the stopping index, not a
penalty, regularises (Morozov's principle).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lbinv._checks import check_number
from lbinv.lifted import LiftedLayer
from lbinv.regularizers import project_box
from lbinv.solvers.loop import Problem, SingleBlock, lipschitz, sample_norm


class Landweber(SingleBlock):
    """Ignores ``problem.alpha`` and ``problem.tv``: the iteration count is the regularisation.
    ``eta`` is the safety factor η ≥ 1 of the discrepancy principle."""

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options: ClassVar[dict[str, Any]] = {"eta": 1.0}

    @staticmethod
    def check_options(options: dict[str, Any]) -> None:
        """Refuse a bad value of one of :attr:`options`."""
        check_number("eta", options["eta"], minimum=1.0)

    def __init__(self, layer: LiftedLayer, problem: Problem, noise_level: Tensor | None, eta: float) -> None:
        self.layer, self.y, self.bounds, self.tol = layer, problem.y, problem.bounds, problem.tol
        self.omega = 1.0 / lipschitz(layer.affine.opnorm())
        self.threshold = None if noise_level is None else eta * noise_level
        self.x = problem.x_init
        batch = problem.y.shape[0]
        self.within_discrepancy = torch.zeros(batch, dtype=torch.bool, device=problem.y.device)
        self.last_change = problem.y.new_full((batch,), float("inf"))

    def step(self, active: Tensor | None, measure: bool) -> Tensor:
        residual = self.layer.activation(self.layer.affine.forward(self.x)) - self.y
        if self.threshold is not None:
            self.within_discrepancy |= sample_norm(residual) <= self.threshold
        update = ~self.within_discrepancy if active is None else active & ~self.within_discrepancy
        self.move_to(project_box(self.x - self.omega * self.layer.affine.adjoint(residual), self.bounds), update, measure)
        return update

    def done(self) -> Tensor:
        return self.within_discrepancy if self.threshold is not None else super().done()

    def objective(self) -> Tensor:
        """The data misfit ``½‖σ(Wx + b) − y‖²``."""
        return 0.5 * sample_norm(self.layer.activation(self.layer.affine.forward(self.x)) - self.y) ** 2
