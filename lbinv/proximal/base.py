r"""The base class of proximal activations and the helpers its subclasses share.

Import from :mod:`lbinv.proximal`, whose docstring explains the mathematics (MATH.md §2).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor

__all__ = ["CPU_BLOCK", "ProxActivation", "StepSize", "blockwise", "clamp", "horner", "is_unit_step", "softplus", "split"]

StepSize = float | Tensor

#: On the CPU, long elementwise computations (the fast prox solvers, Bregman values) run block by
#: block of this many entries, so that their temporaries stay in the cache (elementwise work on
#: tensors larger than the cache is bound by memory traffic); on other devices the whole tensor is
#: one block.
CPU_BLOCK = 1 << 17


def blockwise(fn: Callable[..., Any], *args: Tensor) -> Any:
    """``fn(*args)`` for an elementwise ``fn`` of tensors of one shape (returning a tensor or a tuple
    of tensors of that shape), block by block of :data:`CPU_BLOCK` entries where that helps and is
    safe: on the CPU, for contiguous tensors of more than two blocks, none needing a gradient; else
    ``fn(*args)`` at once."""
    first = args[0]
    if (
        first.device.type != "cpu"
        or first.numel() <= 2 * CPU_BLOCK
        or (torch.is_grad_enabled() and any(a.requires_grad for a in args))
        or any(a.shape != first.shape or not a.is_contiguous() for a in args)
    ):
        return fn(*args)
    flats = [a.view(-1) for a in args]
    outs: list[Tensor] = []
    for start in range(0, first.numel(), CPU_BLOCK):
        parts = fn(*(f[start : start + CPU_BLOCK] for f in flats))
        parts = parts if isinstance(parts, tuple) else (parts,)
        if not outs:
            outs = [torch.empty_like(flats[0], dtype=part.dtype) for part in parts]
        for out, part in zip(outs, parts):
            out[start : start + CPU_BLOCK] = part
    shaped = tuple(out.view(first.shape) for out in outs)
    return shaped if len(shaped) > 1 else shaped[0]


def clamp(x: Tensor, lo: float, hi: float) -> Tensor:
    """Clip ``x`` into ``[lo, hi]``; an infinite bound is no bound.

    Parameters
    ----------
    x : Tensor
        Any shape.
    lo, hi : float
        The bounds (either may be infinite).

    Returns
    -------
    Tensor
        ``x`` clipped.
    """
    return torch.clamp(x, min=None if lo == -math.inf else lo, max=None if hi == math.inf else hi)


def split(x: Tensor, at: float = 0.0) -> tuple[Tensor, Tensor]:
    """(max(x, at), min(x, at)) for evaluating the two pieces of a function that switches at ``at``.

    The piece x > at is evaluated from the first, x <= at from the second, and one is selected by
    ``torch.where(x > at, ...)``: unlike torch.clamp, whose derivative is 0 at the bound, the
    second carries derivative 1 at x = at, so the selected piece's derivative is kept there.

    Parameters
    ----------
    x : Tensor
        Any shape.
    at : float
        The switching point.

    Returns
    -------
    above : Tensor
        ``max(x, at)``, shaped like ``x``.
    below : Tensor
        ``min(x, at)``, shaped like ``x``.
    """
    above = x > at
    bound = torch.full_like(x, at)
    return torch.where(above, x, bound), torch.where(above, bound, x)


def softplus(x: Tensor) -> Tensor:
    """log(1 + eˣ) without overflow and with the exact derivative sigmoid(x) (also at 0).

    Parameters
    ----------
    x : Tensor
        Any shape.

    Returns
    -------
    Tensor
        Shaped like ``x``.
    """
    return torch.logaddexp(x, x.new_zeros(()))


def horner(coeffs: tuple[float, ...], x: Tensor) -> Tensor:
    """Σ_k coeffs[k]·xᵏ by Horner's rule.

    Parameters
    ----------
    coeffs : tuple of float
        At least two coefficients, the constant term first.
    x : Tensor
        Any shape.

    Returns
    -------
    Tensor
        The polynomial at ``x``, shaped like ``x``.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        p = coeffs[-1] * x + coeffs[-2]
        for c in reversed(coeffs[:-2]):
            p = p * x + c
        return p
    p = torch.mul(x, coeffs[-1]).add_(coeffs[-2])  # the same operations in place: one new tensor
    for c in reversed(coeffs[:-2]):
        p.mul_(x).add_(c)
    return p


def is_unit_step(t: StepSize) -> bool:
    """Whether t is the Python number 1, where prox_{tΨ} is the activation itself.

    Parameters
    ----------
    t : float or Tensor
        A step size (a tensor is never the unit step: checking would synchronise).

    Returns
    -------
    bool
        True for the Python number 1.
    """
    return not isinstance(t, Tensor) and t == 1.0


class ProxActivation:
    r"""An elementwise activation σ = prox_Ψ together with Ψ, prox_{tΨ} and B_Ψ (MATH.md §2).

    Notes
    -----
    Subclasses implement ``prox`` and the elementwise ``_psi_elem`` (Ψ on its domain),
    ``_phi_elem`` (Φ = (½(·)² + Ψ)^*) and, for stability, ``_bregman_elem``. The generic
    ``_bregman_elem`` is ``½y² + Ψ(y) + Φ(z) − yz``; ``_bregman_given_sigma`` (B given also
    s = σ(z), for :meth:`bregman`'s ``sigma``) defaults to it, and a subclass whose B_Ψ contains
    σ(z) overrides it to save that evaluation (ELU, CELU). Subclasses with parameters store them
    as public attributes named like the constructor's arguments (they make the ``repr``).
    """

    # -- public API -------------------------------------------------------------------------
    @property
    def domain(self) -> tuple[float, float]:
        """Closed interval ``(lo, hi)`` containing ``dom Ψ`` (bounds may be ±inf). Data ``y``
        passed to :meth:`bregman` must lie in it; :meth:`project_data` clips into it. Subclasses
        set it as a class attribute or, when it depends on a parameter, as a property."""
        return (-math.inf, math.inf)

    def __call__(self, z: Tensor) -> Tensor:
        """σ(z) = prox_Ψ(z), the activation itself.

        Parameters
        ----------
        z : Tensor
            Any shape.

        Returns
        -------
        Tensor
            σ(z), shaped like ``z``.
        """
        return self.prox(z, 1.0)

    def prox(self, v: Tensor, t: StepSize = 1.0) -> Tensor:
        r"""prox_{tΨ}(v) = argmin_u ½(u − v)² + tΨ(u), elementwise.

        Parameters
        ----------
        v : Tensor
            Any shape.
        t : float or Tensor
            Step size > 0; a tensor must broadcast against ``v`` (e.g. ``(B, 1, ..., 1)``).

        Returns
        -------
        Tensor
            prox_{tΨ}(v), shaped like ``v``.
        """
        raise NotImplementedError

    def prox_and_preimage(self, v: Tensor, t: StepSize, start: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        r"""prox_{tΨ}(v) and, where the activation keeps one, its preimage ``w`` (σ(w) = u), which a
        caller that solves nearby prox problems again passes back as ``start`` (a smooth σ then
        needs one Newton step where ``start`` is close; :class:`~lbinv.proximal.smooth_solver._SmoothProx`).

        Parameters
        ----------
        v : Tensor
            Any shape.
        t : float or Tensor
            Step size > 0, as in :meth:`prox`.
        start : Tensor, optional
            A preimage this method returned for a nearby ``v`` and the same ``t`` (only a starting
            point: the result does not depend on it beyond round-off).

        Returns
        -------
        u : Tensor
            prox_{tΨ}(v), shaped like ``v``.
        w : Tensor or None
            Its preimage, or None (here: always; the smooth activations return it).
        """
        return self.prox(v, t), None

    def psi(self, u: Tensor) -> Tensor:
        r"""Ψ(u) summed per sample.

        Parameters
        ----------
        u : Tensor
            ``(B, ...)``.

        Returns
        -------
        Tensor
            ``(B,)``; ``+inf`` for a sample with entries outside dom Ψ.
        """
        return self._sum_in_domain(u, self._psi_elem(self.project_data(u)))

    def bregman(self, y: Tensor, z: Tensor, sigma: Tensor | None = None) -> Tensor:
        r"""B_Ψ(y, z) summed per sample, shape ``(B,)``.

        ``B_Ψ(y, z) = Σ ½y² + Ψ(y) + Φ(z) − yz ≥ ½‖y − σ(z)‖²``, ``∇_z B_Ψ = σ(z) − y``
        (MATH.md §2). Samples with an entry of ``y`` outside :attr:`domain` get ``+inf``
        (Ψ(y) = ∞ there); clip data with :meth:`project_data` first. NaN propagates.

        Parameters
        ----------
        y : Tensor
            ``(B, ...)`` data.
        z : Tensor
            Shaped like ``y``: pre-activations.
        sigma : Tensor, optional
            σ(z) (``self(z)``), when the caller has it: some activations then evaluate B_Ψ
            with fewer transcendental functions. It is not differentiated through: where ``y``
            or ``z`` needs a gradient, it is ignored.

        Returns
        -------
        Tensor
            ``(B,)``.
        """
        y_in = self.project_data(y)
        if sigma is None or (torch.is_grad_enabled() and (z.requires_grad or y.requires_grad)):
            return self._sum_in_domain(y, blockwise(self._bregman_elem, y_in, z))
        return self._sum_in_domain(y, blockwise(self._bregman_given_sigma, y_in, z, sigma))

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise ValueError when this map cannot act on samples of ``shape``.

        Elementwise maps act on any shape; a per-channel one (PReLU) needs its channels first.

        Parameters
        ----------
        shape : tuple of int
            The shape of one sample (no batch dimension).
        """

    def project_data(self, y: Tensor) -> Tensor:
        """Clip ``y`` into :attr:`domain`.

        Parameters
        ----------
        y : Tensor
            Data, any shape.

        Returns
        -------
        Tensor
            ``y`` clipped (``y`` itself when the domain is ℝ).
        """
        if self.domain == (-math.inf, math.inf):
            return y
        return clamp(y, *self.domain)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"

    # -- elementwise pieces --------------------------------------------------------------------
    def _sum_in_domain(self, y: Tensor, val: Tensor) -> Tensor:
        """Sum ``val`` per sample, (B, ...) -> (B,), +inf for a sample where ``y`` leaves the domain
        (a NaN in ``y`` counts as inside, and propagates through ``val``)."""
        if val.dim() == 0:
            raise ValueError("expected a batched tensor of shape (B, ...), got a 0-dimensional tensor")
        total = val.reshape(val.shape[0], -1).sum(dim=1)
        lo, hi = self.domain
        if lo == -math.inf and hi == math.inf:
            return total
        flat = y.reshape(y.shape[0], -1)  # amin, amax: reductions, NaN propagates (and compares False)
        outside = (flat.amin(dim=1) < lo).logical_or_(flat.amax(dim=1) > hi)
        return total.masked_fill_(outside, math.inf)

    def _psi_elem(self, u: Tensor) -> Tensor:
        raise NotImplementedError

    def _phi_elem(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        return 0.5 * y * y + self._psi_elem(y) + self._phi_elem(z) - y * z

    def _bregman_given_sigma(self, y: Tensor, z: Tensor, s: Tensor) -> Tensor:
        """``_bregman_elem`` given also s = σ(z), which a subclass may use instead of evaluating σ
        (called without gradients: it may work in place on its temporaries)."""
        return self._bregman_elem(y, z)
