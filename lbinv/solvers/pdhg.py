"""Single-layer lifted-Bregman inversion by PDHG (MATH.md §5, paper eqs. 12–14).

Saddle-point problem ``min_x max_{‖z_ij‖≤1} B_Ψ(y, Wx + b) + α⟨∇x, z⟩ (+ box on x)``:

    x⁺ = Proj_box( x − τ_x ( Wᵀ(σ(Wx + b) − y) − α div z ) )
    z⁺ = Proj_{‖·‖≤1}( z + τ_z α ∇(2x⁺ − x) )

The smooth term's gradient needs no derivative of σ (MATH.md §2), and its Lipschitz constant is
``‖W‖₂²`` (:func:`~lbinv.solvers.loop.lipschitz`); the step sizes follow a rule (:data:`STEP_RULES`, :func:`pdhg_step_sizes`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from lbinv.lifted import LiftedLayer
from lbinv.regularizers import TotalVariation, project_box_
from lbinv.solvers.loop import Problem, StepTest, lipschitz, masked, per_sample, sample_norm

#: Default primal/dual balance ``τ_z‖α∇‖`` of the "balanced" step rule (see docs/experiments.md, "Step sizes").
DEFAULT_BALANCE = 32.0

#: ‖∇‖₂ ≤ √8 for forward differences (MATH.md §4).
TV_NORM_BOUND = TotalVariation.NORM_BOUND

STEP_RULES = ("balanced", "paper")


def pdhg_step_sizes(
    lip: float, alpha: Tensor, k_norm: float, rule: str, balance: float | Tensor
) -> tuple[Tensor, Tensor]:
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


def primal_dual_steps(
    lip: float, alpha: Tensor, tv_enabled: bool, rule: str, balance: float | Tensor
) -> tuple[Tensor, Tensor]:
    """Step sizes for a PDHG block: :func:`pdhg_step_sizes` with TV, else gradient descent with
    ``τ_x = 1/lip`` (and no dual step)."""
    if tv_enabled:
        return pdhg_step_sizes(lip, alpha, TV_NORM_BOUND, rule, balance)
    return torch.full_like(alpha, 1.0 / lip), torch.zeros_like(alpha)


def bregman_gradient(layer: LiftedLayer, x: Tensor, data: Tensor) -> Tensor:
    """``∇_x B_Ψ(data, Wx + b) = Wᵀ(σ(Wx + b) − data)`` (MATH.md §2)."""
    return layer.affine.adjoint(layer.activation(layer.affine.forward(x)) - data)


class PrimalDualStep:
    """One Condat–Vũ / PDHG update of ``(x, z)`` for ``f(x) + α TV(x) + ι_box(x)``, batched.

    Shared by :class:`PDHG` and the input block of coordinate descent. ``alpha``, ``tau_x`` and
    ``tau_z`` are ``(B,)``; with ``tv=None`` it is projected gradient descent on ``f``.

    :meth:`change` measures a step for the stopping test: ``max(‖Δx‖, ‖Δz‖ / (8ατ_z))``. The dual
    change is expressed per step of the paper's size ``τ_z = 1/(8α)``, so that ``tol`` means the
    paper's test under its step rule and the same thing under any other (a large dual step makes
    ``z`` move more per iteration in flat regions, where it does not affect ``x``).
    """

    def __init__(self, lip: float, problem: Problem, step_rule: str, balance: float) -> None:
        """Step sizes for a smooth term whose gradient is ``lip``-Lipschitz (``B_Ψ(data, Wx + b)``:
        :func:`~lbinv.solvers.loop.lipschitz` of ``‖W‖``)."""
        alpha, tv, like = problem.alpha, problem.tv, problem.x_init
        tau_x, tau_z = primal_dual_steps(lip, alpha, tv is not None, step_rule, balance)
        self.tv, self.bounds = tv, problem.bounds
        self.alpha = per_sample(alpha, like)
        self.tau_x = per_sample(tau_x, like)
        self.tau_z = per_sample(tau_z, like)
        if tv is not None:
            self.dual_scale = 1.0 / (TotalVariation.NORM_BOUND**2 * alpha * tau_z)
            self.primal_tv = self.tau_x * self.alpha  # τ_x α, per sample
            self.dual_tv = (self.tau_z * self.alpha).unsqueeze(1)  # τ_z α, per sample, against ∇x

    def initial_dual(self, x: Tensor) -> Tensor | None:
        """``z⁰ = 0`` with the shape of ``∇x`` (or None without TV)."""
        return None if self.tv is None else self.tv.zero_dual(x)

    def change(self, x_new: Tensor, x_old: Tensor, z_new: Tensor | None, z_old: Tensor | None) -> Tensor:
        """Per-sample size of the last step, ``max(‖Δx‖, ‖Δz‖ / (8ατ_z))``."""
        dx = sample_norm(x_new - x_old)
        if self.tv is None:
            return dx
        return torch.maximum(dx, sample_norm(z_new - z_old) * self.dual_scale)

    def __call__(self, x: Tensor, z: Tensor | None, grad_f: Tensor, active: Tensor | None) -> tuple[Tensor, Tensor | None]:
        # fused: every in-place operation acts on a tensor created here, never on x, z or grad_f
        # (x is the caller's x_init at the first step)
        x_new = torch.addcmul(x, self.tau_x, grad_f, value=-1.0)  # x − τ_x ∇f
        if self.tv is None:
            return masked(active, project_box_(x_new, self.bounds), x), None
        x_new = project_box_(x_new.addcmul_(self.primal_tv, self.tv.div(z)), self.bounds)  # + τ_x α div z
        x_new = masked(active, x_new, x)
        z_new = torch.addcmul(z, self.dual_tv, self.tv.grad(torch.lerp(x, x_new, 2.0)))  # z + τ_z α ∇(2x⁺ − x)
        z_new = masked(active, self.tv.project_dual_(z_new), z)
        return x_new, z_new


class PDHG(StepTest):
    """Single-layer TV-regularised lifted-Bregman inversion; state ``x``, ``z``.

    Stopping test: :meth:`PrimalDualStep.change` ``≤ tol`` (the paper's ``‖Δx‖, ‖Δz‖ < tol`` with
    the dual change measured per paper-sized dual step).
    """

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options = {"step_rule": "balanced", "balance": DEFAULT_BALANCE}

    def __init__(self, layer: LiftedLayer, problem: Problem, step_rule: str, balance: float) -> None:
        self.layer, self.y, self.alpha, self.tv, self.tol = layer, problem.y, problem.alpha, problem.tv, problem.tol
        self.x = problem.x_init
        self.primal_dual = PrimalDualStep(lipschitz(layer.affine.opnorm()), problem, step_rule, balance)
        self.z = self.primal_dual.initial_dual(self.x)
        self.last_change = torch.full_like(self.alpha, float("inf"))

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        x_old, z_old = self.x, self.z
        self.x, self.z = self.primal_dual(x_old, z_old, bregman_gradient(self.layer, x_old, self.y), active)
        if measure:
            self.last_change = self.primal_dual.change(self.x, x_old, self.z, z_old)
        return active

    def objective(self) -> Tensor:
        return single_layer_objective(self.layer, self.x, self.y, self.alpha, self.tv)


def single_layer_objective(layer: LiftedLayer, x: Tensor, y: Tensor, alpha: Tensor, tv: TotalVariation | None) -> Tensor:
    """``B_Ψ(y, Wx + b) + α TV(x)`` per sample (paper eq. 6)."""
    value = layer.activation.bregman(y, layer.affine.forward(x))
    return value if tv is None else value + alpha * tv.value(x)
