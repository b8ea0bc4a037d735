"""Gradient-based inversion through the network (Mahendran & Vedaldi 2015), a baseline.

Adam on ``½‖N(x) − y‖² + α TV_ε(x)`` with the smoothed total variation
``TV_ε(x) = Σ_ij sqrt(‖(∇x)_ij‖² + ε²)`` (isotropic; per direction for the anisotropic one),
differentiating through the network by autograd; a box on ``x`` is a projection after each step.

Guarantee: none; the objective is not convex in ``x`` (the network is composed into it), and Adam
may stop anywhere its steps become small. A baseline, not a solver of the lifted problem.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from lbinv._checks import check_number
from lbinv.lifted import LiftedNetwork
from lbinv.regularizers import TotalVariation, project_box
from lbinv.solvers.loop import Problem, SingleBlock, masked, sample_norm


def smoothed_tv(tv: TotalVariation, x: Tensor, eps: float) -> Tensor:
    """``TV_ε(x)`` per sample."""
    g = tv.grad(x)
    if tv.isotropic:
        return torch.sqrt(g[:, 0] ** 2 + g[:, 1] ** 2 + eps**2).flatten(1).sum(1)
    return torch.sqrt(g**2 + eps**2).flatten(1).sum(1)


class AdamInversion(SingleBlock):
    """Per-sample Adam (elementwise, so one batch holds independent problems)."""

    #: The options of :func:`lbinv.invert` this solver takes, with their defaults.
    options: ClassVar[dict[str, Any]] = {"lr": 1e-2, "betas": (0.9, 0.999), "tv_smoothing": 1e-2}

    @staticmethod
    def check_options(options: dict[str, Any]) -> None:
        """Refuse a bad value of one of :attr:`options` (``lr`` and ``tv_smoothing`` must be positive)."""
        for name in ("lr", "tv_smoothing"):
            check_number(name, options[name], minimum=0.0, strict=True)

    def __init__(self, net: LiftedNetwork, problem: Problem, lr: float, betas: tuple[float, float], tv_smoothing: float) -> None:
        self.net, self.y, self.alpha, self.tv = net, problem.y, problem.alpha, problem.tv
        self.bounds, self.tol = problem.bounds, problem.tol
        self.lr, (self.beta1, self.beta2), self.tv_smoothing = lr, tuple(betas), tv_smoothing
        self.x = problem.x_init
        self.m = torch.zeros_like(self.x)
        self.v = torch.zeros_like(self.x)
        self.k = 0
        self.last_change = torch.full_like(self.alpha, float("inf"))

    def smooth_objective(self, x: Tensor) -> Tensor:
        value = 0.5 * sample_norm(self.net(x) - self.y) ** 2
        return value if self.tv is None else value + self.alpha * smoothed_tv(self.tv, x, self.tv_smoothing)

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        with torch.enable_grad():
            x = self.x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.smooth_objective(x).sum(), x)
        self.k += 1
        self.m = masked(active, self.beta1 * self.m + (1 - self.beta1) * grad, self.m)
        self.v = masked(active, self.beta2 * self.v + (1 - self.beta2) * grad**2, self.v)
        m_hat = self.m / (1 - self.beta1**self.k)
        v_hat = self.v / (1 - self.beta2**self.k)
        self.move_to(project_box(self.x - self.lr * m_hat / (v_hat.sqrt() + 1e-8), self.bounds), active, measure)
        return active

    def objective(self) -> Tensor:
        """``½‖N(x) − y‖² + α TV(x)`` (unsmoothed TV) per sample."""
        value = 0.5 * sample_norm(self.net(self.x) - self.y) ** 2
        return value if self.tv is None else value + self.alpha * self.tv.value(self.x)
