r"""Piecewise-linear proximal activations, in closed form (MATH.md §2): ReLU, clamp (Hardtanh,
ReLU6), LeakyReLU, PReLU (a LeakyReLU per channel), hard sigmoid, soft-thresholding and the
identity. Import them from :mod:`lbinv.proximal`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lbinv._checks import check_step
from lbinv.proximal.base import ProxActivation, StepSize, clamp, is_unit_step

__all__ = [
    "IDENTITY",
    "ClampProx",
    "HardsigmoidProx",
    "IdentityProx",
    "LeakyReLUProx",
    "PReLUProx",
    "ReLUProx",
    "SoftshrinkProx",
    "leaky_slope_problem",
    "prelu_slope_problem",
]


class ReLUProx(ProxActivation):
    r"""ReLU = prox of the indicator of [0, ∞) (MATH.md §2).

    Ψ = ι_{u ≥ 0}, Φ(z) = ½max(z, 0)², prox_{tΨ}(v) = max(v, 0) for every t, and
    ``B(y, z) = ½‖y − max(z, 0)‖² + ⟨y, max(−z, 0)⟩`` for y ≥ 0.
    """

    domain = (0.0, math.inf)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        return torch.relu(v)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z) ** 2

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return 0.5 * (y - torch.relu(z)) ** 2 + y * torch.relu(-z)


class ClampProx(ProxActivation):
    r"""Clamp to ``[lo, hi]`` (nn.Hardtanh, nn.ReLU6) = prox of the indicator of [lo, hi].

    Ψ = ι_{[lo, hi]}, prox_{tΨ}(v) = clamp(v, lo, hi) for every t, Φ(z) = z·c − ½c² with
    c = clamp(z) (Huber-type), and ``B(y, z) = ½(y − c)² + (z − c)(c − y)`` (MATH.md §2).

    Parameters
    ----------
    lo, hi : float
        Bounds with ``lo <= hi`` (either may be infinite).
    """

    def __init__(self, lo: float = -1.0, hi: float = 1.0) -> None:
        lo, hi = float(lo), float(hi)
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ValueError(f"ClampProx: expected lo <= hi, got lo={lo}, hi={hi}")
        self.lo, self.hi = lo, hi

    @property
    def domain(self) -> tuple[float, float]:
        return (self.lo, self.hi)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        return clamp(v, self.lo, self.hi)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        c = clamp(z, self.lo, self.hi)
        return z * c - 0.5 * c * c

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        # s = clamp(z), p = z − s ∈ N_[lo,hi](s): B = ½(y − s)² + p(s − y), both terms ≥ 0 for y ∈ [lo, hi]
        s = clamp(z, self.lo, self.hi)
        return 0.5 * (y - s) ** 2 + (z - s) * (s - y)


def leaky_slope_problem(a: float) -> str | None:
    """Why LeakyReLU with slope ``a`` is not a proximal map.

    Parameters
    ----------
    a : float
        The negative slope.

    Returns
    -------
    str or None
        The reason; None for a slope in [0, 1].
    """
    if a > 1.0:
        return "a slope above 1 is expansive"
    if not a >= 0.0:
        return "a negative slope is not monotone"
    return None


class LeakyReLUProx(ProxActivation):
    r"""LeakyReLU with slope a ∈ (0, 1] (MATH.md §2, derived).

    With c = (1 − a)/a: Ψ(u) = (c/2)·min(u, 0)², Φ(z) = ½max(z, 0)² + (a/2)·min(z, 0)²,
    prox_{tΨ}(v) = v for v ≥ 0 and v/(1 + tc) for v < 0 (so t = 1 gives a·v). With s = σ(z),

    ``B(y, z) = ½(y − s)² + (c/2)(min(y, 0) − min(s, 0))² + c·max(−s, 0)·max(y, 0)``.

    A slope above 1 is expansive and a negative slope is decreasing: neither is a proximal map.
    Slope 0 is ReLU (use :class:`ReLUProx`).

    Parameters
    ----------
    negative_slope : float
        The slope a ∈ (0, 1] for negative inputs.
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        a = float(negative_slope)
        if not (0.0 < a <= 1.0):
            why = leaky_slope_problem(a)
            if why is None:
                why = "slope 0 is ReLU: use ReLUProx / nn.ReLU"
            else:
                why += ", so it is not a proximal map"
            raise ValueError(f"LeakyReLUProx: negative_slope must lie in (0, 1], got {negative_slope}; {why}")
        self.negative_slope = a
        self._c = (1.0 - a) / a

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if not isinstance(t, Tensor):  # a LeakyReLU with slope 1/(1 + tc) (a for t = 1)
            return F.leaky_relu(v, self.negative_slope if is_unit_step(t) else 1.0 / (1.0 + float(t) * self._c))
        # v + (1/(1 + tc) − 1)·min(v, 0), with no mask
        return torch.addcmul(v, v.clamp(max=0.0), 1.0 / (1.0 + t * self._c) - 1.0)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return 0.5 * self._c * torch.clamp(u, max=0.0) ** 2

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z) ** 2 + 0.5 * self.negative_slope * torch.clamp(z, max=0.0) ** 2

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        s = F.leaky_relu(z, self.negative_slope)
        ms = torch.clamp(s, max=0.0)
        return 0.5 * (y - s) ** 2 + 0.5 * self._c * (torch.clamp(y, max=0.0) - ms) ** 2 + self._c * (-ms) * torch.relu(y)


_ZERO_SLOPE = (
    "slope 0 makes a channel a ReLU, whose Ψ is the indicator of u ≥ 0 on that channel alone: a domain that "
    "differs per channel, which lbinv does not support (a PReLU whose slopes are all 0 is nn.ReLU: use that)"
)
#: How many offending channels a refusal lists by number (the rest are counted).
_LISTED_CHANNELS = 8


def _shortest(x: float, dtype: torch.dtype) -> str:
    """``x`` (a value of ``dtype``) with the fewest digits that read back as it in ``dtype``: 0.1, not
    0.10000000149011612, for a float32 slope."""
    for digits in range(1, 18):
        text = f"{x:.{digits}g}"
        if torch.tensor(float(text), dtype=torch.float64).to(dtype).item() == x:
            return text
    return repr(x)


def prelu_slope_problem(weight: Tensor) -> str | None:
    """Why a PReLU with the per-channel slopes ``weight`` is not supported by :class:`PReLUProx`.

    One host synchronisation (at lifting time, not in an iteration).

    Parameters
    ----------
    weight : Tensor
        The slopes, one or one per channel.

    Returns
    -------
    str or None
        The reason, naming the offending channels and their slopes; None when every slope lies
        in (0, 1].
    """
    flat = weight.detach().reshape(-1)
    dtype = flat.dtype if flat.dtype in (torch.float32, torch.float64) else torch.float32
    slopes = flat.to(dtype).cpu().tolist()
    groups: dict[str, list[int]] = {}
    for channel, a in enumerate(slopes):
        if 0.0 < a <= 1.0:
            continue
        why = "NaN is not a slope" if math.isnan(a) else (leaky_slope_problem(a) or _ZERO_SLOPE)
        groups.setdefault(why, []).append(channel)
    parts = []
    for why, channels in groups.items():
        shown = channels[:_LISTED_CHANNELS]
        more = f", … ({len(channels)} channels in all)" if len(channels) > len(shown) else ""
        listed = ", ".join(f"{c} (slope {_shortest(slopes[c], dtype)})" for c in shown)
        parts.append(f"channel{'s' if len(channels) > 1 else ''} {listed}{more}: {why}")
    return "; ".join(parts) or None


class PReLUProx(ProxActivation):
    r"""PReLU (nn.PReLU) with learned per-channel slopes a_c ∈ (0, 1]: a LeakyReLU on each channel
    (MATH.md §2, LeakyReLU row, derived).

    The channels are dimension 1 of the input ``(B, C, *rest)``, as torch applies PReLU's weight; a
    single slope applies to every entry (then this is :class:`LeakyReLUProx`). With
    c_c = (1 − a_c)/a_c on channel c: Ψ_c(u) = (c_c/2)·min(u, 0)²,
    Φ_c(z) = ½max(z, 0)² + (a_c/2)·min(z, 0)², and prox_{tΨ}(v) = v for v ≥ 0 and
    v·a_c/(a_c + t(1 − a_c)) = v/(1 + t·c_c) for v < 0 (t = 1: PReLU itself). With s = σ(z),

    ``B(y, z) = ½(y − s)² + (c_c/2)(min(y, 0) − min(s, 0))² + c_c·max(−s, 0)·max(y, 0)``.

    A slope above 1 is expansive, a negative slope is decreasing; slope 0 makes the channel a ReLU,
    whose Ψ is an indicator with a domain of its own: these are refused (:func:`prelu_slope_problem`).

    Parameters
    ----------
    weight : Tensor
        The slopes, ``C`` of them (``nn.PReLU``'s ``weight``, of shape ``(num_parameters,)``); a
        detached copy is kept, so later training of the module does not change this map. Inputs of
        ``prox``, ``psi`` and ``bregman`` are ``(B, C, *rest)`` (``(B, C)`` for a dense layer) and take
        the slopes cast to their dtype and device (cast once, then cached).
    """

    def __init__(self, weight: Tensor) -> None:
        if not isinstance(weight, Tensor):
            weight = torch.as_tensor(weight, dtype=torch.get_default_dtype())
        w = weight.detach().reshape(-1).clone()
        if not w.is_floating_point() or w.numel() == 0:
            raise ValueError(f"PReLUProx: weight must be a non-empty floating-point tensor of slopes, got {weight!r}")
        why = prelu_slope_problem(w)
        if why is not None:
            raise ValueError(f"PReLUProx: every slope must lie in (0, 1]; {why}")
        self.weight = w
        self._cache: dict[tuple, tuple[Tensor, Tensor, Tensor]] = {}

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Samples of ``shape`` must have the C channels first, ``(C, *rest)``, for more than one slope.

        Parameters
        ----------
        shape : tuple of int
            The shape of one sample (no batch dimension).
        """
        n = self.weight.numel()
        if n > 1 and (len(shape) < 1 or shape[0] != n):
            raise ValueError(
                f"PReLU with {n} slopes (num_parameters={n}) needs samples with its {n} channels first, "
                f"(B, {n}, ...), got samples of shape {tuple(shape)}"
            )

    def _slopes(self, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(a, c, a_flat) for ``like`` ``(B, C, *rest)``: a and c = (1 − a)/a shaped ``(C, 1, …, 1)`` to
        broadcast against it, a_flat ``(C,)`` for F.prelu; in its dtype and on its device."""
        n = self.weight.numel()
        if like.dim() < 1:
            raise ValueError("PReLUProx: expected a batched tensor of shape (B, C, ...), got a 0-dimensional tensor")
        self.check_shape(tuple(like.shape[1:]))
        key = (like.dtype, like.device, like.dim())
        slopes = self._cache.get(key)
        if slopes is None:
            # made outside inference mode, so that autograd callers may use them after inference-mode ones
            with torch.inference_mode(False), torch.no_grad():
                w64 = self.weight.to(torch.float64)
                shape = (n, *[1] * (like.dim() - 2)) if n > 1 else ()
                a = self.weight.to(dtype=like.dtype, device=like.device)
                c = ((1.0 - w64) / w64).to(dtype=like.dtype, device=like.device)
                slopes = (a.reshape(shape), c.reshape(shape), a)
            self._cache[key] = slopes
        return slopes

    def __repr__(self) -> str:
        w = self.weight
        if w.numel() > _LISTED_CHANNELS:
            return f"PReLUProx({w.numel()} slopes in [{_shortest(float(w.min()), w.dtype)}, {_shortest(float(w.max()), w.dtype)}])"
        return f"PReLUProx(weight=[{', '.join(_shortest(a, w.dtype) for a in w.tolist())}])"

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        _, c, a_flat = self._slopes(v)
        if is_unit_step(t):
            return F.prelu(v, a_flat)  # exactly torch's PReLU
        if not isinstance(t, Tensor):  # a PReLU with slopes 1/(1 + tc)
            return F.prelu(v, (1.0 / (1.0 + float(t) * c)).reshape(-1))
        # v + (1/(1 + tc) − 1)·min(v, 0), with no mask; t (B, 1, …, 1) and c (C, 1, …, 1) broadcast
        return torch.addcmul(v, v.clamp(max=0.0), 1.0 / (1.0 + t * c) - 1.0)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return 0.5 * self._slopes(u)[1] * torch.clamp(u, max=0.0) ** 2

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z) ** 2 + 0.5 * self._slopes(z)[0] * torch.clamp(z, max=0.0) ** 2

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        _, c, a_flat = self._slopes(z)
        s = F.prelu(z, a_flat)
        ms = torch.clamp(s, max=0.0)
        return 0.5 * (y - s) ** 2 + 0.5 * c * (torch.clamp(y, max=0.0) - ms) ** 2 + c * (-ms) * torch.relu(y)


class HardsigmoidProx(ProxActivation):
    r"""Hard sigmoid σ(x) = clamp(x/6 + ½, 0, 1) (nn.Hardsigmoid), slope 1/6 on [−3, 3] (derived).

    σ⁻¹(u) = 6u − 3 on (0, 1), so Ψ'(u) = 5u − 3 and Ψ(u) = (5/2)u² − 3u on [0, 1] (+∞
    outside); prox_{tΨ}(v) = clamp((v + 3t)/(1 + 5t), 0, 1) (t = 1: σ(v)). With s = σ(z):
    Φ(z) = (z + 3)s − 3s² (0, (z + 3)²/12, z on the three pieces) and, with
    r = z + 3 − 6s (≤ 0 where s = 0, ≥ 0 where s = 1, 0 between),
    ``B(y, z) = 3(y − s)² + r(s − y)``, both terms ≥ 0 for y ∈ [0, 1].
    """

    domain = (0.0, 1.0)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if is_unit_step(t):
            return F.hardsigmoid(v)
        return torch.add(v, 3.0 * t).div_(1.0 + 5.0 * t).clamp_(0.0, 1.0)

    def _psi_elem(self, u: Tensor) -> Tensor:
        return u * (2.5 * u - 3.0)

    def _phi_elem(self, z: Tensor) -> Tensor:
        s = F.hardsigmoid(z)
        return (z + 3.0) * s - 3.0 * s * s

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        s = F.hardsigmoid(z)
        return 3.0 * (y - s) ** 2 + (z + 3.0 - 6.0 * s) * (s - y)


class SoftshrinkProx(ProxActivation):
    r"""Soft-thresholding at λ ≥ 0 = prox of λ|·| (MATH.md §2).

    ``Ψ(u) = λ|u|``, ``Φ(z) = ½max(|z| − λ, 0)²``, ``prox_{tΨ}(v) = sign(v)·max(|v| − tλ, 0)``. With
    p = clamp(z, −λ, λ) ∈ λ∂|s| and s = z − p: ``B(y, z) = ½(y − s)² + (λ|y| − y·p)``.

    Parameters
    ----------
    lambd : float
        The threshold λ ≥ 0 (nn.Softshrink's name).
    """

    def __init__(self, lambd: float = 0.5) -> None:
        lam = float(lambd)
        if not lam >= 0.0 or not math.isfinite(lam):
            raise ValueError(f"SoftshrinkProx: lambd must be a finite number >= 0, got {lambd}")
        self.lambd = lam

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        if not isinstance(t, Tensor):
            return F.softshrink(v, float(t) * self.lambd)
        threshold = t * self.lambd
        return v - torch.clamp(v, min=-threshold, max=threshold)  # v − tλ·sign(v) where |v| > tλ, else 0

    def _psi_elem(self, u: Tensor) -> Tensor:
        return self.lambd * u.abs()

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * torch.relu(z.abs() - self.lambd) ** 2

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        p = torch.clamp(z, -self.lambd, self.lambd)
        s = z - p
        return 0.5 * (y - s) ** 2 + (self.lambd * y.abs() - y * p)


class IdentityProx(ProxActivation):
    r"""Identity = prox of Ψ = 0: Φ(z) = ½z², prox_{tΨ}(v) = v, B(y, z) = ½‖y − z‖² (MATH.md §2)."""

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        check_step(t)
        return v

    def _psi_elem(self, u: Tensor) -> Tensor:
        return torch.zeros_like(u)

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * z * z

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return 0.5 * (y - z) ** 2


IDENTITY = IdentityProx()
