"""Single-layer lifted-Bregman inversion by PDHG (MATH.md §5, paper eqs. 12–14).

Saddle-point problem ``min_x max_{‖z_ij‖≤1} B_Ψ(y, Wx + b) + α⟨∇x, z⟩ (+ box on x)``:

    x⁺ = Proj_box( x − τ_x ( Wᵀ(σ(Wx + b) − y) − α div z ) )
    z⁺ = Proj_{‖·‖≤1}( z + τ_z α ∇(2x⁺ − x) )

The smooth term's gradient needs no derivative of σ (MATH.md §2), and its Lipschitz constant is
``‖W‖₂²``; step sizes come from :func:`lbinv.solvers.common.pdhg_step_sizes`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lbinv.lifted import LiftedLayer
from lbinv.regularizers import TotalVariation, project_box
from lbinv.solvers.common import lipschitz, masked, per_sample, primal_dual_steps, sample_norm


def bregman_gradient(layer: LiftedLayer, x: Tensor, data: Tensor) -> Tensor:
    """``∇_x B_Ψ(data, Wx + b) = Wᵀ(σ(Wx + b) − data)`` (MATH.md §2)."""
    return layer.affine.adjoint(layer.activation(layer.affine.forward(x)) - data)


class PrimalDualStep:
    """One Condat–Vũ / PDHG update of ``(x, z)`` for ``f(x) + α TV(x) + ι_box(x)``, batched.

    Shared by :class:`PDHG` and the input block of coordinate descent. ``alpha``, ``tau_x`` and
    ``tau_z`` are ``(B,)``; with ``tv=None`` it is projected gradient descent on ``f``.
    """

    def __init__(
        self,
        alpha: Tensor,
        tau_x: Tensor,
        tau_z: Tensor,
        tv: TotalVariation | None,
        bounds: tuple[float, float] | None,
        like: Tensor,
    ) -> None:
        self.tv, self.bounds = tv, bounds
        self.alpha = per_sample(alpha, like)
        self.tau_x = per_sample(tau_x, like)
        self.tau_z = per_sample(tau_z, like)

    def __call__(self, x: Tensor, z: Tensor | None, grad_f: Tensor, active: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.tv is None:
            return masked(active, project_box(x - self.tau_x * grad_f, self.bounds), x), None
        x_new = project_box(x - self.tau_x * (grad_f - self.alpha * self.tv.div(z)), self.bounds)
        x_new = masked(active, x_new, x)
        ascent = (self.tau_z * self.alpha).unsqueeze(1) * self.tv.grad(2.0 * x_new - x)
        z_new = masked(active, self.tv.project_dual(z + ascent), z)
        return x_new, z_new

    def set_steps(self, tau_x: Tensor, tau_z: Tensor, like: Tensor) -> None:
        self.tau_x, self.tau_z = per_sample(tau_x, like), per_sample(tau_z, like)


def initial_dual(tv: TotalVariation | None, x: Tensor) -> Tensor | None:
    """``z⁰ = 0`` with the shape of ``∇x`` (or None without TV)."""
    return None if tv is None else x.new_zeros((x.shape[0], 2, *x.shape[1:]))


def change(new: Tensor | None, old: Tensor | None) -> Tensor:
    return torch.zeros(()) if new is None else sample_norm(new - old)


class PDHG:
    """Single-layer TV-regularised lifted-Bregman inversion; state ``x``, ``z``.

    Stopping test: ``‖x⁺ − x‖ ≤ tol`` and ``‖z⁺ − z‖ ≤ tol`` (the paper's). With
    ``step_rule="adaptive"`` the balance between primal and dual steps is re-tuned per sample at
    every check from the primal and dual residuals (Goldstein et al. 2015), with geometrically
    shrinking changes so that the steps settle and the Condat–Vũ guarantee applies.
    """

    def __init__(
        self,
        layer: LiftedLayer,
        y: Tensor,
        alpha: Tensor,
        tv: TotalVariation | None,
        bounds: tuple[float, float] | None,
        tol: float,
        x_init: Tensor,
        step_rule: str,
        balance: float,
    ) -> None:
        self.layer, self.y, self.tv, self.tol = layer, y, tv, tol
        self.alpha = alpha
        self.x = x_init
        self.z = initial_dual(tv, x_init)
        self.lip = lipschitz(layer.affine.opnorm())
        self.rule = step_rule
        self.balance = torch.full_like(alpha, balance)
        self.adapt_rate = 0.5
        tau_x, tau_z = primal_dual_steps(self.lip, alpha, tv is not None, step_rule, balance)
        self.update = PrimalDualStep(alpha, tau_x, tau_z, tv, bounds, x_init)
        self.last_change = torch.full_like(alpha, float("inf"))
        self.residual_ratio: Tensor | None = None

    def step(self, active: Tensor, measure: bool) -> Tensor:
        x_old, z_old = self.x, self.z
        self.x, self.z = self.update(x_old, z_old, bregman_gradient(self.layer, x_old, self.y), active)
        if measure:
            dx, dz = self.x - x_old, None if self.z is None else self.z - z_old
            self.last_change = torch.maximum(sample_norm(dx), change(self.z, z_old))
            if self.rule == "adaptive" and self.tv is not None:
                self.residual_ratio = self._residual_ratio(dx, dz)
        return active

    def _residual_ratio(self, dx: Tensor, dz: Tensor) -> Tensor:
        """‖primal residual‖ / ‖dual residual‖ of the last step, per sample."""
        up = self.update
        k_dz = -self.tv.div(dz) * up.alpha  # Kᵀ dz with K = α∇
        primal = sample_norm(dx / up.tau_x + k_dz)
        dual = sample_norm(dz / up.tau_z.unsqueeze(1) + up.alpha.unsqueeze(1) * self.tv.grad(dx))
        return primal / dual.clamp_min(torch.finfo(dx.dtype).tiny)

    def adapt(self, active: Tensor) -> None:
        """Residual balancing: a primal residual far above the dual one asks for a larger primal
        step (smaller balance), and vice versa; the change factor shrinks at every adaptation."""
        if self.residual_ratio is None:
            return
        factor = 1.0 + self.adapt_rate
        ratio = self.residual_ratio
        grow = active & (ratio < 0.5)
        shrink = active & (ratio > 2.0)
        self.balance = torch.where(grow, self.balance * factor, torch.where(shrink, self.balance / factor, self.balance))
        self.adapt_rate *= 0.9
        tau_x, tau_z = primal_dual_steps(self.lip, self.alpha, True, "balanced", self.balance)
        self.update.set_steps(tau_x, tau_z, self.x)

    def done(self) -> Tensor:
        return self.last_change <= self.tol

    def objective(self) -> Tensor:
        return single_layer_objective(self.layer, self.x, self.y, self.alpha, self.tv)


def single_layer_objective(layer: LiftedLayer, x: Tensor, y: Tensor, alpha: Tensor, tv: TotalVariation | None) -> Tensor:
    """``B_Ψ(y, Wx + b) + α TV(x)`` per sample (paper eq. 6)."""
    value = layer.activation.bregman(y, layer.affine.forward(x))
    return value if tv is None else value + alpha * tv.value(x)
