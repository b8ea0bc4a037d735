"""Image-quality and regularity measures, and the symmetric Bregman distance of TV; per sample ``(B,)``.

The second half makes the paper's error estimate measurable (MATH.md §10, Theorem 2):
:func:`symmetric_bregman_tv` with subgradients from the single-layer optimality condition
(:func:`single_layer_subgradient`), the source condition (:func:`source_condition_subgradient`), a
dual variable (:func:`dual_subgradient`) or an exact image (:func:`tv_subgradient`), and a
certificate of how genuine a subgradient is (:func:`subgradient_gap`).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from lbinv._checks import check_interval
from lbinv.lifted import LiftedLayer, LiftedNetwork
from lbinv.regularizers import TotalVariation
from lbinv.solvers.loop import next_momentum

__all__ = [
    "psnr",
    "relative_error",
    "tv_isotropic",
    "tv_anisotropic",
    "symmetric_bregman_tv",
    "single_layer_subgradient",
    "source_condition_subgradient",
    "dual_subgradient",
    "SubgradientGap",
    "subgradient_gap",
    "tv_subgradient",
    "symmetric_bregman_tolerance",
]


def psnr(x: Tensor, x_true: Tensor, data_range: float | Sequence[float] = 1.0) -> Tensor:
    """Peak signal-to-noise ratio ``10 log10(range² / MSE)`` in dB, per sample.

    Parameters
    ----------
    x, x_true : Tensor
        Images of shape ``(B, ...)``; integer images (0–255, say) are compared in float32.
    data_range : float or (float, float)
        A number is the range itself (nothing clamped); a pair ``(lo, hi)`` clamps both images
        into ``[lo, hi]`` and uses ``hi − lo`` (torchmetrics' convention: what the callback logs).

    Returns
    -------
    Tensor
        ``(B,)`` PSNR in dB; ``+inf`` where the images are equal.
    """
    if not x.is_floating_point():  # integer images (0–255, say): as torchmetrics, in float32
        x, x_true = x.float(), x_true.float()
    if isinstance(data_range, numbers.Real):
        span = float(data_range)
    else:
        interval = check_interval("data_range", data_range, finite=True)
        if interval is None:
            raise ValueError("data_range: expected a number or a pair (lo, hi) of numbers, got None")
        lo, hi = interval
        x, x_true, span = x.clamp(lo, hi), x_true.clamp(lo, hi), hi - lo
    mse = (x - x_true).flatten(1).pow(2).mean(1)
    return 10.0 * torch.log10(span**2 / mse)


def relative_error(x: Tensor, x_true: Tensor) -> Tensor:
    """``‖x − x†‖ / ‖x†‖`` per sample.

    Parameters
    ----------
    x, x_true : Tensor
        ``(B, ...)`` the estimate ``x`` and the reference ``x†``.

    Returns
    -------
    Tensor
        ``(B,)`` relative errors.
    """
    return (x - x_true).flatten(1).norm(dim=1) / x_true.flatten(1).norm(dim=1)


def tv_isotropic(x: Tensor) -> Tensor:
    """Isotropic total variation ``Σ‖(∇x)_ij‖₂`` per sample (MATH.md §4).

    Parameters
    ----------
    x : Tensor
        ``(B, C, H, W)`` images.

    Returns
    -------
    Tensor
        ``(B,)`` total variations.
    """
    return TotalVariation(isotropic=True).value(x)


def tv_anisotropic(x: Tensor) -> Tensor:
    """Anisotropic total variation ``Σ‖(∇x)_ij‖₁`` per sample (the paper's reported TV numbers).

    Parameters
    ----------
    x : Tensor
        ``(B, C, H, W)`` images.

    Returns
    -------
    Tensor
        ``(B,)`` total variations.
    """
    return TotalVariation(isotropic=False).value(x)


# ----------------------------------------------------------------------------------------
# Subgradients of TV and the symmetric Bregman distance (MATH.md §10, paper eq. 9, Theorem 2)
# ----------------------------------------------------------------------------------------
#
# The discrete TV is TV(x) = Σ_ij ‖(∇x)_ij‖ = max_{q ∈ Q} ⟨q, ∇x⟩ with Q = {q : ‖q_ij‖_* ≤ 1} (the
# per-pixel dual unit ball: ℓ2 for isotropic, ℓ∞ for anisotropic TV). Hence
#
#     ∂TV(x) = { −div q : q ∈ Q, ⟨q, ∇x⟩ = TV(x) }
#
# (div = −∇ᵀ, so ⟨−div q, x⟩ = ⟨q, ∇x⟩). Every p of this form satisfies ⟨p, x⟩ = TV(x), and every
# p = −div q with q ∈ Q satisfies ⟨p, u⟩ ≤ TV(u) for all u.


def symmetric_bregman_tv(x_alpha: Tensor, x_true: Tensor, p_alpha: Tensor, p_true: Tensor) -> Tensor:
    r"""Symmetric Bregman distance of TV, ``D^sym(x_α, x†) = ⟨p_α − p†, x_α − x†⟩``, per sample.

    The paper's error measure (eq. 9; MATH.md §10). It equals
    ``D_TV^{p†}(x_α, x†) + D_TV^{p_α}(x†, x_α)``, the sum of the two Bregman distances with
    interchanged arguments, and is ``≥ 0`` whenever the subgradients are genuine (monotonicity of
    ``∂TV``). It is zero, for example, whenever ``x_α`` and ``x†`` share a subgradient; it does not
    see changes of contrast within flat regions or of the mean, so report it beside ``‖x_α − x†‖``.

    Parameters
    ----------
    x_alpha : Tensor
        ``(B, *input_shape)`` the reconstruction ``x_α`` (e.g. :attr:`InversionResult.x`).
    x_true : Tensor
        ``(B, *input_shape)`` or ``input_shape`` (then broadcast over the batch): the reference
        solution ``x†``.
    p_alpha : Tensor
        Shaped like ``x_alpha``: a subgradient ``p_α ∈ ∂TV(x_α)`` — for the single-layer problem
        the one of the optimality condition, :func:`single_layer_subgradient`, or ``−div z`` of
        the solver's dual variable.
    p_true : Tensor
        Shaped like ``x_true``: a subgradient ``p† ∈ ∂TV(x†)`` — under the source condition
        ``p† = Wᵀv†`` (:func:`source_condition_subgradient`), otherwise e.g.
        :func:`tv_subgradient` of ``x†``.

    Returns
    -------
    Tensor
        ``(B,)`` the distances.

    Notes
    -----
    The distance is only as good as the subgradients: if ``p`` is merely an ε-subgradient within
    distance ``r`` of ``∂TV`` (see :func:`subgradient_gap`), the value can undershoot the true one
    by at most ``ε_α + ε† + (r_α + r†)‖x_α − x†‖`` (:func:`symmetric_bregman_tolerance`).
    """
    x_true, p_true = _batched(x_true, x_alpha), _batched(p_true, x_alpha)
    return ((p_alpha - p_true) * (x_alpha - x_true)).flatten(1).sum(1)


def _batched(t: Tensor, like: Tensor) -> Tensor:
    return t.unsqueeze(0).expand_as(like) if t.dim() == like.dim() - 1 else t


def _single_layer(layer_or_net: Any) -> LiftedLayer:
    """The one :class:`~lbinv.lifted.LiftedLayer` of a one-layer network (or the layer itself)."""
    if isinstance(layer_or_net, LiftedLayer):
        return layer_or_net
    if isinstance(layer_or_net, LiftedNetwork):
        if len(layer_or_net) != 1 or not layer_or_net.is_chain:
            raise ValueError(
                f"layer_or_net: the optimality condition p_α = −Wᵀ(σ(Wx_α + b) − y^δ)/α holds for one-layer "
                f"networks only, got a LiftedNetwork with {len(layer_or_net)} layers"
            )
        return layer_or_net.layers[0]
    raise TypeError(
        f"layer_or_net: expected a LiftedLayer or a one-layer LiftedNetwork (LiftedNetwork.from_module(module, "
        f"input_shape)), got {type(layer_or_net).__name__}"
    )


def single_layer_subgradient(layer_or_net: Any, x_alpha: Tensor, y_delta: Tensor, alpha: float | Tensor) -> Tensor:
    r"""``p_α = −Wᵀ(σ(Wx_α + b) − y^δ) / α``: the TV subgradient the optimality condition assigns to ``x_α``.

    At a solution of the single-layer problem ``min_x B_Ψ(y^δ, Wx + b) + α TV(x)`` (paper eq. 6,
    no box constraint) the optimality condition ``0 = Wᵀ(σ(Wx_α + b) − y^δ) + α p_α`` holds with
    ``p_α ∈ ∂TV(x_α)``. For an approximate solution ``p_α`` is in ``∂TV(x_α)`` up to solver accuracy
    (check with :func:`subgradient_gap`; PDHG's dual gives ``p_α ≈ −div z``). With box ``bounds``
    the optimality condition has an extra normal-cone term and this formula does not apply.

    Parameters
    ----------
    layer_or_net : LiftedNetwork or LiftedLayer
        A one-layer :class:`~lbinv.lifted.LiftedNetwork` or a
        :class:`~lbinv.lifted.LiftedLayer` (W, b, σ).
    x_alpha : Tensor
        ``(B, *input_shape)`` the solution ``x_α``.
    y_delta : Tensor
        ``(B, *output_shape)`` or ``(B, m)`` the data it was computed from (clip it into the
        activation's domain as :func:`lbinv.invert` does).
    alpha : float or Tensor
        The regularisation weight, one for all or ``(B,)`` one per sample.

    Returns
    -------
    Tensor
        ``(B, *input_shape)`` the subgradient ``p_α``.
    """
    layer = _single_layer(layer_or_net)
    z = layer.affine.forward(x_alpha)
    residual = layer.activation(z) - y_delta.reshape(z.shape)
    alpha = torch.as_tensor(alpha, dtype=z.dtype, device=z.device)
    if alpha.dim() == 1:
        alpha = alpha.reshape(-1, *[1] * (x_alpha.dim() - 1))
    return -layer.affine.adjoint(residual) / alpha


def source_condition_subgradient(layer_or_net: Any, v: Tensor) -> Tensor:
    r"""``p† = Wᵀv†``: the subgradient of the source condition (range condition) of x†.

    The paper's error estimate (Theorem 2) assumes ``x†`` is itself a TV solution for some data
    ``y†``: ``0 = Wᵀ(σ(Wx† + b) − y†) + α₀p†``; then ``p† = Wᵀv† ∈ ∂TV(x†)`` with
    ``v† = (y† − σ(Wx† + b)) / α₀``.

    Parameters
    ----------
    layer_or_net : LiftedNetwork or LiftedLayer
        A one-layer :class:`~lbinv.lifted.LiftedNetwork` or a
        :class:`~lbinv.lifted.LiftedLayer` (W, b, σ).
    v : Tensor
        ``(B, *output_shape)`` or ``(B, m)`` the source element ``v†``.

    Returns
    -------
    Tensor
        ``(B, *input_shape)`` the subgradient ``p† = Wᵀv†``.
    """
    layer = _single_layer(layer_or_net)
    return layer.affine.adjoint(v.reshape(v.shape[0], *layer.affine.out_shape))


def dual_subgradient(z: Tensor) -> Tensor:
    """``−div z``: the TV subgradient carried by a dual variable ``z`` (e.g. :attr:`InversionResult.dual`).

    ``−div z`` is a subgradient of TV at ``x`` exactly when ``z`` lies in the dual unit ball and
    ``⟨z, ∇x⟩ = TV(x)``.

    Parameters
    ----------
    z : Tensor
        ``(B, 2, *input_shape)``, the shape of ``∇x``.

    Returns
    -------
    Tensor
        ``(B, *input_shape)`` the subgradient ``−div z``.
    """
    return -TotalVariation.div(z)


@dataclass(frozen=True)
class SubgradientGap:
    r"""A certificate that ``p`` is (nearly) a subgradient of TV at ``x`` (:func:`subgradient_gap`).

    With ``p' = −div q`` for the field ``q`` in the per-pixel dual unit ball ``Q``:

    - ``residual = ‖p − p'‖`` (B,): an upper bound on the distance of ``p`` from the dual ball
      ``{−div q : q ∈ Q}`` (``q`` is one feasible point);
    - ``epsilon = TV(x) − ⟨q, ∇x⟩ ≥ 0`` (B,): ``p'`` is an ε-subgradient,
      ``TV(u) ≥ TV(x) + ⟨p', u − x⟩ − ε`` for every ``u``.

    Together: ``TV(u) ≥ TV(x) + ⟨p, u − x⟩ − ε − residual·‖u − x‖`` for all ``u``; ``p ∈ ∂TV(x)`` iff
    both can be made 0. :attr:`relative` is ``max(ε / TV(x), residual / ‖p‖)`` (denominators
    clamped below at 1), a single scale-free number per sample.
    """

    epsilon: Tensor
    residual: Tensor
    q: Tensor
    tv: Tensor
    p_norm: Tensor

    @property
    def relative(self) -> Tensor:
        """``max(ε / max(TV(x), 1), residual / max(‖p‖, 1))`` per sample."""
        return torch.maximum(self.epsilon / self.tv.clamp_min(1.0), self.residual / self.p_norm.clamp_min(1.0))


def _nearest_divergence(target: Tensor, q: Tensor, project: Callable[[Tensor], Tensor], max_iter: int) -> tuple[Tensor, Tensor]:
    """Projected FISTA on ``min_{q ∈ C} ½‖target + div q‖²`` (step 1/8 as ``‖div‖² ≤ 8``) from
    ``project(q)``; returns the best iterate and its residual ``‖target + div q‖`` (B,)."""
    div, grad = TotalVariation.div, TotalVariation.grad
    best = qk = yk = project(q)
    best_res = (target + div(best)).flatten(1).norm(dim=1)
    t: float | Tensor = 1.0  # next_momentum is typed for a float or a per-sample tensor
    for _ in range(max_iter):
        q_new = project(yk + grad(target + div(yk)) / 8.0)  # ∇_q ½‖target + div q‖² = −∇(target + div q)
        t_new = next_momentum(t)
        yk = q_new + ((t - 1.0) / t_new) * (q_new - qk)
        qk, t = q_new, t_new
        res = (target + div(qk)).flatten(1).norm(dim=1)
        better = res < best_res
        best = torch.where(better.reshape(-1, *[1] * (qk.dim() - 1)), qk, best)
        best_res = torch.where(better, res, best_res)
    return best, best_res


def subgradient_gap(
    p: Tensor,
    x: Tensor,
    q: Tensor | None = None,
    *,
    isotropic: bool = True,
    max_iter: int = 200,
) -> SubgradientGap:
    r"""How far ``p`` is from ``∂TV(x)``: the certificate :class:`SubgradientGap` ``(ε, residual)``.

    ``∂TV(x) = {−div q : q ∈ Q, ⟨q, ∇x⟩ = TV(x)}`` with ``Q`` the per-pixel dual unit ball. The
    field ``q`` is found by projected FISTA on ``min_{q ∈ Q} ½‖p + div q‖²``, started from ``q``
    when given (e.g. the solver's dual :attr:`InversionResult.dual`, usually already the right one:
    ``max_iter=0`` just evaluates it) or from 0; the best iterate is kept, so more iterations only
    lower ``residual``. If ``p`` is a genuine subgradient every minimiser has ``−div q = p`` and then
    ``ε = TV(x) − ⟨p, x⟩ = 0``.

    Parameters
    ----------
    p : Tensor
        ``(B, *input_shape)`` the candidate subgradient.
    x : Tensor
        ``(B, *input_shape)`` the point.
    q : Tensor, optional
        ``(B, 2, *input_shape)`` the starting dual field (default 0).
    isotropic : bool
        Isotropic TV (per-pixel ℓ2 ball) or anisotropic (entries in [−1, 1]).
    max_iter : int
        FISTA iterations (0: evaluate the projected starting ``q``).

    Returns
    -------
    SubgradientGap
        The certificate, per sample.
    """
    tv = TotalVariation(isotropic=isotropic)
    if q is None:
        q = tv.zero_dual(p)
    q, residual = _nearest_divergence(p, q, tv.project_dual, max_iter)
    value = tv.value(x)
    epsilon = (value - (q * tv.grad(x)).flatten(1).sum(1)).clamp_min(0.0)
    return SubgradientGap(epsilon, residual, q, value, p.flatten(1).norm(dim=1))


def tv_subgradient(
    x: Tensor,
    target: Tensor | None = None,
    *,
    isotropic: bool = True,
    threshold: float = 1e-8,
    max_iter: int = 500,
    return_dual: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    r"""The element of ``∂TV(x)`` nearest to ``target`` (default 0: the minimal-norm subgradient).

    For images with exact flat regions (a disc, a step): the dual field is pinned to
    ``q_ij = (∇x)_ij / ‖(∇x)_ij‖`` (isotropic; anisotropic: the sign per component) where the
    gradient exceeds ``threshold``, free in the dual unit ball elsewhere, and ``‖target + div q‖`` is
    minimised by projected FISTA. Every such ``q`` gives a genuine subgradient ``−div q``, so the
    result lies in ``∂TV(x)`` whatever the iteration count; only its nearness to ``target`` depends
    on it. Not meant for solver outputs, whose flat regions are flat only up to solver accuracy
    (use :func:`single_layer_subgradient` or :func:`dual_subgradient` there).

    Parameters
    ----------
    x : Tensor
        ``(B, *input_shape)`` images.
    target : Tensor, optional
        Shaped like ``x``; default 0.
    isotropic : bool
        Isotropic TV or anisotropic.
    threshold : float
        Gradient magnitude above which the dual field is pinned.
    max_iter : int
        Projected FISTA iterations.
    return_dual : bool
        Also return the dual field ``q``.

    Returns
    -------
    p : Tensor
        Shaped like ``x``: the subgradient ``p = −div q``.
    q : Tensor
        ``(B, 2, *input_shape)`` the dual field, only with ``return_dual``.
    """
    tv = TotalVariation(isotropic=isotropic)
    g = tv.grad(x)
    if isotropic:
        norm = tv.pointwise_norm(g).unsqueeze(1)
        pinned = (norm > threshold).expand_as(g)
        value = g / norm.clamp_min(threshold)
    else:
        pinned = g.abs() > threshold
        value = torch.sign(g)

    def project(q: Tensor) -> Tensor:
        return torch.where(pinned, value, tv.project_dual(q))

    target = torch.zeros_like(x) if target is None else target
    q, _ = _nearest_divergence(target, torch.zeros_like(g), project, max_iter)
    return (-tv.div(q), q) if return_dual else -tv.div(q)


def symmetric_bregman_tolerance(gap_alpha: SubgradientGap, gap_true: SubgradientGap, x_alpha: Tensor, x_true: Tensor) -> Tensor:
    r"""How far :func:`symmetric_bregman_tv` may undershoot because its subgradients are inexact.

    If ``p_α`` and ``p†`` carry the certificates ``(ε_α, r_α)`` and ``(ε†, r†)`` of
    :func:`subgradient_gap`, then ``⟨p_α − p†, x_α − x†⟩ ≥ −(ε_α + ε† + (r_α + r†)‖x_α − x†‖)``;
    this returns that bound. A computed ``D^sym`` below minus this value would be a bug.

    Parameters
    ----------
    gap_alpha, gap_true : SubgradientGap
        The certificates of ``p_α`` at ``x_α`` and of ``p†`` at ``x†``.
    x_alpha : Tensor
        ``(B, *input_shape)`` the reconstruction ``x_α``.
    x_true : Tensor
        ``(B, *input_shape)`` or ``input_shape``: the reference ``x†``.

    Returns
    -------
    Tensor
        ``(B,)`` the bound ``ε_α + ε† + (r_α + r†)‖x_α − x†‖``.
    """
    dist = (x_alpha - _batched(x_true, x_alpha)).flatten(1).norm(dim=1)
    return gap_alpha.epsilon + gap_true.epsilon + (gap_alpha.residual + gap_true.residual) * dist
