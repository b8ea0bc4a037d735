"""The proximal map of ``λ TV + ι_box`` (TV denoising), by Beck & Teboulle's fast gradient projection.

``prox(v) = argmin_x ½‖x − v‖² + λ TV(x) + ι_box(x)`` has no closed form. FGP (Beck & Teboulle 2009)
runs accelerated projected gradient on its dual, ``‖p_ij‖ ≤ 1`` (MATH.md §4: ‖∇‖² ≤ 8)::

    x(q) = Proj_box( v + λ div q ),   p⁺ = Proj_{‖·‖≤1}( q + ∇x(q) / (8λ) ),   q: Nesterov momentum on p

A fixed number of steps per call, without host synchronisation, warm-started from the dual ``p`` of
the previous call: inside an iterative solver the prox is inexact at first and sharpens as the
outer iterates settle. Used by the one-layer FISTA (:mod:`lbinv.solvers.fista`) and by the input
block of inertial coordinate descent (:mod:`lbinv.solvers.accelerated_cd`).

Guarantee: the dual objective approaches its optimum at ``O(‖p⁰ − p*‖² / k²)`` after ``k`` steps
(Beck & Teboulle 2009), and since the primal problem is 1-strongly convex, ``‖x(p_k) − prox(v)‖`` at
``O(‖p⁰ − p*‖ / k)``: a warm start near ``p*`` is what makes a few steps enough.
"""

from __future__ import annotations

from torch import Tensor

from lbinv.regularizers import TotalVariation, project_box_
from lbinv.solvers.loop import next_momentum


class TVProx:
    """``v ↦ prox_{λ(TV + ι_box)}(v)`` for a batch, with per-sample ``λ`` (``(B,)``), from a given dual."""

    def __init__(self, tv: TotalVariation, bounds: tuple[float, float] | None, lam: Tensor, like: Tensor) -> None:
        self.tv, self.bounds, self.dim = tv, bounds, like.dim()
        self.reweight(lam)

    def reweight(self, lam: Tensor) -> None:
        """Set the weight ``λ`` (``(B,)``, per sample) of the next calls; the dual step ``1/(8λ)`` follows."""
        self.lam = lam.reshape(-1, *([1] * (self.dim - 1)))
        self.dual_step = (1.0 / (TotalVariation.NORM_BOUND**2 * self.lam)).unsqueeze(1)  # per dual

    def __call__(self, v: Tensor, p: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        """``(prox(v), p⁺)`` after ``steps`` FGP steps from the dual ``p`` (the last call's, warm)."""
        tv, lam, step = self.tv, self.lam, self.dual_step
        q, t = p, 1.0
        for _ in range(steps):
            x = project_box_(v.addcmul(lam, tv.div(q)), self.bounds)
            p_new = tv.project_dual_(q.addcmul(step, tv.grad(x)))
            t_new = next_momentum(t)
            q = p_new.lerp(p, (1.0 - t) / t_new)  # p⁺ + ((t − 1)/t⁺)(p⁺ − p)
            p, t = p_new, t_new
        return project_box_(v.addcmul(lam, tv.div(p)), self.bounds), p
