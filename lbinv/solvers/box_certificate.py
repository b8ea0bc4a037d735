"""The refined certified duality gap of one-layer FISTA with box bounds (:mod:`lbinv.solvers.fista`,
"Stopping test", where the bound and the dual points are derived).

At ``x``, for a dual point ``(w, z)`` with ``y + w ∈ dom Ψ`` and ``‖z_ij‖ ≤ 1``::

    F(x) − F* ≤ B_Ψ(y + w, Wx + b) + α(TV(x) − ⟨z, ∇x⟩) + Σ_i max_{lo ≤ x'_i ≤ hi} r_i (x_i − x'_i),   r = Wᵀw − α div z.

FISTA's own point is ``(w₀, z)``, ``w₀ = σ(Wx + b) − y`` and ``z`` the dual of its last prox; near the test
:class:`BoxCertificate` tries better ones: ``(w₀, z₁)``, ``(w₀ + βv, z₂)`` and ``GALERKIN_ROUNDS``
Galerkin corrections of the latter, each ``zₖ`` refined by ``DUAL_REFINE_STEPS`` FGP steps. Every
candidate is scored by the exact gap and the smallest is kept, so the bound stays certified: these
choices only decide how small it gets.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lbinv.regularizers import TotalVariation
from lbinv.solvers.data_term import LayerDataTerm
from lbinv.solvers.loop import next_momentum, per_sample, sample_dot

#: FGP steps that refine each candidate's TV dual ``z``.
DUAL_REFINE_STEPS = 40
#: Galerkin corrections of ``w`` after the first two candidates (:meth:`BoxCertificate.galerkin_round`).
GALERKIN_ROUNDS = 3


def box_term(r: Tensor, x: Tensor, lo: float, hi: float) -> Tensor:
    """``Σ_i max_{lo ≤ x'_i ≤ hi} r_i (x_i − x'_i)`` per sample, ``(B,)``: the box part of the gap."""
    return torch.where(r > 0, r * (x - lo), r * (x - hi)).flatten(1).sum(1)


class BoxCertificate:
    """The smallest certified gap over refined dual points, for one layer's data term, per-sample ``α``,
    TV and a finite box (module docstring)."""

    def __init__(self, data: LayerDataTerm, alpha: Tensor, tv: TotalVariation, box: tuple[float, float], like_dual: Tensor) -> None:
        self.data, self.alpha, self.tv, self.box = data, alpha, tv, box
        self.alpha_x = per_sample(alpha, like_dual[:, 0])
        self.refine_step = per_sample(1.0 / (TotalVariation.NORM_BOUND**2 * alpha), like_dual)  # 1/(8α)
        ones = torch.ones_like(like_dual[:1, 0])
        self.row_sums = data.layer.affine.linear(ones)  # W1, the shift of Wᵀw's sum

    def refined_gap(self, x: Tensor, ax: Tensor, grad_f: Tensor, grad_x: Tensor, tv_x: Tensor, z: Tensor) -> Tensor:
        """The smallest certified gap at ``x`` (``ax = Wx + b``, ``grad_f = ∇f(x) = Wᵀw₀``, ``grad_x = ∇x``,
        ``tv_x = TV(x)``) over ``(w₀, z₁)``, ``(w₀ + βv, z₂)`` and ``GALERKIN_ROUNDS`` Galerkin corrections
        of the latter, each ``zₖ`` from :meth:`refine_dual` from the previous one (FISTA's ``z`` first).
        ``v = W1`` on the units where ``y + w₀ = σ(Wx + b)`` lies inside ``dom Ψ``, ``β`` such that
        ``Σ_i r_i = 0`` over the pixels strictly inside the box (what an optimum has there: ``r = 0``)."""
        (lo, hi), layer = self.box, self.data.layer
        sigma = layer.activation(ax)  # y + w₀
        dlo, dhi = layer.activation.domain
        movable = (sigma > dlo) & (sigma < dhi)  # the units where y + w can move both ways
        v = torch.where(movable, self.row_sums, 0.0)  # W1 there
        grad_v = layer.affine.adjoint(v)
        inside = ((x > lo) & (x < hi)).to(x.dtype)  # where an optimum has r = 0
        total = sample_dot(grad_v, inside)
        beta = torch.where(total != 0.0, -sample_dot(grad_f, inside) / torch.where(total != 0.0, total, 1.0), 0.0)
        z1 = self.refine_dual(grad_f, x, z)
        gaps = [self.gap_at(x, ax, None, grad_f, z1, grad_x, tv_x)]
        shift = per_sample(beta, v) * v  # w − w₀
        q = grad_f + per_sample(beta, grad_f) * grad_v  # Wᵀw
        z2 = self.refine_dual(q, x, z)
        gaps.append(self.gap_at(x, ax, sigma + shift, q, z2, grad_x, tv_x))
        for _ in range(GALERKIN_ROUNDS):
            shift, q, z2 = self.galerkin_round(x, shift, q, z2, movable, v, grad_v, inside)
            gaps.append(self.gap_at(x, ax, sigma + shift, q, z2, grad_x, tv_x))
        return torch.stack(gaps).nan_to_num(nan=math.inf).min(0).values

    def gap_at(self, x: Tensor, ax: Tensor, shifted: Tensor | None, q: Tensor, z: Tensor, grad_x: Tensor, tv_x: Tensor) -> Tensor:
        """The certified gap at ``x`` for the dual point ``(w, z)`` with ``shifted = y + w`` (None: ``w₀``,
        whose Bregman term is 0) and ``q = Wᵀw`` (module docstring); ``+∞`` where ``y + w ∉ dom Ψ``."""
        lo, hi = self.box
        gap = self.alpha * (tv_x - sample_dot(z, grad_x)) + box_term(q - self.alpha_x * self.tv.div(z), x, lo, hi)
        return gap if shifted is None else gap + self.data.dual_gap(shifted, ax)

    def galerkin_round(
        self, x: Tensor, shift: Tensor, q: Tensor, z: Tensor, movable: Tensor, v: Tensor, grad_v: Tensor, inside: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One correction of ``w`` (then ``z``) against the part of ``r = Wᵀw − α div z`` that ``z`` cannot
        remove: once ``z`` is refined, ``r`` is about constant on each region that saturated ``‖z_ij‖ = 1``
        enclose (there ``∇r = 0`` where ``z`` is free), and only ``w`` changes those constants. With
        ``v₁ = v`` (``W1`` on the movable units) and ``v₂ = W e`` there, ``e = ψ'(r)`` (``r`` less its
        entries at a bound pointing out of the box), ``w += γ₁v₁ + γ₂v₂`` with ``γ`` from the Galerkin
        conditions ``⟨r⁺, 1_inside⟩ = 0``, ``⟨r⁺, e⟩ = 0`` on ``r⁺ = r + γ₁Wᵀv₁ + γ₂Wᵀv₂`` (a 2×2 system
        per sample; ``γ = 0`` where it is singular), then ``z`` by :meth:`refine_dual`. One product with
        ``W`` and one with ``Wᵀ``. Returns ``(w − w₀, Wᵀw, z)``."""
        (lo, hi), affine = self.box, self.data.layer.affine
        r = q - self.alpha_x * self.tv.div(z)
        e = torch.where(((x <= lo) & (r > 0)) | ((x >= hi) & (r < 0)), 0.0, r)
        v2 = torch.where(movable, affine.linear(e), 0.0)
        grad_v2 = affine.adjoint(v2)
        a11, a12 = sample_dot(grad_v, inside), sample_dot(grad_v2, inside)
        a21, a22 = sample_dot(grad_v, e), sample_dot(grad_v2, e)
        c1, c2 = -sample_dot(r, inside), -sample_dot(r, e)
        det = a11 * a22 - a12 * a21
        ok = (det != 0.0) & torch.isfinite(det)
        safe = torch.where(ok, det, 1.0)
        g1 = torch.where(ok, (c1 * a22 - a12 * c2) / safe, 0.0)
        g2 = torch.where(ok, (a11 * c2 - a21 * c1) / safe, 0.0)
        shift = shift + per_sample(g1, v) * v + per_sample(g2, v2) * v2
        q = q + per_sample(g1, q) * grad_v + per_sample(g2, q) * grad_v2
        return shift, q, self.refine_dual(q, x, z)

    def refine_dual(self, q: Tensor, x: Tensor, z: Tensor) -> Tensor:
        """``DUAL_REFINE_STEPS`` FGP steps from ``z`` on ``min_{‖z_ij‖ ≤ 1} ½ Σ_i ψ_i(r_i)``,
        ``r = q − α div z``, ``ψ_i(r) = r²`` inside the box, ``min(r, 0)²`` at ``lo`` and ``max(r, 0)²``
        at ``hi`` (a smooth stand-in for the box term of the gap); returns a feasible dual."""
        (lo, hi), tv, step = self.box, self.tv, self.refine_step
        at_lo, at_hi = x <= lo, x >= hi
        p = m = z
        t = 1.0
        for _ in range(DUAL_REFINE_STEPS):
            r = q - self.alpha_x * tv.div(m)
            r = torch.where(at_lo, r.clamp(max=0.0), torch.where(at_hi, r.clamp(min=0.0), r))  # ψ'(r)
            p_new = tv.project_dual_(m - step * tv.grad(r))  # gradient of ½Σψ(r) in z: α∇ψ'(r); step 1/(8α²)
            t_new = next_momentum(t)
            m = p_new.lerp(p, (1.0 - t) / t_new)
            p, t = p_new, t_new
        return p
