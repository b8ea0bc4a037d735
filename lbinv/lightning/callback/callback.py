"""Watch, epoch by epoch, what a network's code still holds: lifted-Bregman inversion in TensorBoard.

:class:`InversionCallback` keeps a fixed probe of validation images. At the end of a validation
epoch it encodes them, adds Gaussian noise of several standard deviations to the code, clips the
noisy code into the domain of the code activation, and inverts *all* noise levels × images
(× α-grid values) in one batched :func:`lbinv.invert` call. It logs the PSNR of the inversion and
of the decoder applied to the same noisy code, per noise level, to TensorBoard.

Steps: every TensorBoard record this callback writes (scalars, images, figure) uses
``global_step = trainer.current_epoch`` (the final model's inversion at the end of a fit that
trained past its last validation: the next epoch's number), so the x axis of the ``inversion/*``
charts counts epochs. Without a TensorBoard logger the scalars go through ``pl_module.log``
instead, and Lightning then uses its own step (``trainer.global_step``).

This module holds the hooks and decides what runs when and where; its helpers are ``arguments``
(its constructor's arguments), ``access`` (encoder, decoder and inputs of any LightningModule),
``probe_images`` (the probe), ``schedule`` (the last epoch, time budgets, console lines),
:mod:`lbinv.probe` (the numbers, α rule included; plain PyTorch), ``ddp`` (collectives),
``tensorboard`` (tags, images, figure) and ``namespaces``. None imports
:mod:`lbinv.lightning.models`: the callback works with any LightningModule.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Union

import torch
from torch import Tensor, nn
from typing_extensions import override

import lbinv.lightning.callback.tensorboard as tensorboard
from lbinv._checks import check_bool, check_int, check_interval, check_number, check_shape
from lbinv.lightning.callback.access import (
    accessor_name,
    at_precision,
    batch_inputs,
    check_encoder,
    dry_run,
    has_validation_step,
    known_input_shape,
    range_warning,
    inversion_target,
    resolve_decoder,
    resolve_encoder,
)
from lbinv.lightning.callback.arguments import (
    callback_arguments,
    check_accessor,
    check_alpha,
    check_alpha_grid,
    check_method,
    check_noise_levels,
    check_output,
    check_share,
    check_solver_options,
    check_warm_start,
)
from lbinv.lightning.callback.ddp import gather, placeholder
from lbinv.lightning.callback.namespaces import CALLBACK_BASES, TENSORBOARD_LOGGERS
from lbinv.lightning.callback.probe_images import ProbeImages
from lbinv.lightning.callback.schedule import Progress, last_epoch, solver_budget
from lbinv.probe import invert_probe, summarize
from lbinv.solvers import invert
from lbinv.tracing import eval_mode

if TYPE_CHECKING:  # either namespace's classes; only for type checkers
    from lightning.pytorch import LightningModule, Trainer

__all__ = ["InversionCallback", "InversionWarning"]

EncoderSpec = Union[str, Callable[["LightningModule"], Union[nn.Module, Callable[[Tensor], Any]]]]
DecoderSpec = Optional[Union[str, Callable[["LightningModule"], Callable[[Tensor], Tensor]]]]


class InversionWarning(UserWarning):
    """A problem of the inversion callback that does not stop the training (solver failure, NaN,
    missing TensorBoard logger, a probe smaller than asked)."""


class InversionCallback(*CALLBACK_BASES):  # type: ignore[misc]
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
        (``(epoch + 1) % every_n_epochs == 0``) and of the last one by ``max_epochs`` or
        ``max_steps``; a fit that stops otherwise (early stopping, ``max_steps`` within an epoch,
        an epoch off the interval) gets one more inversion of its final model at its end.
        ``trainer.validate`` always inverts.
    method, max_iter, tol
        Passed to :func:`lbinv.invert`.
    max_seconds
        Wall-clock budget of each inversion (:func:`lbinv.invert`'s ``max_seconds``): the solve
        stops at its first check after it, and ``inversion/converged_fraction`` tells how many
        samples had converged by then. None: up to ``max_iter`` iterations.
    time_share
        During ``fit``, budget each inversion by the training time since the last one, so that the
        callback takes about this share of the run whatever the machine: the solver may take
        ``time_share / (1 − time_share)`` times those training seconds less the previous
        inversion's time outside the solver (encoding, images, figure), at least a millisecond (one
        check) and at most ``max_seconds``. 0.2: about a fifth of the run (plus up to
        ``check_every`` iterations per solve). Best with ``warm_start``; with "sequential" the
        budget is shared by its stages. None: no such budget.
    warm_start
        Start each inversion from the previous one's solution (same probe, noise and α; the
        encoder has trained since), so that a small ``max_seconds`` at every epoch adds up over
        the epochs instead of restarting from zero. The logged numbers then depend on the
        inversions before. Methods that take ``x_init`` only (not "sequential"). The solution is not
        kept in checkpoints: after a resume the first inversion starts cold.
    encoder
        Attribute name (dotted paths allowed, e.g. ``"model.encoder"``, or a method:
        ``"model.encode"``) of the encoder on the LightningModule, or a callable
        ``pl_module -> nn.Module`` (or a method of one). It must be supported by
        :meth:`lbinv.LiftedNetwork.from_module`: an ``nn.Sequential``, or a module whose
        ``forward()`` traces into a chain of supported layers (checked when ``fit``/``validate`` starts).
    decoder
        Attribute name or callable ``pl_module -> decoder`` (an ``nn.Module`` or any callable
        mapping codes to images), or ``None`` for no decoder comparison.
    encoder_output
        The index or key of the code when the encoder returns a tuple, list or dict, e.g. ``0``
        for a VAE's ``encode`` returning ``(mu, logvar)``. None: the encoder returns the code.
    input_shape
        Shape of one input without the batch dimension, e.g. ``(1, 28, 28)``. By default taken
        from ``pl_module.example_input_array`` or from the validation batches.
    data_range
        ``(lo, hi)`` value range of the images: PSNR uses it (:func:`lbinv.metrics.psnr`, values
        clamped into it), the image grids are drawn with this fixed range, and it is the box
        ``bounds`` on the inversion unless ``solver_options`` sets one. None: the probe's own
        (min, max). Validation images outside it give a warning when fit/validate starts.
    seed
        Seed of the code noise; the same noise is used at every epoch.
    log_images
        Log the image grids and the PSNR-vs-σ figure (needs a :class:`TensorBoardLogger`).
    solver_options
        Further keyword arguments of :func:`lbinv.invert` (``regularizer``, ``bounds``,
        ``check_every``, solver-specific options). ``bounds`` defaults to ``data_range``;
        ``bounds=None`` inverts without a box.
    alpha_grid
        α values tried by ``"discrepancy"`` and ``"oracle"`` (default :data:`DEFAULT_ALPHA_GRID`).
    eta
        Safety factor η of the discrepancy principle: of the ``"discrepancy"`` α rule (η > 0, usually
        ≥ 1), and of ``method="landweber"``'s stopping rule (η ≥ 1).

    Logged (TensorBoard tags; ``{s:g}`` is the noise level):

    - scalars ``inversion/psnr_inverted/sigma_{s}``, ``inversion/psnr_decoded/sigma_{s}``,
      ``inversion/delta2/sigma_{s}`` (mean ‖y^δ − y‖² over the probe),
      ``inversion/delta2_bregman/sigma_{s}`` (mean :math:`B_{\Psi_L}(y^\delta, W_L x_{L-1} + b_L)` of the clean
      input: the noise as the data term measures it), ``inversion/alpha/sigma_{s}``
      (α used), ``inversion/iterations/sigma_{s}`` (mean iterations), ``inversion/seconds``
      (wall time of the solver call, slowest rank);
    - for a one-layer encoder (e.g. the dense autoencoder) and method "lifted"/"sequential" with TV:
      ``inversion/bregman_sym/sigma_{s}``, the mean symmetric Bregman distance of TV (the paper's error
      measure, MATH.md §10) between the inversion x_α(y^δ) and the noise-free inversion x_α(y) at the same
      α, each with its subgradient from the optimality condition (from the TV dual variable when
      ``bounds`` are set). x_α(y) satisfies the source condition of Theorem 2 by construction; it is
      solved in the same batch (one extra sample per probe image and distinct α). 0 at σ = 0;
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
        encoder_output: Optional[Union[int, str]] = None,
        input_shape: Optional[Sequence[int]] = None,
        data_range: Optional[tuple[float, float]] = (0.0, 1.0),
        seed: int = 0,
        log_images: bool = True,
        solver_options: Optional[dict[str, Any]] = None,
        alpha_grid: Optional[Sequence[float]] = None,
        eta: float = 1.0,
        max_seconds: Optional[float] = None,
        time_share: Optional[float] = None,
        warm_start: bool = False,
    ) -> None:
        super().__init__()
        with callback_arguments():  # every ValueError names the callback, the argument, what came
            self.noise_levels = check_noise_levels(noise_levels)
            self.alpha_grid = check_alpha_grid(alpha_grid)
            self.alpha: Union[float, tuple[float, ...], str] = check_alpha(alpha, len(self.noise_levels))
            self.num_samples = check_int("num_samples", num_samples)
            self.every_n_epochs = check_int("every_n_epochs", every_n_epochs)
            self.eta = check_number("eta", eta, minimum=0.0, strict=True)
            self.method = check_method(method, self.alpha, self.eta)
            self.max_iter = check_int("max_iter", max_iter)
            self.tol = check_number("tol", tol, minimum=0.0)
            self.max_seconds = None if max_seconds is None else check_number("max_seconds", max_seconds, minimum=0.0, strict=True)
            self.time_share = None if time_share is None else check_share(time_share)
            self.encoder = check_accessor("encoder", encoder, allow_none=False)
            self.encoder_output = check_output("encoder_output", encoder_output)
            self.decoder = check_accessor("decoder", decoder, allow_none=True)
            self.input_shape = None if input_shape is None else check_shape("input_shape", input_shape)
            self.data_range: Optional[tuple[float, float]] = check_interval("data_range", data_range, finite=True)
            self.seed = check_int("seed", seed, minimum=None)
            self.log_images = check_bool("log_images", log_images)
            self.solver_options = check_solver_options(solver_options, method)
            self.warm_start = check_warm_start(warm_start, method, self.solver_options)

        self._probe_images = ProbeImages(self.num_samples)  # the state kept in checkpoints
        self._encoder_checked = False
        self._batch_checked = False  # the dry run on the first validation batch of a run
        self._warned: set[str] = set()
        self._layout_written = False
        self._progress = Progress()
        self._solution: Optional[Tensor] = None  # this rank's last solution, the next warm start
        self._train_clock: Optional[float] = None  # perf_counter() when training last (re)started
        self._train_seconds = 0.0  # training time since the last inversion
        self._overhead_seconds = 0.0  # the last inversion's time outside this rank's solver
        self._validated: Optional[tuple[int, int]] = None  # (epoch, global_step) of the last fit validation
        self._inverted_at: Optional[int] = None  # global_step of the last inversion in this fit (None: none yet)

    # ------------------------------------------------------------------ Lightning state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(encoder=accessor_name(self.encoder), num_samples=self.num_samples)

    @override
    def state_dict(self) -> dict[str, Any]:
        return self._probe_images.state_dict()

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._probe_images.load_state_dict(state_dict)

    @property
    def probe(self) -> Optional[Tensor]:
        """The fixed probe images ``(n, *input_shape)`` (CPU), or ``None`` before they are captured."""
        return self._probe_images.images

    # ------------------------------------------------------------------ skipping
    def _should_skip(self, trainer: Trainer) -> bool:
        """True when no inversion runs at this validation epoch end (after the sanity check, which
        never inverts): a stage other than fit/validate, or during fit an epoch off the
        ``every_n_epochs`` interval that is not the last one."""
        fn = trainer.state.fn  # a TrainerFn of either namespace, equal to its string value
        if fn == "validate":
            return False
        if fn != "fit":
            return True
        return (trainer.current_epoch + 1) % self.every_n_epochs != 0 and not last_epoch(trainer)

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._encoder_checked = self._batch_checked = False  # the module may differ from a previous run's
        self._probe_images.forget_pending()
        self._validated = self._inverted_at = None
        self._train_clock, self._train_seconds = None, 0.0

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._check_encoder(pl_module, self._known_input_shape(pl_module), defer_if_shape_unknown=True)
        if not has_validation_step(pl_module) or trainer.limit_val_batches == 0:
            why = "has no validation_step" if not has_validation_step(pl_module) else "runs no validation (limit_val_batches=0)"
            self._warn_once(
                trainer,
                "no-validation",
                f"InversionCallback: {type(pl_module).__name__} {why}, and the callback inverts at the end of validation "
                "epochs: nothing will be inverted. Add a validation_step and a val_dataloader, or call trainer.validate().",
            )

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The final model is inverted once more if it trained since the last inversion (a fit that
        stopped early, at ``max_steps`` or off the interval). Every rank decides alike: the decision
        reads only what all ranks share (the probe, the global step)."""
        if self.probe is not None and self._validated is not None and self._inverted_at != trainer.global_step:
            epoch, step = self._validated
            self._invert_and_log(trainer, pl_module, epoch if step == trainer.global_step else epoch + 1, final=True)
        if self._inverted_at is None and "no-validation" not in self._warned:
            self._warn_once(
                trainer,
                "nothing-inverted",
                "InversionCallback: no validation epoch ended during this fit, so nothing was inverted (does the "
                "trainer validate, e.g. check_val_every_n_epoch <= max_epochs, a val_dataloader?).",
            )

    @override
    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._train_clock = time.perf_counter()

    @override
    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit":  # training goes on from here (also within an epoch: val_check_interval)
            self._train_clock = time.perf_counter()

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "fit" and self._train_clock is not None:
            self._train_seconds += time.perf_counter() - self._train_clock
            self._train_clock = None
        if trainer.state.fn == "validate":
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
        if dataloader_idx != 0 or trainer.state.fn not in ("fit", "validate"):
            return
        if not self._batch_checked or (not trainer.sanity_checking and self.probe is None):
            x = batch_inputs(batch)
            # fails here, before the first training epoch when a sanity check runs
            self._check_encoder(pl_module, self.input_shape or tuple(x.shape[1:]), defer_if_shape_unknown=False)
            if not self._batch_checked:
                dry_run(pl_module, self.encoder, self.decoder, x[:1], self.encoder_output)
                self._check_range(trainer, x)
                self._batch_checked = True
            if not trainer.sanity_checking:
                self._probe_images.capture(x)

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.probe is None:
            message = self._probe_images.finalize(trainer, pl_module)  # collective: every rank calls it
            if message is not None:
                _warn_on_rank_zero(trainer, message)
        if trainer.state.fn == "fit":
            self._validated = (trainer.current_epoch, trainer.global_step)
        if self._should_skip(trainer) or self.probe is None:
            return
        self._invert_and_log(trainer, pl_module, trainer.current_epoch)

    # ------------------------------------------------------------------ encoder / decoder
    def _known_input_shape(self, pl_module: LightningModule) -> Optional[tuple[int, ...]]:
        return known_input_shape(self.input_shape, self.probe, pl_module)

    def _check_encoder(
        self, pl_module: LightningModule, input_shape: Optional[tuple[int, ...]], defer_if_shape_unknown: bool
    ) -> None:
        """See :func:`lbinv.lightning.callback.access.check_encoder`; passes once per run."""
        if not self._encoder_checked:
            options = self.solver_options if self.method == "lifted" else None
            self._encoder_checked = check_encoder(
                pl_module, self.encoder, self.decoder, input_shape, defer_if_shape_unknown, self.encoder_output, options
            )

    def _check_range(self, trainer: Trainer, x: Tensor) -> None:
        """Warn once when validation images leave ``data_range`` (PSNR would clamp them)."""
        message = range_warning(self.data_range, x)
        if message is not None:
            self._warn_once(trainer, "range", message)

    def _data_range(self) -> tuple[float, float]:
        """``data_range``, or the probe's (min, max) where it is None."""
        return self.data_range or self._probe_images.value_range() or (0.0, 1.0)

    def _alphas(self) -> Tensor:
        """α values to solve, ``(levels, G)`` (float64, CPU)."""
        levels = len(self.noise_levels)
        if isinstance(self.alpha, str):
            return torch.tensor(self.alpha_grid, dtype=torch.float64).expand(levels, -1).clone()
        if isinstance(self.alpha, tuple):
            return torch.tensor(self.alpha, dtype=torch.float64).reshape(levels, 1)
        return torch.full((levels, 1), float(self.alpha), dtype=torch.float64)

    # ------------------------------------------------------------------ inversion
    def _invert_and_log(self, trainer: Trainer, pl_module: LightningModule, epoch: int, final: bool = False) -> None:
        """Invert the probe at every noise level (this rank's share), gather, summarise and log at
        step ``epoch``; ``final``: at the end of fit, where ``pl_module.log`` is not allowed."""
        probe = self.probe
        assert probe is not None
        n, world, rank = probe.shape[0], trainer.world_size, trainer.global_rank
        local_x, per_rank = self._probe_images.share(world, rank)
        alphas = self._alphas()

        levels, grid = len(self.noise_levels), alphas.shape[1]
        per_alpha = f" × {grid} α" if grid > 1 else ""
        self._progress.starting(trainer, epoch, f"{levels * n * grid} noisy codes ({n} images × {levels} noise levels{per_alpha})")
        if trainer.state.fn == "fit":
            self._inverted_at = trainer.global_step
        start = time.perf_counter()
        device, dtype = pl_module.device, torch.get_default_dtype()  # if the encoder cannot even be resolved
        try:
            encoder = resolve_encoder(self.encoder, pl_module, self.encoder_output)
            decoder = resolve_decoder(self.decoder, pl_module)
            device, dtype = inversion_target(encoder, pl_module)
            with torch.no_grad(), eval_mode(encoder, decoder):
                encoder, decoder = at_precision(encoder, decoder, dtype)
                out = invert_probe(
                    encoder,
                    decoder,
                    local_x.to(device, dtype),
                    noise_levels=self.noise_levels,
                    alphas=alphas,
                    seed=self.seed,
                    offset=rank * per_rank,
                    n=n,
                    data_range=self._data_range(),
                    solve=partial(
                        invert, method=self.method, max_iter=self.max_iter, tol=self.tol, max_seconds=self._budget(trainer),
                        **self._solver_options(),
                    ),
                    subgradient=self._subgradient_rule(),
                    x_init=self._solution,
                )
            local_seconds = float(out["seconds"])
            solution = out.pop("solution")
            self._solution = solution if self.warm_start and bool(torch.isfinite(solution).all()) else None
            out["ok"] = torch.ones(1)
        except Exception as err:  # a solver failure must not stop the training
            warnings.warn(
                f"InversionCallback: the inversion failed at epoch {epoch} "
                f"(rank {rank}): {type(err).__name__}: {err}. Nothing is logged for this epoch; "
                "training continues.",
                InversionWarning,
                stacklevel=2,
            )
            out = placeholder(len(self.noise_levels), per_rank, alphas.shape[1], tuple(probe.shape[1:]), self.decoder is not None)
            self._solution, local_seconds = None, 0.0
        out = {k: v.to(device, dtype) for k, v in out.items()}  # the same on every rank, failed or not

        if world > 1:  # collectives on every rank, never rank-guarded
            # same keys in the same order on every rank, whether its inversion succeeded or not
            out = {k: gather(trainer, out[k], n, sample_dim=None if k in ("ok", "seconds") else 1) for k in sorted(out)}
        if not bool((out["ok"] > 0).all()):
            failed = [r for r, ok in enumerate(out["ok"].tolist()) if ok <= 0]
            if rank not in failed:  # the failing ranks have warned with their reason
                _warn_on_rank_zero(
                    trainer,
                    f"InversionCallback: the inversion failed at epoch {epoch} on rank(s) {failed}; "
                    "nothing is logged for this epoch; training continues.",
                )
            return
        rule = self.alpha if isinstance(self.alpha, str) else "fixed"
        summary = summarize(out, alphas, self.noise_levels, rule, self.eta)
        converged = int(out["converged"].nan_to_num(0.0).sum())
        self._progress.finished(trainer, epoch, time.perf_counter() - start, converged, levels * n * grid)
        kept = summary["finite"]  # (levels, n)
        bad = [f"sigma={s:g}: {int((~kept[i]).sum())}/{n}" for i, s in enumerate(self.noise_levels) if not kept[i].all()]
        if bad:
            warnings.warn(
                f"InversionCallback: the inversion returned non-finite values at epoch {epoch} "
                f"({', '.join(bad)} samples); those samples are left out of the logged numbers. Training continues.",
                InversionWarning,
                stacklevel=2,
            )
        self._log(trainer, pl_module, summary, probe, out, epoch, final)
        self._overhead_seconds = max(0.0, time.perf_counter() - start - local_seconds)
        self._train_seconds = 0.0

    def _budget(self, trainer: Trainer) -> Optional[float]:
        """The solver's budget (:func:`~lbinv.lightning.callback.schedule.solver_budget`); the share
        of the training time only during fit."""
        train_seconds = self._train_seconds if trainer.state.fn == "fit" and self._train_seconds > 0 else None
        return solver_budget(self.max_seconds, self.time_share, train_seconds, self._overhead_seconds)

    def _solver_options(self) -> dict[str, Any]:
        """The options of :func:`lbinv.invert` beyond the callback's own arguments: the box
        ``data_range`` unless the user's options set ``bounds``, the user's, and η for Landweber's
        discrepancy principle."""
        landweber = {"eta": self.eta} if self.method == "landweber" else {}
        return {"bounds": self._data_range(), **self.solver_options, **landweber}

    def _subgradient_rule(self) -> Optional[str]:
        """How ``inversion/bregman_sym`` gets its TV subgradients (used for one-layer encoders only):
        the optimality condition, or the dual variable when a box makes the optimality condition carry
        a normal-cone term; ``None`` (no tag) for methods without a TV dual."""
        options = self._solver_options()
        if self.method not in ("lifted", "sequential") or options.get("regularizer", "tv") is None:
            return None
        return "dual" if options["bounds"] is not None else "optimality"

    # ------------------------------------------------------------------ logging
    def _log(
        self, trainer: Trainer, pl_module: LightningModule, summary: dict[str, Any], probe: Tensor,
        out: dict[str, Tensor], epoch: int, final: bool,
    ) -> None:
        """Write the summary at step ``epoch`` to the TensorBoard logger on rank zero, or the scalars
        through ``pl_module.log`` without one (not at the end of fit, where Lightning forbids it);
        what is written is named in :mod:`lbinv.lightning.callback.tensorboard`."""
        scalars = tensorboard.scalars(summary)
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TENSORBOARD_LOGGERS)), None)
        if logger is None and final:
            self._warn_once(
                trainer,
                "final-not-logged",
                "InversionCallback: the inversion of the final model is not logged: without a TensorBoardLogger the "
                "scalars go through `pl_module.log`, which Lightning does not allow at the end of fit.",
            )
            return
        if logger is None:
            self._warn_once(
                trainer,
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
        images = tensorboard.write(
            logger.experiment, epoch, summary, probe, out, self.noise_levels, self._data_range(),
            has_decoder=self.decoder is not None, log_images=self.log_images, layout=not self._layout_written,
        )
        self._layout_written = True
        if self.log_images and not images:
            self._warn_once(
                trainer,
                "no-images",
                f"InversionCallback: inputs of shape {tuple(probe.shape[1:])} are not images (C, H, W) with C in "
                "(1, 3); no image grids are logged.",
            )

    def _warn_once(self, trainer: Trainer, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            _warn_on_rank_zero(trainer, message)


def _warn_on_rank_zero(trainer: Trainer, message: str) -> None:
    """An :class:`InversionWarning` from the global rank zero only (the others would repeat it)."""
    if trainer.is_global_zero:
        warnings.warn(message, InversionWarning, stacklevel=3)
