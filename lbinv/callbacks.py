"""Watch, epoch by epoch, what a network's code still holds: lifted-Bregman inversion in TensorBoard.

:class:`InversionCallback` keeps a fixed probe of validation images. At the end of a validation
epoch it encodes them, adds Gaussian noise of several standard deviations to the code, clips the
noisy code into the domain of the code activation, and inverts *all* noise levels × images
(× α-grid values) in one batched :func:`lbinv.invert` call. It logs the PSNR of the inversion and
of the decoder applied to the same noisy code, per noise level, to TensorBoard.

Steps: every TensorBoard record this callback writes (scalars, images, figure) uses
``global_step = trainer.current_epoch``, so the x axis of the ``inversion/*`` charts counts epochs
(the inversion runs at most once per validation epoch). Without a TensorBoard logger the scalars go
through ``pl_module.log`` instead, and Lightning then uses its own step (``trainer.global_step``).

This is the only module of the numerical package besides ``data``/``models`` that imports
Lightning; it does not import :mod:`lbinv.models` and works with any LightningModule.
"""

from __future__ import annotations

import math
import operator
import time
import warnings
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Literal, Optional, Union

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics.functional.image import peak_signal_noise_ratio
from typing_extensions import override

from lbinv.lifted import LiftedNetwork
from lbinv.solvers import METHODS, OPTIONS, invert

__all__ = ["InversionCallback", "InversionWarning", "select_alpha", "ALPHA_RULES", "DEFAULT_ALPHA_GRID"]

#: Data-driven α rules; each solves the whole α grid in the same batch and picks one α per level.
ALPHA_RULES = ("discrepancy", "oracle")
#: α grid of the data-driven rules: 10 values log-spaced in [1e-4, 1e-1].
DEFAULT_ALPHA_GRID = tuple(float(f"{10.0 ** (-4 + 3 * i / 9):.3g}") for i in range(10))
#: ``solver_options`` keys the callback sets itself.
_RESERVED_OPTIONS = ("model", "y", "alpha", "input_shape", "method", "max_iter", "tol", "noise_level")

EncoderSpec = Union[str, Callable[[LightningModule], nn.Module]]
DecoderSpec = Optional[Union[str, Callable[[LightningModule], Callable[[Tensor], Tensor]]]]


class InversionWarning(UserWarning):
    """A problem of the inversion callback that does not stop the training (solver failure, NaN,
    missing TensorBoard logger, a probe smaller than asked)."""


class InversionCallback(Callback):
    r"""Invert the validation codes of an encoder with the lifted Bregman method and log the results.

    Parameters
    ----------
    noise_levels
        Standard deviations σ of the Gaussian noise added to the code; distinct, finite, ≥ 0.
    alpha
        Regularisation parameter α of :func:`lbinv.invert`:

        - a float > 0 used at every noise level;
        - a sequence with one α > 0 per noise level;
        - ``"discrepancy"``: Morozov's principle per noise level — the largest α of ``alpha_grid``
          whose data residual over the probe, :math:`\|N(x_\alpha) - y^\delta\|`, stays within
          :math:`\eta\,\delta` with :math:`\delta = \|y^\delta - y\|` (norms over the stacked probe);
          the smallest α when no grid value qualifies or σ = 0;
        - ``"oracle"``: per noise level the α of ``alpha_grid`` with the best mean PSNR against the
          true images (the paper's choice; it uses the ground truth).

        The whole grid is solved in the same batched call as the noise levels and images.
    num_samples
        Number of validation images in the probe (taken from the first validation batches of the
        first validation epoch that is not a sanity check, and kept in the checkpoint).
    every_n_epochs
        During ``fit``, invert after the validation of every ``every_n_epochs``-th epoch
        (``(epoch + 1) % every_n_epochs == 0``). ``trainer.validate`` always inverts.
    method, max_iter, tol
        Passed to :func:`lbinv.invert`.
    encoder
        Attribute name (dotted paths allowed, e.g. ``"model.encoder"``) of the encoder on the
        LightningModule, or a callable ``pl_module -> nn.Module``. It must be supported by
        :meth:`lbinv.LiftedNetwork.from_module` (checked when ``fit``/``validate`` starts).
    decoder
        Attribute name or callable ``pl_module -> decoder`` (an ``nn.Module`` or any callable
        mapping codes to images), or ``None`` for no decoder comparison.
    input_shape
        Shape of one input without the batch dimension, e.g. ``(1, 28, 28)``. By default taken
        from ``pl_module.example_input_array`` or from the validation batches.
    data_range
        ``(lo, hi)`` value range of the images: PSNR uses it (torchmetrics, values clamped into it)
        and the image grids are drawn with this fixed range.
    seed
        Seed of the code noise; the same noise is used at every epoch.
    log_images
        Log the image grids and the PSNR-vs-σ figure (needs a :class:`TensorBoardLogger`).
    solver_options
        Further keyword arguments of :func:`lbinv.invert` (``regularizer``, ``bounds``,
        ``check_every``, solver-specific options). ``bounds`` defaults to ``None`` as in ``invert``.
    alpha_grid
        α values tried by ``"discrepancy"`` and ``"oracle"`` (default :data:`DEFAULT_ALPHA_GRID`).
    eta
        Safety factor η > 0 of the discrepancy principle (usually ≥ 1).

    Logged (TensorBoard tags; ``{s:g}`` is the noise level):

    - scalars ``inversion/psnr_inverted/sigma_{s}``, ``inversion/psnr_decoded/sigma_{s}``,
      ``inversion/delta2/sigma_{s}`` (mean ‖y^δ − y‖² over the probe),
      ``inversion/delta2_bregman/sigma_{s}`` (mean :math:`B_{\Psi_L}(y^\delta, W_L x_{L-1} + b_L)` of the clean
      input: the noise as the data term measures it; an addition to the issue's list), ``inversion/alpha/sigma_{s}``
      (α used), ``inversion/iterations/sigma_{s}`` (mean iterations), ``inversion/seconds``
      (wall time of the solver call, slowest rank);
    - images ``inversion/images/sigma_{s}``: rows truth / decoder / inversion;
    - figure ``inversion/psnr_vs_sigma``; a custom-scalars layout (tab "CUSTOM SCALARS").
    """

    def __init__(
        self,
        noise_levels: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.33),
        alpha: Union[float, Sequence[float], Literal["discrepancy", "oracle"]] = 1e-2,
        num_samples: int = 16,
        every_n_epochs: int = 1,
        method: str = "lifted",
        max_iter: int = 1500,
        tol: float = 1e-5,
        encoder: EncoderSpec = "encoder",
        decoder: DecoderSpec = "decoder",
        input_shape: Optional[Sequence[int]] = None,
        data_range: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
        log_images: bool = True,
        solver_options: Optional[dict[str, Any]] = None,
        alpha_grid: Optional[Sequence[float]] = None,
        eta: float = 1.0,
    ) -> None:
        super().__init__()
        self.noise_levels = _validate_noise_levels(noise_levels)
        self.alpha_grid = _validate_alpha_grid(alpha_grid)
        self.alpha: Union[float, tuple[float, ...], str] = _validate_alpha(alpha, len(self.noise_levels))
        self.num_samples = _validate_int("num_samples", num_samples, minimum=1)
        self.every_n_epochs = _validate_int("every_n_epochs", every_n_epochs, minimum=1)
        if not isinstance(method, str) or method not in METHODS:
            raise ValueError(f"InversionCallback: `method` must be one of {METHODS}, got {method!r}.")
        self.method = method
        self.max_iter = _validate_int("max_iter", max_iter, minimum=1)
        self.tol = _validate_float("tol", tol, minimum=0.0, strict=False)
        self.encoder = _validate_accessor("encoder", encoder, allow_none=False)
        self.decoder = _validate_accessor("decoder", decoder, allow_none=True)
        self.input_shape = _validate_shape(input_shape)
        self.data_range = _validate_data_range(data_range)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"InversionCallback: `seed` must be an int, got {seed!r}.")
        self.seed = seed
        if not isinstance(log_images, bool):
            raise ValueError(f"InversionCallback: `log_images` must be a bool, got {log_images!r}.")
        self.log_images = log_images
        self.solver_options = _validate_solver_options(solver_options, method)
        if method == "landweber" and isinstance(self.alpha, str):
            raise ValueError(
                f"InversionCallback: method='landweber' ignores alpha (it stops by the discrepancy principle "
                f"itself), so alpha={self.alpha!r} would solve the same problem for every grid value; pass a float."
            )
        self.eta = _validate_float("eta", eta, minimum=0.0, strict=True)

        self._probe: Optional[Tensor] = None  # (n, *input_shape), CPU; the state kept in checkpoints
        self._pending: list[Tensor] = []  # images captured this epoch, before the probe is final
        self._pending_count = 0
        self._encoder_checked = False
        self._warned: set[str] = set()
        self._layout_written = False

    # ------------------------------------------------------------------ Lightning state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(encoder=_accessor_name(self.encoder), num_samples=self.num_samples)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"probe": self._probe}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        probe = state_dict.get("probe")
        self._probe = None if probe is None else probe.detach().cpu()[: self.num_samples]
        self._pending, self._pending_count = [], 0

    @property
    def probe(self) -> Optional[Tensor]:
        """The fixed probe images ``(n, *input_shape)`` (CPU), or ``None`` before they are captured."""
        return self._probe

    # ------------------------------------------------------------------ skipping
    def _should_skip(self, trainer: Trainer) -> bool:
        """True when no inversion runs at this validation epoch end: sanity check, a stage other than
        fit/validate, or an epoch off the ``every_n_epochs`` interval during fit."""
        if trainer.sanity_checking:
            return True
        fn = trainer.state.fn
        if fn == TrainerFn.VALIDATING:
            return False
        if fn != TrainerFn.FITTING:
            return True
        return (trainer.current_epoch + 1) % self.every_n_epochs != 0

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._encoder_checked = False  # the module may differ from a previous run's
        self._pending, self._pending_count = [], 0

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check_encoder(pl_module, self._known_input_shape(pl_module), defer_if_shape_unknown=True)

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == TrainerFn.VALIDATING and not self._encoder_checked:
            self._check_encoder(pl_module, self._known_input_shape(pl_module), defer_if_shape_unknown=True)

    @override
    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0 or trainer.state.fn not in (TrainerFn.FITTING, TrainerFn.VALIDATING):
            return
        if not self._encoder_checked or (not trainer.sanity_checking and self._probe is None):
            x = _batch_inputs(batch)
            if not self._encoder_checked:
                # fails here, before the first training epoch when a sanity check runs
                self._check_encoder(pl_module, self.input_shape or tuple(x.shape[1:]), defer_if_shape_unknown=False)
            if trainer.sanity_checking or self._pending_count >= self.num_samples:
                return
            need = self.num_samples - self._pending_count
            with torch.inference_mode(False):  # store normal tensors, not inference tensors
                part = x[:need].detach().clone().cpu()
            self._pending.append(part)
            self._pending_count += part.shape[0]

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self._probe is None:
            self._finalize_probe(trainer, pl_module)  # collective: every rank calls it
        if self._should_skip(trainer) or self._probe is None:
            return
        self._invert_and_log(trainer, pl_module)

    # ------------------------------------------------------------------ encoder / decoder
    def _known_input_shape(self, pl_module: LightningModule) -> Optional[tuple[int, ...]]:
        if self.input_shape is not None:
            return self.input_shape
        if self._probe is not None:
            return tuple(self._probe.shape[1:])
        example = getattr(pl_module, "example_input_array", None)
        if isinstance(example, Tensor) and example.dim() >= 2:
            return tuple(example.shape[1:])
        return None

    def _resolve_encoder(self, pl_module: LightningModule) -> nn.Module:
        encoder = _resolve("encoder", self.encoder, pl_module)
        if not isinstance(encoder, nn.Module):
            raise ValueError(
                f"InversionCallback: `encoder` must resolve to a torch.nn.Module, got {type(encoder).__name__} "
                f"from {_accessor_name(self.encoder)!r} on {type(pl_module).__name__}."
            )
        return encoder

    def _resolve_decoder(self, pl_module: LightningModule) -> Optional[Callable[[Tensor], Tensor]]:
        if self.decoder is None:
            return None
        decoder = _resolve("decoder", self.decoder, pl_module)
        if not callable(decoder):
            raise ValueError(
                f"InversionCallback: `decoder` must resolve to an nn.Module or a callable, got "
                f"{type(decoder).__name__} from {_accessor_name(self.decoder)!r} on {type(pl_module).__name__}."
            )
        return decoder

    def _check_encoder(
        self, pl_module: LightningModule, input_shape: Optional[tuple[int, ...]], defer_if_shape_unknown: bool
    ) -> None:
        """Resolve encoder and decoder and build the lifted network: a missing attribute or an
        unsupported layer raises ``ValueError`` now. Without a known input shape (and with
        ``defer_if_shape_unknown``) a network that needs one is checked again at the first
        validation batch, whose shape is then known; that batch comes before the first training
        epoch when a sanity check runs."""
        if self._encoder_checked:
            return
        encoder = self._resolve_encoder(pl_module)
        self._resolve_decoder(pl_module)
        with _eval_mode(encoder):
            try:
                LiftedNetwork.from_module(encoder, input_shape)
            except ValueError as err:
                # without a shape only the "input_shape is required" failure can wait for a batch;
                # an unsupported layer or a missing attribute fails now
                if input_shape is None and defer_if_shape_unknown and "input_shape" in str(err):
                    return
                raise ValueError(
                    f"InversionCallback: cannot invert the encoder {_accessor_name(self.encoder)!r} of "
                    f"{type(pl_module).__name__}: {err}"
                ) from err
        self._encoder_checked = True

    # ------------------------------------------------------------------ probe
    def _finalize_probe(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Merge the images each rank captured into one probe, identical on every rank."""
        local = torch.cat(self._pending) if self._pending else None
        self._pending, self._pending_count = [], 0
        if trainer.world_size > 1:
            local = _gather_probe(trainer, pl_module, local, self.num_samples)
        if local is None or local.shape[0] == 0:
            return
        if local.shape[0] < self.num_samples:
            rank_zero_warn(
                f"InversionCallback: asked for num_samples={self.num_samples} probe images but the validation "
                f"data gave only {local.shape[0]}; using those.",
                category=InversionWarning,
            )
        with torch.inference_mode(False):  # a normal tensor, usable outside inference mode
            self._probe = local[: self.num_samples].clone()

    def _noise(self, n: int, code_shape: tuple[int, ...], start: int, stop: int) -> Tensor:
        """Samples ``start:stop`` of the fixed standard-normal code noise ``(levels, n, *code_shape)``
        drawn from ``seed`` on the CPU; indices past ``n`` (padding) repeat the last sample. The
        noise of each probe image is the same at every epoch and for any number of processes."""
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((len(self.noise_levels), n, *code_shape), generator=generator)
        index = torch.arange(start, stop).clamp(max=n - 1)
        return noise[:, index]

    def _alphas(self) -> Tensor:
        """α values to solve, ``(levels, G)`` (float64, CPU)."""
        levels = len(self.noise_levels)
        if isinstance(self.alpha, str):
            return torch.tensor(self.alpha_grid, dtype=torch.float64).expand(levels, -1).clone()
        if isinstance(self.alpha, tuple):
            return torch.tensor(self.alpha, dtype=torch.float64).reshape(levels, 1)
        return torch.full((levels, 1), float(self.alpha), dtype=torch.float64)

    # ------------------------------------------------------------------ inversion
    def _invert_and_log(self, trainer: Trainer, pl_module: LightningModule) -> None:
        probe = self._probe
        assert probe is not None
        n, world, rank = probe.shape[0], trainer.world_size, trainer.global_rank
        per_rank = math.ceil(n / world)
        padded = torch.cat([probe, probe[-1:].expand(per_rank * world - n, *probe.shape[1:])])
        local_x = padded[rank * per_rank : (rank + 1) * per_rank]
        alphas = self._alphas()
        has_decoder = self.decoder is not None

        try:
            encoder = self._resolve_encoder(pl_module)
            decoder = self._resolve_decoder(pl_module)
            device, dtype = _device_dtype(encoder, pl_module)
            with torch.no_grad(), _eval_mode(encoder, decoder):
                out = self._invert_local(encoder, decoder, local_x.to(device, dtype), alphas, rank * per_rank, n)
            out["ok"] = torch.ones(1, device=device, dtype=out["delta"].dtype)
        except Exception as err:  # a solver failure must not stop the training
            warnings.warn(
                f"InversionCallback: the inversion failed at epoch {trainer.current_epoch} "
                f"(rank {rank}): {type(err).__name__}: {err}. Nothing is logged for this epoch; "
                "training continues.",
                InversionWarning,
                stacklevel=2,
            )
            dtype = pl_module.dtype if isinstance(pl_module.dtype, torch.dtype) and pl_module.dtype.is_floating_point else probe.dtype
            out = _placeholder(len(self.noise_levels), per_rank, alphas.shape[1], tuple(probe.shape[1:]), has_decoder)
            out = {k: v.to(pl_module.device, dtype) for k, v in out.items()}

        if world > 1:  # collectives on every rank, never rank-guarded
            # same keys in the same order on every rank, whether its inversion succeeded or not
            out = {k: _gather(trainer, out[k], n, sample_dim=None if k in ("ok", "seconds") else 1) for k in sorted(out)}
        if not bool((out["ok"] > 0).all()):
            failed = [r for r, ok in enumerate(out["ok"].tolist()) if ok <= 0]
            if rank not in failed:  # the failing ranks have warned with their reason
                rank_zero_warn(
                    f"InversionCallback: the inversion failed at epoch {trainer.current_epoch} on rank(s) {failed}; "
                    "nothing is logged for this epoch; training continues.",
                    category=InversionWarning,
                )
            return
        summary = self._summarize(out, alphas, n, trainer.current_epoch)
        self._log(trainer, pl_module, summary, probe, out)

    def _invert_local(
        self,
        encoder: nn.Module,
        decoder: Optional[Callable[[Tensor], Tensor]],
        x: Tensor,
        alphas: Tensor,
        offset: int,
        n: int,
    ) -> dict[str, Tensor]:
        """Everything this rank computes for its share ``x`` (k images) of the probe."""
        k, input_shape = x.shape[0], tuple(x.shape[1:])
        levels, grid = alphas.shape
        net = LiftedNetwork.from_module(encoder, input_shape)  # rebuilt: parameters/BN statistics change
        y = encoder(x)
        code_shape = tuple(y.shape[1:])
        noise = self._noise(n, code_shape, offset, offset + k).to(y.device, y.dtype)
        sigma = torch.tensor(self.noise_levels, device=y.device, dtype=y.dtype).reshape(levels, 1, *[1] * len(code_shape))
        code_activation = net.layers[-1].activation
        y_delta = code_activation.project_data(y.unsqueeze(0) + sigma * noise)  # (levels, k, *code)
        delta = (y_delta - y.unsqueeze(0)).flatten(2).norm(dim=2)  # (levels, k)
        # the noise measured by the data term: B_Ψ_L(y^δ, W_L x_{L-1} + b_L) of the clean input
        pre_activation = net.layers[-1].affine.forward(net.forward_all(x)[-2] if len(net) > 1 else x)
        bregman = code_activation.bregman(
            y_delta.reshape(levels * k, *code_shape),
            pre_activation.unsqueeze(0).expand(levels, *pre_activation.shape).reshape(levels * k, *code_shape),
        ).reshape(levels, k)

        batch = levels * k * grid
        data = y_delta.unsqueeze(2).expand(levels, k, grid, *code_shape).reshape(batch, *code_shape)
        alpha = alphas.to(y.device, y.dtype).reshape(levels, 1, grid).expand(levels, k, grid).reshape(batch)
        _synchronize(y.device)
        start = time.perf_counter()
        result = invert(
            net,
            data,
            alpha=alpha,
            input_shape=input_shape,
            method=self.method,
            max_iter=self.max_iter,
            tol=self.tol,
            noise_level=delta.unsqueeze(2).expand(levels, k, grid).reshape(batch),  # used by "landweber"
            **self.solver_options,
        )
        _synchronize(y.device)
        seconds = time.perf_counter() - start

        x_inv = result.x.reshape(batch, *input_shape)
        truth = x.unsqueeze(0).unsqueeze(2).expand(levels, k, grid, *input_shape).reshape(batch, *input_shape)
        out = {
            "x_inv": x_inv.reshape(levels, k, grid, *input_shape),
            "psnr_inv": self._psnr(x_inv, truth).reshape(levels, k, grid),
            "residual": (net(x_inv) - data).flatten(1).norm(dim=1).reshape(levels, k, grid),
            "iterations": result.iterations.to(y.dtype).reshape(levels, k, grid),
            "delta": delta,
            "bregman_delta": bregman,
            "seconds": torch.tensor([seconds], device=y.device, dtype=y.dtype),
        }
        if decoder is not None:
            decoded = decoder(y_delta.reshape(levels * k, *code_shape))
            if decoded.numel() != levels * k * x[0].numel():
                raise ValueError(
                    f"the decoder maps codes of shape {code_shape} to outputs of shape {tuple(decoded.shape[1:])}, "
                    f"which cannot be compared with inputs of shape {input_shape}"
                )
            decoded = decoded.reshape(levels * k, *input_shape).to(x.dtype)
            out["x_dec"] = decoded.reshape(levels, k, *input_shape)
            out["psnr_dec"] = self._psnr(decoded, x.unsqueeze(0).expand(levels, *x.shape).reshape(levels * k, *input_shape)).reshape(levels, k)
        return {key: value.to(y.dtype) for key, value in out.items()}

    def _psnr(self, preds: Tensor, target: Tensor) -> Tensor:
        """Per-sample PSNR in dB (torchmetrics, ``data_range`` clamps both)."""
        dims = tuple(range(1, preds.dim()))
        return peak_signal_noise_ratio(preds, target, data_range=self.data_range, reduction="none", dim=dims)

    def _summarize(self, out: dict[str, Tensor], alphas: Tensor, n: int, epoch: int) -> dict[str, Any]:
        """Pick α per level and reduce the per-sample results to per-level numbers (CPU floats)."""
        levels = len(self.noise_levels)
        psnr = out["psnr_inv"].double().cpu()
        residual = out["residual"].double().cpu()
        delta = out["delta"].double().cpu()
        finite = torch.isfinite(out["x_inv"].flatten(3)).all(dim=3).cpu()  # (levels, n, G)
        finite &= torch.isfinite(psnr) | (psnr == float("inf"))
        index = select_alpha(self.alpha if isinstance(self.alpha, str) else "fixed", psnr, residual, delta, self.eta)
        rows = torch.arange(levels)
        chosen_finite = finite[rows, :, index]  # (levels, n)
        bad = [f"sigma={s:g}: {int((~chosen_finite[i]).sum())}/{n}" for i, s in enumerate(self.noise_levels) if not chosen_finite[i].all()]
        if bad:
            warnings.warn(
                f"InversionCallback: the inversion returned non-finite values at epoch {epoch} ({', '.join(bad)} "
                "samples); those samples are left out of the logged numbers. Training continues.",
                InversionWarning,
                stacklevel=3,
            )
        summary: dict[str, Any] = {"index": index, "finite": chosen_finite, "levels": []}
        for i, s in enumerate(self.noise_levels):
            ok = chosen_finite[i]
            level: dict[str, Optional[float]] = {
                "sigma": s,
                "delta2": float(delta[i].pow(2).mean()),
                "delta2_bregman": float(out["bregman_delta"][i].double().mean()),
                "alpha": float(alphas[i, index[i]]) if ok.any() else None,
                "psnr_inverted": float(psnr[i, ok, index[i]].mean()) if ok.any() else None,
                "iterations": float(out["iterations"][i, :, index[i]].double().cpu()[ok].mean()) if ok.any() else None,
                "psnr_decoded": None,
            }
            if "psnr_dec" in out:
                dec = out["psnr_dec"][i].double().cpu()
                level["psnr_decoded"] = float(dec[~torch.isnan(dec)].mean()) if (~torch.isnan(dec)).any() else None
            summary["levels"].append(level)
        summary["seconds"] = float(out["seconds"].max())
        return summary

    # ------------------------------------------------------------------ logging
    def _log(
        self, trainer: Trainer, pl_module: LightningModule, summary: dict[str, Any], probe: Tensor, out: dict[str, Tensor]
    ) -> None:
        scalars: dict[str, float] = {}
        for level in summary["levels"]:
            tag = f"sigma_{level['sigma']:g}"
            for name in ("psnr_inverted", "psnr_decoded", "delta2", "delta2_bregman", "alpha", "iterations"):
                if level[name] is not None:
                    scalars[f"inversion/{name}/{tag}"] = level[name]
        scalars["inversion/seconds"] = summary["seconds"]

        tensorboard = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if tensorboard is None:
            self._warn_once(
                "no-tensorboard",
                "InversionCallback: no TensorBoardLogger among the trainer's loggers; the inversion scalars are "
                "logged with `pl_module.log` and the images, the PSNR-vs-sigma figure and the custom-scalars "
                "layout are skipped.",
            )
            for tag, value in scalars.items():  # identical on every rank after the gather
                pl_module.log(tag, value, on_step=False, on_epoch=True, sync_dist=True)
            return
        if not trainer.is_global_zero:
            return
        writer = tensorboard.experiment
        step = trainer.current_epoch
        if not self._layout_written:
            writer.add_custom_scalars(self._layout())
            self._layout_written = True
        for tag, value in scalars.items():
            writer.add_scalar(tag, value, global_step=step)
        if self.log_images:
            self._log_images(writer, step, summary, probe, out)
            writer.add_figure("inversion/psnr_vs_sigma", self._figure(summary), global_step=step, close=True)
        writer.flush()

    def _layout(self) -> dict[str, Any]:
        charts = {
            "PSNR inverted (dB)": ["Multiline", [r"inversion/psnr_inverted/.*"]],
            "PSNR decoded (dB)": ["Multiline", [r"inversion/psnr_decoded/.*"]],
            "PSNR inverted vs decoded (dB)": ["Multiline", [r"inversion/psnr_(inverted|decoded)/.*"]],
            "delta^2 = |y_delta - y|^2": ["Multiline", [r"inversion/delta2/.*"]],
            "delta^2 as B_Psi(y_delta, W x + b)": ["Multiline", [r"inversion/delta2_bregman/.*"]],
            "alpha": ["Multiline", [r"inversion/alpha/.*"]],
            "iterations": ["Multiline", [r"inversion/iterations/.*"]],
        }
        if self.decoder is None:
            del charts["PSNR decoded (dB)"], charts["PSNR inverted vs decoded (dB)"]
        return {"inversion": charts}

    def _log_images(self, writer: Any, step: int, summary: dict[str, Any], probe: Tensor, out: dict[str, Tensor]) -> None:
        from torchvision.utils import make_grid

        shape = tuple(probe.shape[1:])
        if len(shape) == 2:
            to_image: Callable[[Tensor], Tensor] = lambda t: t.unsqueeze(1)  # noqa: E731
        elif len(shape) == 3 and shape[0] in (1, 3):
            to_image = lambda t: t  # noqa: E731
        else:
            self._warn_once(
                "no-images",
                f"InversionCallback: inputs of shape {shape} are not images (C, H, W) with C in (1, 3); "
                "no image grids are logged.",
            )
            return
        lo, hi = self.data_range
        n = probe.shape[0]
        for i, s in enumerate(self.noise_levels):
            rows = [probe.float()]
            if "x_dec" in out:
                rows.append(out["x_dec"][i].float().cpu())
            rows.append(out["x_inv"][i, :, summary["index"][i]].float().cpu())
            tiles = to_image(torch.cat(rows)).nan_to_num(nan=lo)
            grid = make_grid(tiles, nrow=n, padding=1, normalize=True, value_range=(lo, hi), pad_value=1.0)
            writer.add_image(f"inversion/images/sigma_{s:g}", grid, global_step=step)

    def _figure(self, summary: dict[str, Any]) -> Any:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        figure = Figure(figsize=(4.5, 3.2), dpi=100)
        FigureCanvasAgg(figure)
        ax = figure.add_subplot()
        sigma = [lvl["sigma"] for lvl in summary["levels"]]
        nan = float("nan")
        ax.plot(sigma, [nan if v["psnr_inverted"] is None else v["psnr_inverted"] for v in summary["levels"]], "o-", label="inversion")
        if self.decoder is not None:
            ax.plot(sigma, [nan if v["psnr_decoded"] is None else v["psnr_decoded"] for v in summary["levels"]], "s--", label="decoder")
        ax.set_xlabel("noise std σ on the code")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        figure.tight_layout()
        return figure

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message, category=InversionWarning)


# ---------------------------------------------------------------------- α selection
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
        score = torch.nan_to_num(score, nan=-math.inf)
        return score.argmax(dim=1)
    if rule == "discrepancy":
        r = residual.pow(2).sum(dim=1).sqrt()  # (levels, G)
        d = delta.pow(2).sum(dim=1).sqrt()  # (levels,)
        ok = torch.isfinite(r) & (r <= eta * d.unsqueeze(1)) & (d.unsqueeze(1) > 0)
        positions = torch.arange(grid).expand(levels, grid)
        return torch.where(ok, positions, torch.zeros_like(positions)).max(dim=1).values
    raise ValueError(f"select_alpha: `rule` must be 'fixed', 'oracle' or 'discrepancy', got {rule!r}.")


# ---------------------------------------------------------------------- helpers
@contextmanager
def _eval_mode(*modules: Any) -> Iterator[None]:
    """Put the given modules (and their children) in eval mode; restore each one's mode after."""
    saved = [(m, m.training) for module in modules if isinstance(module, nn.Module) for m in module.modules()]
    try:
        for module in modules:
            if isinstance(module, nn.Module):
                module.eval()
        yield
    finally:
        for m, training in saved:
            m.training = training


def _resolve(name: str, spec: Any, pl_module: LightningModule) -> Any:
    if isinstance(spec, str):
        try:
            return operator.attrgetter(spec)(pl_module)
        except AttributeError:
            raise ValueError(
                f"InversionCallback: `{name}={spec!r}` but {type(pl_module).__name__} has no attribute {spec!r}; pass "
                f"`{name}=` the attribute name of the {name} or a callable `pl_module -> {name}`."
            ) from None
    return spec(pl_module)


def _accessor_name(spec: Any) -> Optional[str]:
    if spec is None or isinstance(spec, str):
        return spec
    return getattr(spec, "__qualname__", None) or repr(spec)


def _batch_inputs(batch: Any) -> Tensor:
    """The input images of a validation batch: a tensor, the first item of a tuple/list, or
    ``batch[key]`` for the first of ``"x", "image", "images", "input", "inputs"`` in a mapping."""
    if isinstance(batch, Tensor):
        x = batch
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        x = batch[0]
    elif isinstance(batch, Mapping) and (key := next((k for k in ("x", "image", "images", "input", "inputs") if k in batch), None)):
        x = batch[key]
    else:
        raise ValueError(
            "InversionCallback: cannot find the input images in the validation batch: expected a tensor, a tuple/list "
            "whose first item is a tensor, or a dict with key 'x', 'image', 'images', 'input' or 'inputs'; got "
            f"{type(batch).__name__}."
        )
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"InversionCallback: the validation inputs must be a batched tensor (B, ...), got {x!r:.80}.")
    return x


def _device_dtype(encoder: nn.Module, pl_module: LightningModule) -> tuple[torch.device, torch.dtype]:
    param = next(iter(encoder.parameters()), None)
    if param is not None:
        return param.device, param.dtype if param.dtype.is_floating_point else torch.get_default_dtype()
    return pl_module.device, torch.get_default_dtype()


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _placeholder(levels: int, k: int, grid: int, input_shape: tuple[int, ...], decoder: bool) -> dict[str, Tensor]:
    """NaN results of the right shapes, so a rank whose inversion failed still joins the gathers."""
    nan = float("nan")
    out = {
        "x_inv": torch.full((levels, k, grid, *input_shape), nan),
        "psnr_inv": torch.full((levels, k, grid), nan),
        "residual": torch.full((levels, k, grid), nan),
        "iterations": torch.full((levels, k, grid), nan),
        "delta": torch.full((levels, k), nan),
        "bregman_delta": torch.full((levels, k), nan),
        "seconds": torch.zeros(1),
        "ok": torch.zeros(1),
    }
    if decoder:
        out["x_dec"] = torch.full((levels, k, *input_shape), nan)
        out["psnr_dec"] = torch.full((levels, k), nan)
    return out


def _gather(trainer: Trainer, tensor: Tensor, n: int, sample_dim: Optional[int]) -> Tensor:
    """All-gather over ranks. ``sample_dim``: the per-rank shares along that dim are concatenated
    in rank order and cut to the ``n`` probe images; ``None``: ranks are concatenated along dim 0."""
    gathered = trainer.strategy.all_gather(tensor.contiguous())  # (world, *tensor.shape)
    if sample_dim is None:
        return gathered.reshape(-1, *tensor.shape[1:])
    gathered = gathered.movedim(0, sample_dim)  # (..., world, k, ...)
    shape = list(tensor.shape)
    shape[sample_dim] = -1
    return gathered.reshape(shape).narrow(sample_dim, 0, n)


def _gather_probe(trainer: Trainer, pl_module: LightningModule, local: Optional[Tensor], num_samples: int) -> Optional[Tensor]:
    """Every rank's captured images, interleaved (rank 0's first, rank 1's first, …), on every rank."""
    device = pl_module.device
    header = torch.zeros(9, dtype=torch.long, device=device)  # count, ndim, up to 7 dims
    if local is not None:
        if local.dim() > 7:
            raise ValueError(f"InversionCallback: inputs with more than 6 dims are not supported, got {tuple(local.shape)}.")
        header[0], header[1] = local.shape[0], local.dim()
        header[2 : 2 + local.dim()] = torch.tensor(local.shape, device=device)
    headers = trainer.strategy.all_gather(header).reshape(-1, 9).cpu()
    counts = headers[:, 0]
    if int(counts.max()) == 0:
        return None
    ref = headers[int(counts.argmax())]
    shape = tuple(int(d) for d in ref[2 : 2 + int(ref[1])])
    m = int(counts.max())
    buffer = torch.zeros((m, *shape[1:]), device=device, dtype=local.dtype if local is not None else torch.float32)
    if local is not None:
        buffer[: local.shape[0]] = local.to(device)
    gathered = trainer.strategy.all_gather(buffer).reshape(-1, m, *shape[1:]).cpu()  # (world, m, ...)
    valid = torch.arange(m).unsqueeze(0) < counts.unsqueeze(1)  # (world, m)
    images = gathered.transpose(0, 1).reshape(-1, *shape[1:])[valid.t().reshape(-1)]
    with torch.inference_mode(False):
        return images[:num_samples].clone()


# ---------------------------------------------------------------------- validation
def _validate_noise_levels(noise_levels: Any) -> tuple[float, ...]:
    if isinstance(noise_levels, (str, bytes)) or not isinstance(noise_levels, Sequence):
        raise ValueError(
            f"InversionCallback: `noise_levels` must be a non-empty sequence of floats >= 0, got {noise_levels!r}."
        )
    levels = tuple(noise_levels)
    if not levels:
        raise ValueError("InversionCallback: `noise_levels` must be a non-empty sequence of floats >= 0, got an empty one.")
    for s in levels:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0:
            raise ValueError(
                f"InversionCallback: every noise level must be a finite float >= 0, got {s!r} in noise_levels={levels!r}."
            )
    names = [f"{float(s):g}" for s in levels]
    if len(set(names)) != len(names):
        raise ValueError(f"InversionCallback: `noise_levels` must be distinct (they name the logged tags), got {levels!r}.")
    return tuple(float(s) for s in levels)


def _validate_alpha(alpha: Any, levels: int) -> Union[float, tuple[float, ...], str]:
    if isinstance(alpha, str):
        if alpha not in ALPHA_RULES:
            raise ValueError(
                f"InversionCallback: `alpha` must be a float > 0, one float > 0 per noise level, or one of "
                f"{ALPHA_RULES}; got {alpha!r}."
            )
        return alpha
    if isinstance(alpha, Sequence):
        values = tuple(alpha)
        if len(values) != levels:
            raise ValueError(
                f"InversionCallback: `alpha` given as a sequence needs one value per noise level ({levels}), got "
                f"{len(values)}: {values!r}."
            )
        return tuple(_validate_float("alpha", a, minimum=0.0, strict=True) for a in values)
    return _validate_float("alpha", alpha, minimum=0.0, strict=True)


def _validate_alpha_grid(grid: Any) -> tuple[float, ...]:
    if grid is None:
        return DEFAULT_ALPHA_GRID
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence) or len(grid) == 0:
        raise ValueError(f"InversionCallback: `alpha_grid` must be a non-empty sequence of floats > 0, got {grid!r}.")
    values = sorted({_validate_float("alpha_grid", a, minimum=0.0, strict=True) for a in grid})
    return tuple(values)


def _validate_float(name: str, value: Any, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"InversionCallback: `{name}` must be a finite float, got {value!r}.")
    if value < minimum or (strict and value == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"InversionCallback: `{name}` must be {relation} {minimum:g}, got {value!r}.")
    return float(value)


def _validate_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"InversionCallback: `{name}` must be an int >= {minimum}, got {value!r}.")
    return value


def _validate_accessor(name: str, value: Any, allow_none: bool) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, str) and value:
        return value
    if callable(value) and not isinstance(value, nn.Module):
        return value
    also = ", or None" if allow_none else ""
    raise ValueError(
        f"InversionCallback: `{name}` must be an attribute name (str) of the LightningModule or a callable "
        f"`pl_module -> {name}`{also}; got {value!r:.80}."
    )


def _validate_shape(shape: Any) -> Optional[tuple[int, ...]]:
    if shape is None:
        return None
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) == 0:
        raise ValueError(f"InversionCallback: `input_shape` must be None or a sequence of ints > 0, got {shape!r}.")
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"InversionCallback: `input_shape` must be None or a sequence of ints > 0, got {shape!r}.")
    return tuple(shape)


def _validate_data_range(data_range: Any) -> tuple[float, float]:
    if isinstance(data_range, (str, bytes)) or not isinstance(data_range, Sequence) or len(data_range) != 2:
        raise ValueError(f"InversionCallback: `data_range` must be a pair (lo, hi) with lo < hi, got {data_range!r}.")
    lo = _validate_float("data_range[0]", data_range[0], minimum=-math.inf, strict=False)
    hi = _validate_float("data_range[1]", data_range[1], minimum=-math.inf, strict=False)
    if not lo < hi:
        raise ValueError(f"InversionCallback: `data_range` must be a pair (lo, hi) with lo < hi, got {data_range!r}.")
    return lo, hi


def _validate_solver_options(options: Any, method: str) -> dict[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options):
        raise ValueError(f"InversionCallback: `solver_options` must be None or a dict with str keys, got {options!r}.")
    reserved = sorted(set(options) & set(_RESERVED_OPTIONS))
    if reserved:
        raise ValueError(
            f"InversionCallback: `solver_options` must not set {reserved}: use the callback's own arguments "
            f"({', '.join(_RESERVED_OPTIONS[2:-1])}; noise_level is the measured delta of each noisy code)."
        )
    allowed = {"regularizer", "bounds", "check_every", *OPTIONS[method]}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"InversionCallback: `solver_options` has option(s) {unknown} that invert(method={method!r}) does not "
            f"accept; valid: {sorted(allowed)}."
        )
    return dict(options)
