"""The probe: noisy codes of a few images, their batched inversion, per-sample measurements, and the
per-level summary (α rule included). Plain PyTorch: the inversion callback runs it at each
validation epoch end, and the experiments use it too.

Shapes: ``levels`` noise levels × ``k`` probe images (this rank's share of ``n``) × ``G`` α values
(G = 1 for a fixed α); the solver sees all of them as one batch of ``levels * k * G``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from lbinv.lifted import LiftedNetwork
from lbinv.metrics import dual_subgradient, psnr, single_layer_subgradient, symmetric_bregman_tv
from lbinv.solvers import InversionResult

#: Data-driven α rules; each solves the whole α grid in the same batch and picks one α per level.
ALPHA_RULES = ("discrepancy", "oracle")
#: α grid of the data-driven rules: 10 values log-spaced in [1e-4, 1e-1].
DEFAULT_ALPHA_GRID = tuple(float(f"{10.0 ** (-4 + 3 * i / 9):.3g}") for i in range(10))

#: :func:`lbinv.invert` with the callback's settings bound (method, max_iter, tol, solver options);
#: called as ``solve(net, data, alpha=..., input_shape=..., noise_level=...)`` (and ``x_init=...``, warm).
Solve = Callable[..., InversionResult]


def code_noise(seed: int, levels: int, n: int, code_shape: tuple[int, ...], start: int, stop: int) -> Tensor:
    """Samples ``start:stop`` of the fixed standard-normal code noise ``(levels, n, *code_shape)``
    drawn from ``seed`` on the CPU; indices past ``n`` (padding) repeat the last sample. The
    noise of each probe image is the same at every epoch and for any number of processes."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((levels, n, *code_shape), generator=generator)
    index = torch.arange(start, stop).clamp(max=n - 1)
    return noise[:, index]


def invert_probe(
    encoder: nn.Module,
    decoder: Optional[Callable[[Tensor], Tensor]],
    x: Tensor,
    *,
    noise_levels: Sequence[float],
    alphas: Tensor,
    seed: int,
    offset: int,
    n: int,
    data_range: tuple[float, float],
    solve: Solve,
    subgradient: Optional[str] = None,
    x_init: Optional[Tensor] = None,
) -> dict[str, Tensor]:
    """Everything one rank computes for its share ``x`` (k images, from index ``offset`` of the ``n``
    probe images) at every noise level and every α of ``alphas`` ``(levels, G)``.

    ``out["bregman_sym"]`` ``(levels, k, G)`` is ``D^sym_TV(x_α(y^δ), x_α(y))`` (see
    :func:`bregman_sym`) for a one-layer encoder when ``subgradient`` is ``"optimality"`` or
    ``"dual"``, else NaN; its reference solves join the same batch. ``out["solution"]`` is the
    whole batch the solver returned (references included): passed back as ``x_init`` (a warm
    start), a batch of the same shape starts from it; another shape is ignored (a cold start)."""
    k, input_shape = x.shape[0], tuple(x.shape[1:])
    levels, grid = alphas.shape
    net = LiftedNetwork.from_module(encoder, input_shape)  # rebuilt: parameters/BN statistics change
    y = encoder(x)
    code_shape = tuple(y.shape[1:])
    noise = code_noise(seed, levels, n, code_shape, offset, offset + k).to(y.device, y.dtype)
    sigma = torch.tensor(noise_levels, device=y.device, dtype=y.dtype).reshape(levels, 1, *[1] * len(code_shape))
    code_activation = net.nodes[-1].activation
    y_delta = code_activation.project_data(y.unsqueeze(0) + sigma * noise)  # (levels, k, *code)
    delta = (y_delta - y.unsqueeze(0)).flatten(2).norm(dim=2)  # (levels, k)
    # the noise measured by the data term: B_Ψ_L(y^δ, a_L) of the clean input (a_L = W_L x_{L-1} + b_L for a chain)
    pre_activation = net.nodes[-1].pre_activation([x, *net.forward_all(x)])
    bregman = code_activation.bregman(
        y_delta.reshape(levels * k, *code_shape),
        pre_activation.unsqueeze(0).expand(levels, *pre_activation.shape).reshape(levels * k, *code_shape),
    ).reshape(levels, k)

    batch = levels * k * grid
    data = y_delta.unsqueeze(2).expand(levels, k, grid, *code_shape).reshape(batch, *code_shape)
    alpha = alphas.to(y.device, y.dtype).reshape(levels, 1, grid).expand(levels, k, grid).reshape(batch)
    noise_level = delta.unsqueeze(2).expand(levels, k, grid).reshape(batch)  # used by "landweber"
    with_reference = subgradient is not None and len(net) == 1 and net.is_chain
    if with_reference:  # the noise-free references x_α(y), one per image and distinct α, in the same batch
        unique, which = torch.unique(alphas, return_inverse=True)  # which: (levels, G)
        data = torch.cat([data, y.unsqueeze(1).expand(k, len(unique), *code_shape).reshape(-1, *code_shape)])
        alpha = torch.cat([alpha, unique.to(y.device, y.dtype).expand(k, -1).reshape(-1)])
        noise_level = torch.cat([noise_level, noise_level.new_zeros(k * len(unique))])
    _synchronize(y.device)
    start = time.perf_counter()
    warm = {} if x_init is None or tuple(x_init.shape) != (data.shape[0], *input_shape) else {"x_init": x_init}
    result = solve(net, data, alpha=alpha, input_shape=input_shape, noise_level=noise_level, **warm)
    _synchronize(y.device)
    seconds = time.perf_counter() - start

    x_inv = result.x[:batch].reshape(batch, *input_shape)
    if with_reference:
        bsym = bregman_sym(net, result, data, alpha, subgradient, batch, which.to(y.device), (levels, k, grid))
    else:
        bsym = torch.full((levels, k, grid), math.nan, device=y.device, dtype=y.dtype)
    truth = x.unsqueeze(0).unsqueeze(2).expand(levels, k, grid, *input_shape).reshape(batch, *input_shape)
    out = {
        "x_inv": x_inv.reshape(levels, k, grid, *input_shape),
        "psnr_inv": psnr(x_inv, truth, data_range).reshape(levels, k, grid),
        "residual": (net(x_inv) - data[:batch]).flatten(1).norm(dim=1).reshape(levels, k, grid),
        "iterations": result.iterations[:batch].to(y.dtype).reshape(levels, k, grid),
        "converged": result.converged[:batch].to(y.dtype).reshape(levels, k, grid),
        "bregman_sym": bsym,
        "delta": delta,
        "bregman_delta": bregman,
        "seconds": torch.tensor([seconds], device=y.device, dtype=y.dtype),
        "solution": result.x,
    }
    if decoder is not None:
        decoded = as_inputs(decoder(y_delta.reshape(levels * k, *code_shape)), code_shape, input_shape).to(x.dtype)
        out["x_dec"] = decoded.reshape(levels, k, *input_shape)
        truth = x.unsqueeze(0).expand(levels, *x.shape).reshape(levels * k, *input_shape)
        out["psnr_dec"] = psnr(decoded, truth, data_range).reshape(levels, k)
    return {key: value.to(y.dtype) for key, value in out.items()}


def as_inputs(decoded: Any, code_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> Tensor:
    """A decoder's output ``(B, …)`` reshaped to the inputs' ``(B, *input_shape)``; a ValueError
    when it is no tensor or its size differs (it cannot be compared with the inputs)."""
    if not isinstance(decoded, Tensor) or decoded.dim() == 0 or decoded[0].numel() != math.prod(input_shape):
        got = tuple(decoded.shape[1:]) if isinstance(decoded, Tensor) else type(decoded).__name__
        raise ValueError(
            f"the decoder maps codes of shape {code_shape} to {got}, which cannot be compared with inputs of shape "
            f"{input_shape}"
        )
    return decoded.reshape(decoded.shape[0], *input_shape)


def bregman_sym(
    net: LiftedNetwork, result: InversionResult, data: Tensor, alpha: Tensor, subgradient: str,
    batch: int, which: Tensor, shape: tuple[int, int, int],
) -> Tensor:
    r"""Symmetric Bregman distance of TV between each noisy inversion and its noise-free reference.

    ``result`` holds the ``batch = levels·k·G`` noisy inversions followed by ``k × U`` references
    ``x† := x_α(y)``: the inversion of the clean code at the same α (U distinct α values, ``which``
    ``(levels, G)`` the index of each). Such an x† satisfies the source condition of Theorem 2 by
    construction (p† = Wᵀ(y − σ(Wx† + b))/α), so this is the paper's error measure (MATH.md §10)
    with the noise as its only source: 0 at σ = 0, and ``αD ≤ ‖y^δ − y‖·‖W(x_α − x†)‖``.
    Subgradients: ``"optimality"`` ``p = −Wᵀ(σ(Wx + b) − y)/α`` (no box constraint); ``"dual"``
    ``p = −div z`` of the solver's dual (with a box, whose normal cone enters the optimality condition).
    Returns ``shape = (levels, k, G)``.
    """
    levels, k, grid = shape
    if subgradient == "dual":
        p = dual_subgradient(result.dual)
    else:
        p = single_layer_subgradient(net, result.x, data, alpha)
    x_ref = result.x[batch:].reshape(k, -1, *result.x.shape[1:])[:, which]  # (k, levels, G, ...)
    p_ref = p[batch:].reshape(k, -1, *p.shape[1:])[:, which]
    x_ref = x_ref.transpose(0, 1).reshape(batch, *result.x.shape[1:])
    p_ref = p_ref.transpose(0, 1).reshape(batch, *p.shape[1:])
    return symmetric_bregman_tv(result.x[:batch], x_ref, p[:batch], p_ref).reshape(levels, k, grid)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def select_alpha(rule: str, psnr: Tensor, residual: Tensor, delta: Tensor, eta: float = 1.0) -> Tensor:
    r"""Index of the chosen α per noise level, shape ``(levels,)``, from per-sample results.

    ``psnr`` and ``residual`` are ``(levels, n, G)`` over an ascending α grid, ``delta`` is
    ``(levels, n)``. ``"fixed"`` (or G = 1) picks index 0. ``"oracle"``: the best mean PSNR
    (non-finite PSNRs count as −∞). ``"discrepancy"``: the largest α whose stacked residual
    :math:`(\sum_i r_i^2)^{1/2}` is at most :math:`\eta (\sum_i \delta_i^2)^{1/2}`; the smallest α
    when none is, or when δ = 0. Non-finite residuals never qualify.
    """
    levels, _, grid = psnr.shape
    if rule == "fixed" or grid == 1:
        return torch.zeros(levels, dtype=torch.long)
    if rule == "oracle":
        score = torch.where(torch.isnan(psnr), torch.full_like(psnr, -math.inf), psnr).mean(dim=1)
        score = torch.nan_to_num(score, nan=-math.inf)  # +inf and -inf PSNRs of one α average to NaN
        return score.argmax(dim=1)
    if rule == "discrepancy":
        r = residual.pow(2).sum(dim=1).sqrt()  # (levels, G)
        d = delta.pow(2).sum(dim=1).sqrt()  # (levels,)
        ok = torch.isfinite(r) & (r <= eta * d.unsqueeze(1)) & (d.unsqueeze(1) > 0)
        positions = torch.arange(grid).expand(levels, grid)
        return torch.where(ok, positions, torch.zeros_like(positions)).max(dim=1).values
    raise ValueError(f"select_alpha: `rule` must be 'fixed', 'oracle' or 'discrepancy', got {rule!r}.")


def summarize(
    out: dict[str, Tensor], alphas: Tensor, noise_levels: Sequence[float], rule: str, eta: float
) -> dict[str, Any]:
    """Pick α per level with ``rule`` and reduce the per-sample results ``out`` to per-level numbers.

    Returns ``index`` (the chosen α per level, ``(levels,)``), ``finite`` (``(levels, n)``: the
    samples whose result at that α is finite; the others are left out of the numbers), ``seconds``
    (the slowest rank's solver time) and ``levels``: one dict per noise level of CPU floats, ``None``
    where no sample is left.
    """
    psnr = out["psnr_inv"].double().cpu()
    residual = out["residual"].double().cpu()
    delta = out["delta"].double().cpu()
    finite = torch.isfinite(out["x_inv"].flatten(3)).all(dim=3).cpu()  # (levels, n, G)
    finite &= torch.isfinite(psnr) | (psnr == math.inf)  # a perfect inversion has an infinite PSNR
    index = select_alpha(rule, psnr, residual, delta, eta)
    chosen_finite = finite[torch.arange(len(noise_levels)), :, index]  # (levels, n)
    levels = []
    for i, s in enumerate(noise_levels):
        ok = chosen_finite[i]
        kept = bool(ok.any())
        level: dict[str, Optional[float]] = {
            "sigma": s,
            "delta2": float(delta[i].pow(2).mean()),
            "delta2_bregman": float(out["bregman_delta"][i].double().mean()),
            "alpha": float(alphas[i, index[i]]) if kept else None,
            "psnr_inverted": float(psnr[i, ok, index[i]].mean()) if kept else None,
            "iterations": float(out["iterations"][i, :, index[i]].double().cpu()[ok].mean()) if kept else None,
            "converged_fraction": float(out["converged"][i, :, index[i]].double().cpu()[ok].mean()) if kept else None,
            "psnr_decoded": None,
            "bregman_sym": None,
        }
        if "bregman_sym" in out:
            bsym = out["bregman_sym"][i, :, index[i]].double().cpu()[ok]
            bsym = bsym[~torch.isnan(bsym)]
            level["bregman_sym"] = float(bsym.mean()) if bsym.numel() else None
        if "psnr_dec" in out:
            decoded = out["psnr_dec"][i].double().cpu()
            decoded = decoded[~torch.isnan(decoded)]
            level["psnr_decoded"] = float(decoded.mean()) if decoded.numel() else None
        levels.append(level)
    return {"index": index, "finite": chosen_finite, "levels": levels, "seconds": float(out["seconds"].max())}
