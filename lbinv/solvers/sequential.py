"""Sequential layer-wise inversion (MATH.md §7, the paper's Remark 2).

From the output down, each hidden variable is the solution of a convex problem

    x_{l−1} = argmin_x B_{Ψ_l}(x_l, W_l x + b_l) + α Ψ_{l−1}(x),   x_L := y,

solved by FISTA (gradient ``W_lᵀ(σ_l(W_l x + b_l) − x_l)``, step ``1/‖W_l‖²``, prox of
``τ α Ψ_{l−1}``; for ReLU the projection onto ``x ≥ 0``); the input is then the single-layer
TV problem with data ``x_1`` (PDHG, §5).

Guarantee: each stage is convex with an exact prox, so FISTA has
``F(x_k) − F* ≤ 2‖W_l‖²‖x₀ − x*‖² / (k + 1)²`` (Beck & Teboulle 2009); the stages' errors add up
through the layers, and the result solves the lifted problem only in the limit the paper describes.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lbinv.lifted import LiftedLayer
from lbinv.proximal import ProxActivation
from lbinv.solvers.data_term import LayerDataTerm
from lbinv.solvers.loop import SingleBlock, masked, next_momentum, per_sample


class LayerFISTA(SingleBlock):
    """FISTA on ``B_{Ψ_l}(data, W_l x + b_l) + α Ψ_prev(x)`` for one layer, batched."""

    def __init__(self, layer: LiftedLayer, data: Tensor, prior: ProxActivation, alpha: Tensor, tol: float) -> None:
        self.data, self.prior, self.tol = LayerDataTerm(layer, data), prior, tol
        self.tau = 1.0 / self.data.lipschitz
        self.x = data.new_zeros((data.shape[0], *layer.affine.in_shape))
        self.momentum_point = self.x
        self.alpha = alpha
        self.prox_t = per_sample(self.tau * alpha, self.x)
        self.t = 1.0
        self.last_change = torch.full_like(alpha, float("inf"))

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        u = self.momentum_point
        x_old = self.x
        step = self.prior.prox(u - self.tau * self.data.gradient(self.data.pre_activation(u)), self.prox_t)
        self.move_to(step, active, measure)
        t_next = next_momentum(self.t)
        self.momentum_point = masked(active, self.x + ((self.t - 1.0) / t_next) * (self.x - x_old), x_old)
        self.t = t_next
        return active

    def objective(self) -> Tensor:
        fit = self.data.value(self.data.pre_activation(self.x))
        return fit + self.alpha * self.prior.psi(self.x)
