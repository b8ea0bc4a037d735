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
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from lbinv.lifted import LiftedNetwork
from lbinv.metrics import dual_subgradient, psnr, single_layer_subgradient, symmetric_bregman_tv
from lbinv.regularizers import TotalVariation
from lbinv.solvers import InversionResult

#: Data-driven α rules: "auto" searches a log grid locally (:class:`lbinv.alpha_search.AlphaSearch`); "discrepancy" and
#: "oracle" solve the whole grid in the same batch and pick one α per level (:func:`select_alpha`).
ALPHA_RULES = ("auto", "discrepancy", "oracle")
#: α grid of "discrepancy" and "oracle": 10 values log-spaced in [1e-4, 1e-1].
DEFAULT_ALPHA_GRID = tuple(float(f"{10.0 ** (-4 + 3 * i / 9):.3g}") for i in range(10))

#: :func:`lbinv.invert` with the callback's settings bound (method, max_iter, tol, solver options);
#: called as ``solve(net, data, alpha=..., input_shape=..., noise_level=...)`` (and ``x_init=...``, warm).
Solve = Callable[..., InversionResult]

#: The shapes of :class:`ProbeResult`'s fields (their metadata ``per``): one value per sample
#: ``(levels, k, G, ...)``, per noisy code whatever α ``(levels, k, ...)``, or per call ``(1,)``.
PER_SAMPLE, PER_CODE, PER_CALL = "sample", "code", "call"


def _entry(per: str, summary: Optional[str] = None, title: str = "", squared: bool = False, decoder: bool = False) -> Any:
    """A :class:`ProbeResult` field: its shape ``per`` and, with ``summary``, the per-level number
    :func:`summarize` makes of it (named ``summary``, charted under ``title``; of the squares with
    ``squared``). ``decoder``: present only with a decoder (default None)."""
    metadata = {"per": per, "summary": summary, "title": title, "squared": squared, "decoder": decoder}
    return field(default=None, metadata=metadata) if decoder else field(metadata=metadata)


@dataclass
class ProbeResult:
    """What :func:`invert_probe` computes for one share of the probe: ``levels`` noise levels × ``k``
    images × ``G`` α columns, NaN where nothing was solved.

    The fields own what is made of them: each one's metadata gives its shape (``per``) and, where it
    has a ``summary`` name, the per-level number of :func:`summarize` (the mean over the chosen α's
    kept samples, or over the level's codes). A new field so declared, and filled in
    :func:`invert_probe`, reaches the summary, the loggers and TensorBoard's layout
    (:func:`level_numbers`), the DDP gather and the final inversion's rounds (:meth:`map`,
    :meth:`names`) with no other edit.
    """

    x_inv: Tensor = _entry(PER_SAMPLE)  #: the inversions x_α(y^δ)
    psnr_inv: Tensor = _entry(PER_SAMPLE, "psnr_inverted", "PSNR inverted (dB)")
    residual: Tensor = _entry(PER_SAMPLE)  #: ‖N(x_α) − y^δ‖
    iterations: Tensor = _entry(PER_SAMPLE, "iterations", "iterations")
    converged: Tensor = _entry(PER_SAMPLE, "converged_fraction", "share of the probe converged")
    solved: Tensor = _entry(PER_SAMPLE)  #: 1 where a sample was solved, else 0
    #: D^sym_TV(x_α(y^δ), x_α(y)) (:func:`bregman_sym`), NaN where not measured
    bregman_sym: Tensor = _entry(PER_SAMPLE, "bregman_sym", "symmetric Bregman distance of TV (one-layer encoders)")
    delta: Tensor = _entry(PER_CODE, "delta2", "delta^2 = |y_delta - y|^2", squared=True)  #: δ = ‖y^δ − y‖
    #: B_Ψ_L(y^δ, a_L) of the clean input: the noise as the data term measures it
    bregman_delta: Tensor = _entry(PER_CODE, "delta2_bregman", "delta^2 as B_Psi(y_delta, W x + b)")
    seconds: Tensor = _entry(PER_CALL)  #: the solver's wall time
    x_dec: Optional[Tensor] = _entry(PER_CODE, decoder=True)  #: the decoder's outputs for y^δ
    psnr_dec: Optional[Tensor] = _entry(PER_CODE, "psnr_decoded", "PSNR decoded (dB)", decoder=True)

    @staticmethod
    def names(per: str) -> tuple[str, ...]:
        """The fields of shape ``per``."""
        return tuple(f.name for f in fields(ProbeResult) if f.metadata["per"] == per)

    def map(self, fn: Callable[[Tensor, str], Tensor]) -> ProbeResult:
        """A result of ``fn(value, per)`` for each field present, in field order (the same on every rank)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return replace(self, **{f.name: fn(values[f.name], f.metadata["per"]) for f in fields(self) if values[f.name] is not None})


def level_numbers(decoder: bool = True) -> dict[str, str]:
    """The numbers :func:`summarize` gives per noise level, each with its chart title: α and the
    summaries of :class:`ProbeResult`'s fields (those of the decoder only with ``decoder``)."""
    numbers = {"alpha": "alpha"}
    for f in fields(ProbeResult):
        if f.metadata["summary"] is not None and (decoder or not f.metadata["decoder"]):
            numbers[f.metadata["summary"]] = f.metadata["title"]
    return numbers


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
    counts: Optional[Tensor] = None,
    x_init: Optional[Tensor] = None,
    start: str = "zeros",
    regularizer: Optional[str] = "tv",
) -> ProbeResult:
    """Everything one rank computes for its share ``x`` (k images, from index ``offset`` of the ``n``
    probe images) at every noise level and every α column of ``alphas`` ``(levels, G)``.

    ``counts`` ``(levels, G)``: column ``(l, g)`` solves the first ``counts[l, g]`` of the k images
    (default: all; 0 leaves a column, or a whole level, out); :class:`ProbeResult` says what comes back.

    Starting points: ``x_init`` ``(levels, k, G, *input_shape)`` (a warm start), and where it is NaN
    (or None) ``start``: ``"decoder"``, the decoder's output for the noisy code clamped into
    ``data_range`` (with the hidden variables of a forward pass: the solvers' ``hidden_init``), or
    ``"zeros"``. With ``start="decoder"`` a warm start is taken only where its objective
    (:func:`start_objective`, with ``regularizer`` as the solve's, at the level's first α, so that
    columns given the same warm start decide alike) is at most the decoder start's: the encoder has
    trained since it was solved, and early in training its output moves fast.

    ``bregman_sym`` is ``D^sym_TV(x_α(y^δ), x_α(y))`` (see :func:`bregman_sym`) for a one-layer
    encoder when ``subgradient`` is ``"optimality"`` or ``"dual"``, for the columns that solve every
    image, else NaN; its reference solves join the same batch."""
    k, input_shape = x.shape[0], tuple(x.shape[1:])
    levels, grid = alphas.shape
    counts = torch.full((levels, grid), k, dtype=torch.long) if counts is None else counts.cpu().clamp(0, k)
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
    decoded = psnr_dec = None
    if decoder is not None:
        decoded = as_inputs(decoder(y_delta.reshape(levels * k, *code_shape)), code_shape, input_shape).to(x.dtype)
        decoded = decoded.reshape(levels, k, *input_shape)
        truth = x.unsqueeze(0).expand(levels, *x.shape).reshape(levels * k, *input_shape)
        psnr_dec = psnr(decoded.reshape(levels * k, *input_shape), truth, data_range).reshape(levels, k)

    solved = torch.arange(k).reshape(1, k, 1) < counts.unsqueeze(1)  # (levels, k, G)
    level_i, image_i, column_i = (i.to(y.device) for i in solved.nonzero(as_tuple=True))
    batch = level_i.numel()
    data = y_delta[level_i, image_i]
    alpha = alphas.to(y.device, y.dtype)[level_i, column_i]
    noise_level = delta[level_i, image_i]  # used by "landweber"
    default_start = _default_start(start, decoded, data_range, levels, k, input_shape, x)
    x0 = default_start[level_i, image_i]
    if x_init is not None:
        warm = x_init.to(y.device, y.dtype)[level_i, image_i, column_i]
        use = ~torch.isnan(warm.flatten(1)).any(dim=1)
        if start == "decoder" and decoded is not None and bool(use.any()):
            # the encoder has trained since the warm start was solved: keep it only where it still
            # explains the noisy code better than the decoder's output (the objective at x, hidden
            # variables by a forward pass, the start the solvers take)
            tv = None if regularizer is None else TotalVariation(isotropic=regularizer == "tv")
            reference = alphas.to(y.device, y.dtype)[level_i, 0]  # the level's first α: one rule for its columns
            use &= start_objective(net, torch.where(per_image(use, warm), warm, x0), data, reference, tv, data_range) <= start_objective(
                net, x0, data, reference, tv, data_range
            )
        x0 = torch.where(per_image(use, warm), warm, x0)
    full = counts == k  # (levels, G): columns that solve every image get noise-free references
    with_reference = subgradient is not None and len(net) == 1 and net.is_chain and bool(full.any())
    if with_reference:  # the noise-free references x_α(y), one per image and distinct α, in the same batch
        unique, which = torch.unique(alphas[full], return_inverse=True)
        data = torch.cat([data, y.unsqueeze(1).expand(k, len(unique), *code_shape).reshape(-1, *code_shape)])
        alpha = torch.cat([alpha, unique.to(y.device, y.dtype).expand(k, -1).reshape(-1)])
        noise_level = torch.cat([noise_level, noise_level.new_zeros(k * len(unique))])
        clean_start = _default_start(start, None if decoder is None else decoder(y), data_range, 1, k, input_shape, x)
        x0 = torch.cat([x0, clean_start[0].unsqueeze(1).expand(k, len(unique), *input_shape).reshape(-1, *input_shape)])
    for affine in net.affine_maps():  # ‖W‖ by power iteration, before the solver's clock starts
        affine.opnorm()
    _synchronize(y.device)
    begin = time.perf_counter()
    starting = {} if start == "zeros" and x_init is None else {"x_init": x0}  # "sequential" takes none
    result = solve(net, data, alpha=alpha, input_shape=input_shape, noise_level=noise_level, **starting) if batch else None
    _synchronize(y.device)
    seconds = torch.tensor([time.perf_counter() - begin], device=y.device, dtype=y.dtype)
    if result is not None and tuple(result.x.shape) != (data.shape[0], *input_shape):
        raise RuntimeError(
            f"the solver returned inputs of shape {tuple(result.x.shape)} for {data.shape[0]} codes, "
            f"expected {(data.shape[0], *input_shape)}"
        )

    def scatter(values: Tensor) -> Tensor:
        """Per-sample ``values`` (batch, ...) into a NaN-filled ``(levels, k, G, ...)``."""
        target = torch.full((levels, k, grid, *values.shape[1:]), math.nan, device=y.device, dtype=y.dtype)
        target[level_i, image_i, column_i] = values.to(y.dtype)
        return target

    x_inv = torch.empty(0, *input_shape, device=y.device, dtype=y.dtype) if result is None else result.x[:batch]
    bsym = torch.full((levels, k, grid), math.nan, device=y.device, dtype=y.dtype)
    if with_reference and result is not None and subgradient is not None:
        column_full = full.to(y.device)[level_i, column_i]  # (batch,) samples of full columns
        index = torch.full((levels, grid), -1, dtype=torch.long)
        index[full] = which
        values = bregman_sym(net, result, data, alpha, subgradient, batch, k, index.to(y.device)[level_i, column_i], image_i)
        bsym[level_i[column_full], image_i[column_full], column_i[column_full]] = values[column_full].to(y.dtype)
    out = ProbeResult(
        x_inv=scatter(x_inv),
        psnr_inv=scatter(psnr(x_inv, x[image_i], data_range)),
        residual=scatter((net(x_inv) - data[:batch]).flatten(1).norm(dim=1) if batch else x_inv.new_zeros(0)),
        iterations=scatter(x_inv.new_zeros(0) if result is None else result.iterations[:batch]),
        converged=scatter(x_inv.new_zeros(0) if result is None else result.converged[:batch]),
        solved=solved.to(y.device),
        bregman_sym=bsym,
        delta=delta,
        bregman_delta=bregman,
        seconds=seconds,
        x_dec=decoded,
        psnr_dec=psnr_dec,
    )
    return out.map(lambda value, per: value.to(y.dtype))


def start_objective(
    net: LiftedNetwork,
    x: Tensor,
    data: Tensor,
    alpha: Tensor,
    tv: Optional[TotalVariation],
    bounds: tuple[float, float],
) -> Tensor:
    """``(B,)`` the lifted objective (MATH.md §3) at a starting point ``x`` projected into ``bounds``
    with the hidden variables of a forward pass, as the solvers start: every hidden term is 0 there,
    which leaves ``B_Ψ_L(y, a_L(x)) + α R(x)``."""
    x = x.clamp(*bounds)
    values = net.forward_all(x)
    value = net.nodes[-1].activation.bregman(data, net.nodes[-1].pre_activation([x, *values]))
    return value if tv is None else value + alpha * tv.value(x)


def _default_start(
    start: str,
    decoded: Optional[Tensor],
    data_range: tuple[float, float],
    levels: int,
    k: int,
    input_shape: tuple[int, ...],
    like: Tensor,
) -> Tensor:
    """``(levels, k, *input_shape)`` starting points: the decoder's outputs clamped into
    ``data_range`` (non-finite pixels 0) for ``start="decoder"`` when there is a decoder, else 0."""
    if start == "decoder" and decoded is not None:
        decoded = decoded.reshape(levels, k, *input_shape).to(like.dtype)
        return torch.nan_to_num(decoded, nan=0.0, posinf=0.0, neginf=0.0).clamp(*data_range)
    return like.new_zeros(levels, k, *input_shape)


def as_inputs(decoded: Any, code_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> Tensor:
    """A decoder's output ``(B, …)`` reshaped to the inputs' ``(B, *input_shape)``; a ValueError
    when it is no tensor or its size differs (it cannot be compared with the inputs)."""
    if not isinstance(decoded, Tensor) or decoded.dim() == 0 or decoded[0].numel() != math.prod(input_shape):
        got = tuple(decoded.shape[1:]) if isinstance(decoded, Tensor) else type(decoded).__name__
        raise ValueError(
            f"the decoder maps codes of shape {code_shape} to {got}, which cannot be compared with inputs of shape {input_shape}"
        )
    return decoded.reshape(decoded.shape[0], *input_shape)


def bregman_sym(
    net: LiftedNetwork,
    result: InversionResult,
    data: Tensor,
    alpha: Tensor,
    subgradient: str,
    batch: int,
    k: int,
    reference: Tensor,
    image: Tensor,
) -> Tensor:
    r"""Symmetric Bregman distance of TV between each noisy inversion and its noise-free reference, ``(batch,)``.

    ``result`` holds the ``batch`` noisy inversions followed by ``k × U`` references ``x† := x_α(y)``:
    the inversion of the clean code of each image at each of U distinct α values. Sample ``i`` is
    compared with reference ``(image[i], reference[i])`` (``reference[i] < 0``: none, NaN). Such an
    x† satisfies the source condition of Theorem 2 by construction (p† = Wᵀ(y − σ(Wx† + b))/α), so
    this is the paper's error measure (MATH.md §10) with the noise as its only source: 0 at σ = 0,
    and ``αD ≤ ‖y^δ − y‖·‖W(x_α − x†)‖``. Subgradients: ``"optimality"`` ``p = −Wᵀ(σ(Wx + b) − y)/α``
    (no box constraint); ``"dual"`` ``p = −div z`` of the solver's dual (with a box, whose normal
    cone enters the optimality condition).
    """
    if subgradient == "dual":
        if result.dual is None:
            raise ValueError("bregman_sym: subgradient='dual' needs the solver's TV dual variable, and the result has none")
        p = dual_subgradient(result.dual)
    else:
        p = single_layer_subgradient(net, result.x, data, alpha)
    unique = (result.x.shape[0] - batch) // k
    ref = batch + image * unique + reference.clamp_min(0)
    bsym = symmetric_bregman_tv(result.x[:batch], result.x[ref], p[:batch], p[ref])
    return torch.where(reference >= 0, bsym, torch.full_like(bsym, math.nan))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def per_image(mask: Tensor, like: Tensor) -> Tensor:
    """A per-image bool ``(n,)`` reshaped to broadcast against ``like`` ``(n, ...)``."""
    return mask.reshape(-1, *[1] * (like.dim() - 1))


def select_alpha(rule: str, psnr: Tensor, residual: Tensor, delta: Tensor, eta: float = 1.0) -> Tensor:
    r"""Index of the chosen α per noise level, shape ``(levels,)``, from per-sample results.

    ``psnr`` and ``residual`` are ``(levels, n, G)`` over an ascending α grid, ``delta`` is
    ``(levels, n)``. ``"fixed"`` and ``"auto"`` (the current α is column 0, :class:`AlphaSearch`), or
    G = 1, pick index 0. ``"oracle"``: the best mean PSNR
    (non-finite PSNRs count as −∞). ``"discrepancy"``: the largest α whose stacked residual
    :math:`(\sum_i r_i^2)^{1/2}` is at most :math:`\eta (\sum_i \delta_i^2)^{1/2}`; the smallest α
    when none is, or when δ = 0. Non-finite residuals never qualify.
    """
    levels, _, grid = psnr.shape
    if rule in ("fixed", "auto") or grid == 1:
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
    raise ValueError(f"select_alpha: `rule` must be 'fixed', 'auto', 'oracle' or 'discrepancy', got {rule!r}.")


@dataclass
class ProbeSummary:
    """One inversion reduced per noise level (:func:`summarize`)."""

    #: ``(levels,)`` the chosen α column per level
    index: Tensor
    #: ``(levels, n)`` bool: the samples solved at that α whose result is finite (the numbers average these)
    finite: Tensor
    #: ``(levels, n)`` bool: those solved there whose result is not (left out of the numbers)
    failed: Tensor
    #: one dict per noise level of CPU floats: ``sigma``, ``inverted`` (False for a level left out of this
    #: inversion) and the numbers of :func:`level_numbers`, ``None`` where no sample is left
    levels: list[dict[str, Any]]
    #: the slowest rank's solver time
    seconds: float


def summarize(out: ProbeResult, alphas: Tensor, noise_levels: Sequence[float], rule: str, eta: float) -> ProbeSummary:
    """Pick α per level with ``rule`` (:func:`select_alpha`) and reduce the results ``out`` to per-level
    numbers: each field with a ``summary`` name (:class:`ProbeResult`) gives the mean of its values
    that are not NaN, per sample over the chosen α's kept samples, per code over the level's codes."""
    psnr = out.psnr_inv.double().cpu()
    solved = out.solved.cpu() > 0
    finite = torch.isfinite(out.x_inv.flatten(3)).all(dim=3).cpu()  # (levels, n, G)
    finite &= torch.isfinite(psnr) | (psnr == math.inf)  # a perfect inversion has an infinite PSNR
    index = select_alpha(rule, psnr, out.residual.double().cpu(), out.delta.double().cpu(), eta)
    rows = torch.arange(len(noise_levels))
    chosen_solved, chosen_finite = solved[rows, :, index], finite[rows, :, index]  # (levels, n)
    kept = chosen_finite & chosen_solved
    levels = []
    for i, s in enumerate(noise_levels):
        ok = kept[i]
        level: dict[str, Any] = {
            "sigma": s,
            "inverted": bool(solved[i].any()),
            "alpha": float(alphas[i, index[i]]) if bool(ok.any()) else None,
        }
        for f in fields(ProbeResult):
            name, value = f.metadata["summary"], getattr(out, f.name)
            if name is None:
                continue
            if value is None:
                level[name] = None
                continue
            value = value[i].double().cpu()
            value = value[:, index[i]][ok] if f.metadata["per"] == PER_SAMPLE else value
            value = value.square() if f.metadata["squared"] else value
            value = value[~torch.isnan(value)]
            level[name] = float(value.mean()) if value.numel() else None
        levels.append(level)
    return ProbeSummary(index=index, finite=kept, failed=chosen_solved & ~chosen_finite, levels=levels, seconds=float(out.seconds.max()))
