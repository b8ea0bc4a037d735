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

Speed. The images are small and an inner step is a dozen elementwise passes over them, so its cost
is the number of torch calls more than the arithmetic. The steps therefore run on persistent buffers
with a zero border, ``S[..., i + 1, j + 1] = p[..., i, j]`` (row 0 and column 0 zero), whose shifted
views are taken once: ``div p`` is ``S_v[1:, 1:] − S_v[:-1, 1:] + S_h[1:, 1:] − S_h[1:, :-1]`` with no
boundary case (:meth:`TotalVariation.div` reads ``p``'s last row of ``p_v`` and last column of
``p_h`` as 0, and so do these buffers: ``∇x`` is 0 there and the projection keeps it 0), and ``∇x``
is written into the interior of a buffer whose border stays 0. A step is 13 torch calls (9
anisotropic, one more with a box). ``benchmarks/tv_prox_speed.py`` times it against FGP written out
with the public operators: 2.9–3.7× faster on one 32×32 or 64×64 image, 1.8–2.0× on batches
(docs/performance.md, "FISTA: the cost of an inner step").
"""

from __future__ import annotations

import torch
from torch import Tensor

from lbinv.regularizers import TotalVariation, project_box_
from lbinv.solvers.loop import next_momentum


class _Buffers:
    """The padded duals and the views one FGP step reads, for one shape, dtype and device."""

    def __init__(self, v: Tensor) -> None:
        *lead, h, w = v.shape
        padded = (lead[0], 2, *lead[1:], h + 1, w + 1)
        self.key = (v.shape, v.dtype, v.device)
        self.q, self.grad = v.new_zeros(padded), v.new_zeros(padded)
        #: the iterates p and p⁺ take turns in these two, each with its components (views)
        self.duals = [(d, d.unbind(1)) for d in (v.new_zeros(padded), v.new_zeros(padded))]
        self.x, self.div = v.new_empty(v.shape), v.new_empty(v.shape)
        self.norm = v.new_empty(padded[:1] + padded[2:])
        self.norm_view = self.norm.unsqueeze(1)
        qv, qh = self.q.unbind(1)
        # div q = q_v[i, j] − q_v[i − 1, j] + q_h[i, j] − q_h[i, j − 1], in padded coordinates
        self.div_terms = (qv[..., 1:, 1:], qv[..., :-1, 1:], qh[..., 1:, 1:], qh[..., 1:, :-1])
        # ∇x: (x[i + 1, j] − x[i, j], x[i, j + 1] − x[i, j]) for i < H − 1, resp. j < W − 1; 0 beyond
        x, (gv, gh) = self.x, self.grad.unbind(1)
        self.grad_terms = (
            (x[..., 1:, :], x[..., :-1, :], gv[..., 1:h, 1:]),
            (x[..., :, 1:], x[..., :, :-1], gh[..., 1:, 1:w]),
        )
        # the far edges a dual given from outside may hold, which div ignores
        self.far_edges = (qv[..., h, :], qh[..., :, w])

    @staticmethod
    def interior(s: Tensor) -> Tensor:
        """The ``(B, 2, ..., H, W)`` dual a padded buffer holds (a view)."""
        return s[..., 1:, 1:]

    def divergence(self) -> Tensor:
        """``div q`` into the ``div`` buffer (three calls)."""
        a, b, c, d = self.div_terms
        return torch.sub(a, b, out=self.div).add_(c).sub_(d)

    def gradient(self) -> Tensor:
        """``∇x`` of the ``x`` buffer into the ``grad`` buffer (two calls); returns it."""
        for hi, lo, out in self.grad_terms:
            torch.sub(hi, lo, out=out)
        return self.grad

    def inverse_norm(self, sv: Tensor, sh: Tensor) -> Tensor:
        """``1 / max(1, ‖(sv, sh)_ij‖₂)`` into the ``norm`` buffer, as ``(B, 1, ..., H + 1, W + 1)``: four
        calls, where ``torch.hypot``, ``linalg.vector_norm`` over dimension 1, and a float64 ``sqrt``
        then a division each take several times as long on a CPU."""
        torch.mul(sv, sv, out=self.norm).addcmul_(sh, sh).clamp_min_(1.0).rsqrt_()
        return self.norm_view


class TVProx:
    """``v ↦ prox_{λ(TV + ι_box)}(v)`` for a batch, with per-sample ``λ`` (``(B,)``), from a given dual."""

    def __init__(self, tv: TotalVariation, bounds: tuple[float, float] | None, lam: Tensor, like: Tensor) -> None:
        self.tv, self.bounds, self.dim = tv, bounds, like.dim()
        self.buffers: _Buffers | None = None
        self.reweight(lam)

    def reweight(self, lam: Tensor) -> None:
        """Set the weight ``λ`` (``(B,)``, per sample) of the next calls; the dual step ``1/(8λ)`` follows."""
        self.lam = lam.reshape(-1, *([1] * (self.dim - 1)))
        self.dual_step = (1.0 / (TotalVariation.NORM_BOUND**2 * self.lam)).unsqueeze(1)  # per dual

    @torch.no_grad()  # the buffers are written with out=, which autograd does not follow
    def __call__(self, v: Tensor, p: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        """``(prox(v), p⁺)`` after ``steps`` FGP steps from the dual ``p`` (the last call's, warm);
        both fresh tensors, outside autograd."""
        s = self.buffers
        if s is None or s.key != (v.shape, v.dtype, v.device):
            s = self.buffers = _Buffers(v)
        lam, step, isotropic = self.lam, self.dual_step, self.tv.isotropic
        s.interior(s.q).copy_(p)
        for edge in s.far_edges:
            edge.zero_()
        s.duals[0][0].copy_(s.q)
        t = 1.0
        for k in range(steps):
            p, (p_new, components) = s.duals[k % 2][0], s.duals[1 - k % 2]
            project_box_(torch.addcmul(v, lam, s.divergence(), out=s.x), self.bounds)  # x(q)
            torch.addcmul(s.q, step, s.gradient(), out=p_new)
            if isotropic:
                p_new.mul_(s.inverse_norm(*components))  # p / max(1, ‖p_ij‖₂)
            else:
                p_new.clamp_(-1.0, 1.0)
            t_new = next_momentum(t)
            torch.lerp(p_new, p, (1.0 - t) / t_new, out=s.q)  # p⁺ + ((t − 1)/t⁺)(p⁺ − p)
            t = t_new
        p = s.duals[steps % 2][0]
        s.q.copy_(p)
        x = project_box_(torch.addcmul(v, lam, s.divergence()), self.bounds)
        return x, s.interior(p).clone()
