"""Multi-layer lifted-Bregman inversion by coordinate descent (MATH.md §6, paper eqs. 15–17).

Variables: the input ``x_0``, the TV dual ``z`` and one auxiliary ``x_l`` per hidden layer
(``x_L := y``). One Gauss–Seidel sweep:

- ``(x_0, z)``: one PDHG step of §5 with data ``x_1`` and layer 1;
- for ``l = 1..L−1`` a proximal-gradient step on the two terms that contain ``x_l``,
  ``B_l(x_l, W_l x_{l−1} + b_l) + B_{l+1}(x_{l+1}, W_{l+1} x_l + b_{l+1})``::

      g_l = W_{l+1}ᵀ(σ_{l+1}(W_{l+1} x_l + b_{l+1}) − x_{l+1})
      x_l ← prox_{(τ_l/(1+τ_l)) Ψ_l}( [x_l + τ_l (W_l x_{l−1} + b_l − g_l)] / (1 + τ_l) ),  τ_l = 1/‖W_{l+1}‖²

  (the prox of ``τ(½‖·‖² + Ψ_l)`` after a gradient step on the smooth ``B_{l+1}`` term).

The problem is convex in each block, not jointly. Stopping test: every block (``x_0``, ``z`` as
in :meth:`~lbinv.solvers.pdhg.PrimalDualStep.change`, and each ``x_l``) moved less than ``tol`` in
the last sweep.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lbinv.lifted import LiftedNetwork
from lbinv.regularizers import TotalVariation
from lbinv.solvers.loop import Problem, StepTest, lipschitz, masked, sample_norm
from lbinv.solvers.pdhg import PDHG, PrimalDualStep

HIDDEN_INITS = ("forward", "zeros")


class CoordinateDescent(StepTest):
    """State ``x`` (= x_0), ``hidden`` (= [x_1, …, x_{L−1}]) and ``z``."""

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options = {**PDHG.options, "hidden_init": "forward"}

    def __init__(self, net: LiftedNetwork, problem: Problem, step_rule: str, balance: float, hidden_init: str) -> None:
        self.net, self.y, self.alpha, self.tv, self.tol = net, problem.y, problem.alpha, problem.tv, problem.tol
        self.x = x_init = problem.x_init
        self.primal_dual = PrimalDualStep(net.layers[0], problem, step_rule, balance)
        self.z = self.primal_dual.initial_dual(x_init)
        if hidden_init == "forward":
            self.hidden = net.forward_all(x_init)[:-1]
        else:
            self.hidden = [x_init.new_zeros((x_init.shape[0], *layer.affine.out_shape)) for layer in net.layers[:-1]]
        self.hidden_steps = [1.0 / lipschitz(layer.affine.opnorm()) for layer in net.layers[1:]]
        self.last_change = torch.full_like(self.alpha, float("inf"))
        # pre[l] = W_{l+1} x_l + b_{l+1} at the current x_l (x_0 = x): each is computed once, right
        # after x_l is updated, and serves both the update of x_{l+1} in this sweep and the gradient
        # of x_l in the next one, so a sweep costs one forward and one adjoint per layer
        inputs = [self.x, *self.hidden]
        self.pre = [layer.affine.forward(inp) for layer, inp in zip(net.layers, inputs)]

    def _data(self, l: int) -> Tensor:
        """Target of layer ``l`` (1-based): ``x_l``, or ``y`` for the last layer."""
        return self.y if l == len(self.net.layers) else self.hidden[l - 1]

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        layers, pre = self.net.layers, self.pre
        x_old, z_old = self.x, self.z
        grad = layers[0].affine.adjoint(layers[0].activation(pre[0]) - self._data(1))
        self.x, self.z = self.primal_dual(x_old, z_old, grad, active)
        moved = self.primal_dual.change(self.x, x_old, self.z, z_old) if measure else None
        pre[0] = layers[0].affine.forward(self.x)
        for l in range(1, len(layers)):
            x_l, tau = self.hidden[l - 1], self.hidden_steps[l - 1]
            g = layers[l].affine.adjoint(layers[l].activation(pre[l]) - self._data(l + 1))
            v = torch.sub(pre[l - 1], g).mul_(tau / (1.0 + tau)).add_(x_l, alpha=1.0 / (1.0 + tau))
            new = masked(active, layers[l - 1].activation.prox(v, tau / (1.0 + tau)), x_l)
            if measure:
                moved = torch.maximum(moved, sample_norm(new - x_l))
            self.hidden[l - 1] = new
            pre[l] = layers[l].affine.forward(new)
        if measure:
            self.last_change = moved
        return active

    def objective(self) -> Tensor:
        return lifted_objective(self.net, self.x, self.hidden, self.y, self.alpha, self.tv)


def lifted_objective(
    net: LiftedNetwork, x: Tensor, hidden: list[Tensor], y: Tensor, alpha: Tensor, tv: TotalVariation | None
) -> Tensor:
    """``Σ_l B_{Ψ_l}(x_l, W_l x_{l−1} + b_l) + α TV(x_0)`` per sample (paper eq. 3)."""
    inputs = [x, *hidden]
    targets = [*hidden, y]
    value = sum(
        layer.activation.bregman(target, layer.affine.forward(inp))
        for layer, inp, target in zip(net.layers, inputs, targets)
    )
    return value if tv is None else value + alpha * tv.value(x)
