"""What every solver shares: the problem, the Lipschitz constant of the data term's gradient,
per-sample views and norms, masked moves, the stopping test, and the iteration loop.

Every solver is batched: tensors are ``(B, ...)`` and each sample has its own step sizes, its own
stopping test and its own iteration count. Inside an iteration nothing leaves the device; the
loop synchronises with the host only every ``check_every`` iterations, to test convergence.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol, overload

import torch
from torch import Tensor

from lbinv.regularizers import TotalVariation

#: Power iteration may underestimate ‖W‖₂ slightly; operator norms are inflated by this factor
#: before they enter a step-size bound, so the bound still holds.
OPNORM_SAFETY = 1.01


def lipschitz(opnorm: float) -> float:
    """Lipschitz constant ``‖W‖₂²`` of ``x ↦ Wᵀ(σ(Wx + b) − y)`` (σ is a prox, so 1-Lipschitz).

    A zero map (all-zero weights, BatchNorm with γ = 0; or ‖W‖² below the smallest float) makes
    that gradient vanish, so every step size is valid: 1 is returned instead of 0, whose step
    ``1/0`` would fail.
    """
    lip = (OPNORM_SAFETY * opnorm) ** 2
    return lip if lip > 0.0 else 1.0


@overload
def next_momentum(t: float) -> float: ...
@overload
def next_momentum(t: Tensor) -> Tensor: ...
def next_momentum(t: float | Tensor) -> float | Tensor:
    """FISTA's ``t⁺ = (1 + √(1 + 4t²)) / 2`` (Beck & Teboulle 2009), for a float or per sample;
    the extrapolation weight of the next step is ``(t − 1)/t⁺``."""
    root = torch.sqrt(1.0 + 4.0 * t * t) if isinstance(t, Tensor) else math.sqrt(1.0 + 4.0 * t * t)
    return 0.5 * (1.0 + root)


def per_sample(t: Tensor, like: Tensor) -> Tensor:
    """Reshape a ``(B,)`` tensor to ``(B, 1, ..., 1)`` so it broadcasts against ``like``."""
    return t.reshape(-1, *([1] * (like.dim() - 1)))


def sample_dot(a: Tensor, b: Tensor) -> Tensor:
    """Inner product of each pair of samples, shape ``(B,)``."""
    return (a * b).flatten(1).sum(1)


def sample_norm(x: Tensor) -> Tensor:
    """Euclidean norm of each sample, shape ``(B,)``."""
    return x.flatten(1).norm(dim=1)


#: An objective counts as risen only beyond this many units ε (its dtype's machine epsilon) of the reference:
#: below that it is rounding (:mod:`lbinv.solvers.fista`, "Went up").
ROUNDING_SLACK = 4.0


def rose(value: Tensor, reference: Tensor) -> Tensor:
    """``(B,)`` bool: ``value > (1 + ROUNDING_SLACK · ε) · reference`` (objectives ≥ 0); NaN counts as a rise."""
    return ~(value <= reference * (1.0 + ROUNDING_SLACK * torch.finfo(value.dtype).eps))


def masked(active: Tensor | None, new: Tensor, old: Tensor) -> Tensor:
    """``new`` where the sample is active, ``old`` where it has stopped (finished samples stay put).
    ``active=None`` means every sample is active: ``new`` itself, without a pass over the data."""
    if active is None:
        return new
    return torch.where(per_sample(active, new), new, old)


@dataclass(frozen=True)
class Problem:
    """One batch of regularised inversion problems, as :func:`lbinv.invert` validated it.

    ``y``: (B, ...) data the network (or layer) should produce; ``alpha``: (B,) regularisation
    weights; ``tv``: the regulariser, or None; ``bounds``: a box ``(lo, hi)`` on x, or None; ``tol``:
    the stopping tolerance; ``x_init``: (B, *input_shape) starting point; ``dual_init``: the TV dual
    to start from (shape of ``∇x``, feasible), or None for 0.
    """

    y: Tensor
    alpha: Tensor
    tv: TotalVariation | None
    bounds: tuple[float, float] | None
    tol: float
    x_init: Tensor
    dual_init: Tensor | None = None

    def initial_dual(self) -> Tensor | None:
        """The TV dual a lifted solver starts from: ``dual_init``, else 0 with the shape of ``∇x``;
        None without TV."""
        if self.tv is None:
            return None
        return self.tv.zero_dual(self.x_init) if self.dual_init is None else self.dual_init


class Iterative(Protocol):
    """One solver's state and update; :func:`iterate` drives it.

    While every sample is still active (the loop knows it from its last check) the solver is
    passed ``active=None``, so that it can skip the masking passes (:func:`masked`).

    Two optional methods, looked up by :func:`iterate`: ``stalled() -> Tensor``, samples that
    cannot meet their test and stop unconverged (after :meth:`done`, at each check, without a host
    synchronisation), and ``finish() -> None``, run once after the loop
    (:class:`~lbinv.solvers.fista.FISTA` has both).
    """

    x: Tensor

    def step(self, active: Tensor | None, measure: bool) -> Tensor | None:
        """Update the active samples; return the mask of samples actually updated (None: every
        sample). With ``measure`` the step also records what :meth:`done` needs."""

    def done(self) -> Tensor:
        """``(B,)`` bool: samples whose stopping test holds after the last measured step."""

    def objective(self) -> Tensor:
        """``(B,)`` objective at the current iterate."""


class StepTest:
    """The stopping test of every lifted solver and baseline: the last measured step was at most
    ``tol`` (its size, ``last_change``, as each solver measures it: ``+inf`` before the first)."""

    tol: float
    last_change: Tensor

    def done(self) -> Tensor:
        return self.last_change <= self.tol


class SingleBlock(StepTest):
    """For solvers whose state is one block ``x``: the masked move, measured by ``‖x⁺ − x‖``."""

    x: Tensor

    def move_to(self, new: Tensor, active: Tensor | None, measure: bool) -> None:
        """``x ← new`` for the active samples (finished ones stay put); with ``measure`` record
        the step's size for :meth:`done`."""
        new = masked(active, new, self.x)
        if measure:
            self.last_change = sample_norm(new - self.x)
        self.x = new


@dataclass
class LoopResult:
    iterations: Tensor
    converged: Tensor
    history: dict[str, list] | None = field(default=None)


def iterate(
    solver: Iterative,
    batch: int,
    device: torch.device,
    max_iter: int,
    check_every: int,
    record_history: bool = False,
    skip_masks: bool = True,
    deadline: float | None = None,
) -> LoopResult:
    """Run ``solver.step`` up to ``max_iter`` times with per-sample stopping masks.

    Every ``check_every`` iterations (and at the last one) the stopping test is evaluated;
    samples that pass stop changing, as do, unconverged, those a solver's optional ``stalled()``
    marks (:meth:`lbinv.solvers.fista.FISTA.stalled`; its optional ``finish()`` runs after the last
    check), and the loop ends once none is active, or after the first iteration that ends at or after
    ``deadline`` (a ``time.perf_counter()`` value, read on the host after every iteration, without a
    device synchronisation: on a GPU it runs ahead of the device by the queue of launched kernels;
    the samples still active then stay unconverged). ``skip_masks=False`` passes the mask even while every sample is active (to
    measure what skipping it saves).
    """
    stalled, finish = getattr(solver, "stalled", None), getattr(solver, "finish", None)  # optional (Iterative)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    converged = torch.zeros_like(active)
    iterations = torch.zeros(batch, dtype=torch.long, device=device)
    history: dict[str, list] | None = {"iteration": [], "objective": []} if record_history else None
    everyone = skip_masks  # every sample is active, and the solver is told so
    for k in range(max_iter):
        measure = (k + 1) % check_every == 0 or k + 1 == max_iter
        updated = solver.step(None if everyone else active, measure)
        iterations += 1 if updated is None else updated
        late = deadline is not None and time.perf_counter() >= deadline
        if not measure:
            if late:
                break
            continue
        done = solver.done() & active
        converged |= done
        active &= ~done
        if stalled is not None:
            active &= ~stalled()
        if history is not None:
            history["iteration"].append(k + 1)
            history["objective"].append(solver.objective())
        remaining = int(active.sum())  # the loop's one host synchronisation per check
        if remaining == 0 or late:
            break
        everyone = everyone and remaining == batch
    if finish is not None:
        finish()
    return LoopResult(iterations, converged, history)
