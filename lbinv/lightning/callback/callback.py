"""Watch, epoch by epoch, what a network's code still holds: lifted-Bregman inversion in TensorBoard.

:class:`InversionCallback` keeps a fixed probe of validation images. At the end of a validation
epoch it encodes them, adds Gaussian noise of several standard deviations to the code, clips the
noisy code into the domain of the code activation, and inverts *all* noise levels × images
(× α columns) in one batched :func:`lbinv.invert` call, starting from the decoder's output or the
last inversion's solution, within a share of the run's time. It logs the PSNR of the inversion and
of the decoder applied to the same noisy code, per noise level, to every logger of the trainer (the
images and the figure to TensorBoard) at ``step = trainer.current_epoch`` (the final model's
inversion at the end of a fit that trained past its last validation: the next epoch's number), so
the x axis of the ``inversion/*`` charts counts epochs. After the last epoch one more inversion runs
to ``tol`` (the converged final point) and prints a table.

This module holds the hooks and decides what runs when (:meth:`InversionCallback._plan`); the
package's other modules (listed in its ``__init__``) do the rest. None imports
:mod:`lbinv.lightning.models`: the callback works with any LightningModule.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional, Union

import torch
from torch import Tensor, nn
from typing_extensions import override

import lbinv.lightning.callback.tensorboard as tensorboard
from lbinv._checks import check_bool, check_int, check_interval, check_number, check_shape
from lbinv.lightning.callback.access import ModuleAccess, batch_inputs, has_validation_step
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
    check_start,
    check_warm_start,
)
from lbinv.lightning.callback.clock import Clock
from lbinv.lightning.callback.inverter import Inversion, Plan, ProbeInverter
from lbinv.lightning.callback.messages import InversionWarning, Notices, say, warn_on_rank_zero
from lbinv.lightning.callback.monitor import Monitor
from lbinv.lightning.callback.namespaces import CALLBACK_BASES
from lbinv.lightning.callback.probe_images import ProbeImages
from lbinv.lightning.callback.schedule import MIN_SWEEPS, FitRecord, Progress, last_epoch

if TYPE_CHECKING:  # either namespace's classes; only for type checkers
    from lightning.pytorch import LightningModule, Trainer

__all__ = ["InversionCallback", "InversionWarning"]

EncoderSpec = Union[str, Callable[["LightningModule"], Union[nn.Module, Callable[[Tensor], Any]]]]
DecoderSpec = Optional[Union[str, Callable[["LightningModule"], Callable[[Tensor], Tensor]]]]


class InversionCallback(*CALLBACK_BASES):  # type: ignore[misc]
    r"""Invert the validation codes of an encoder with the lifted Bregman method and log the results.

    Parameters
    ----------
    noise_levels
        Standard deviations σ of the Gaussian noise added to the code; distinct, finite, ≥ 0.
    alpha
        Regularisation parameter α of :func:`lbinv.invert`:

        - ``"auto"`` (default): per noise level the α with the best mean PSNR against the probe's
          true images (the paper's choice for Fig. 7), searched on a log grid (three values a decade,
          1e−6 to 1, starting at 1e−3): each inversion also solves the two grid neighbours of the
          current α on a quarter of the probe and moves to the better one, one step at most, so α
          follows the encoder as it trains; the final inversion solves the same columns to ``tol``, in
          rounds while α moves (at most
          :data:`~lbinv.lightning.callback.monitor.FINAL_ROUNDS`);
        - a float > 0 used at every noise level;
        - a sequence with one α > 0 per noise level;
        - ``"discrepancy"``: Morozov's principle per noise level — the largest α of ``alpha_grid``
          whose data residual over the probe, :math:`\|N(x_\alpha) - y^\delta\|`, stays within
          :math:`\eta\,\delta` with :math:`\delta = \|y^\delta - y\|` (norms over the stacked probe);
          the smallest α when no grid value qualifies or σ = 0;
        - ``"oracle"``: per noise level the α of ``alpha_grid`` with the best mean PSNR against the
          true images, the whole grid solved at every inversion (10× the work of one α).

        The α columns are solved in the same batched call as the noise levels and images.
        ``method="landweber"`` ignores α.
    num_samples
        Number of validation images in the probe (taken from the first validation batches of the
        first validation epoch that is not a sanity check, and kept in the checkpoint).
    every_n_epochs
        During ``fit``, invert after the validation of every ``every_n_epochs``-th epoch
        (``(epoch + 1) % every_n_epochs == 0``) and of the last one by ``max_epochs`` or
        ``max_steps``; a fit that stops otherwise (early stopping, ``max_steps`` within an epoch,
        an epoch off the interval) gets one more inversion of its final model at its end.
        ``trainer.validate`` always inverts (as a final inversion).
    method, tol
        Passed to :func:`lbinv.invert`.
    max_iter
        Most iterations (sweeps) of one inversion's solve (of each round of the final one).
    max_seconds
        Wall-clock budget of each inversion's solve during fit (:func:`lbinv.invert`'s
        ``max_seconds``): ``inversion/converged_fraction`` tells how many samples had converged by
        then. None: no such cap.
    time_share
        During ``fit``, the share of the run the callback may take in all (its hooks: the probe,
        the solves, the images and the figure), whatever the machine: an inversion may take
        ``(time_share · elapsed − spent) / (1 − time_share)`` seconds, where ``elapsed`` is the fit's
        wall time so far and ``spent`` the callback's, and its solve stops after the sweep that
        ends past that. When that would not buy :data:`~lbinv.lightning.callback.schedule.MIN_SWEEPS`
        sweeps of every noise level (by the cost of the last inversion), fewer levels are inverted,
        in rotation, and when not even one, the epoch is skipped (the time is banked); the callback
        says so once. The final inversion is outside the share. None: no such budget.
    warm_start
        Start each inversion from the previous ones' solutions (per image, the solution at the
        nearest α of the same noise level; the encoder has trained since), so that short solves add
        up over the epochs. The logged numbers then depend on the inversions before. Kept in
        checkpoints. None (default): True for the methods that take a starting point (all but
        "sequential").
    start
        Where an inversion starts that has no warm start: ``"decoder"``, the decoder's output for
        the noisy code clamped into ``data_range``, the hidden variables by a forward pass of it (so
        the first curves show the decoder's image being refined); or ``"zeros"``. None (default):
        ``"decoder"`` when there is a decoder and the method takes a starting point, else ``"zeros"``.
    final_seconds
        The final inversion (after the last epoch, at the end of a fit that stopped otherwise, and in
        ``trainer.validate``) runs to ``tol`` with the α search (at most ``max_iter`` sweeps per
        round, a third of the time left, the last third kept to finish the columns at the α found),
        outside ``time_share``, for at most this many seconds; its numbers are logged like
        every inversion's, printed as a table (σ, δ², α, PSNR inverted and decoded, converged
        fraction) and logged as text (``inversion/final``). 0: no final inversion (the last epoch
        gets a budgeted one). None: no time cap.
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
        clamped into it), the image grids are drawn with this fixed range, it is the box ``bounds``
        on the inversion unless ``solver_options`` sets one, and the decoder start is clamped into
        it. None (default): the probe's own (min, max). Validation images outside a given range
        give a warning when fit/validate starts.
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

    Notes
    -----
    Logged to every logger of the trainer (scalars; ``{s:g}`` is the noise level), and to TensorBoard
    (images, figure, layout, the final table):

    - scalars ``inversion/psnr_inverted/sigma_{s}``, ``inversion/psnr_decoded/sigma_{s}``,
      ``inversion/delta2/sigma_{s}`` (mean ‖y^δ − y‖² over the probe),
      ``inversion/delta2_bregman/sigma_{s}`` (mean :math:`B_{\Psi_L}(y^\delta, W_L x_{L-1} + b_L)` of the clean
      input: the noise as the data term measures it), ``inversion/alpha/sigma_{s}``
      (α used), ``inversion/iterations/sigma_{s}`` (mean iterations), ``inversion/seconds``
      (wall time of the solver calls, slowest rank; the final inversion's rounds summed): the numbers
      of :func:`lbinv.probe.level_numbers`, also kept on the callback (:attr:`last_summary`);
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
        alpha: Union[float, Sequence[float], Literal["auto", "discrepancy", "oracle"]] = "auto",
        num_samples: int = 16,
        every_n_epochs: int = 1,
        method: str = "lifted",
        max_iter: int = 1500,
        tol: float = 1e-5,
        encoder: EncoderSpec = "encoder",
        decoder: DecoderSpec = "decoder",
        encoder_output: Optional[Union[int, str]] = None,
        input_shape: Optional[Sequence[int]] = None,
        data_range: Optional[tuple[float, float]] = None,
        seed: int = 0,
        log_images: bool = True,
        solver_options: Optional[dict[str, Any]] = None,
        alpha_grid: Optional[Sequence[float]] = None,
        eta: float = 1.0,
        max_seconds: Optional[float] = None,
        time_share: Optional[float] = 0.2,
        warm_start: Optional[bool] = None,
        start: Optional[Literal["decoder", "zeros"]] = None,
        final_seconds: Optional[float] = 60.0,
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
            if self.method == "landweber" and self.alpha == "auto":
                self.alpha = 1.0  # ignored: Landweber stops by the discrepancy principle
            self.max_iter = check_int("max_iter", max_iter)
            self.tol = check_number("tol", tol, minimum=0.0)
            self.max_seconds = None if max_seconds is None else check_number("max_seconds", max_seconds, minimum=0.0, strict=True)
            self.time_share = None if time_share is None else check_share(time_share)
            self.final_seconds = None if final_seconds is None else check_number("final_seconds", final_seconds, minimum=0.0)
            self.encoder = check_accessor("encoder", encoder, allow_none=False)
            self.encoder_output = check_output("encoder_output", encoder_output)
            self.decoder = check_accessor("decoder", decoder, allow_none=True)
            self.input_shape = None if input_shape is None else check_shape("input_shape", input_shape)
            self.data_range: Optional[tuple[float, float]] = check_interval("data_range", data_range, finite=True)
            self.seed = check_int("seed", seed, minimum=None)
            self.log_images = check_bool("log_images", log_images)
            self.solver_options = check_solver_options(solver_options, method)
            self.warm_start = check_warm_start(warm_start, method)
            self.start = check_start(start, method, self.decoder)

        self._access = ModuleAccess(
            self.encoder,
            self.decoder,
            self.encoder_output,
            self.input_shape,
            self.data_range,
            self.solver_options if self.method == "lifted" else None,
        )
        self._probe_images = ProbeImages(self.num_samples)  # kept in checkpoints, with the monitor's state
        self._monitor = Monitor(len(self.noise_levels), self.alpha, self.alpha_grid, self.warm_start)
        self._inverter = ProbeInverter(
            self._access, self.noise_levels, self.seed, self.method, self.max_iter, self.tol, self.eta, self.solver_options, self.start
        )
        self._clock = Clock(self.time_share, self.max_seconds, self.final_seconds)
        self._progress = Progress()
        self._notices = Notices()
        self._publisher = tensorboard.Publisher(self.noise_levels, self._access.has_decoder, self.log_images, self._notices)
        self._fit = FitRecord()
        #: The per-level numbers of the last inversion logged (:class:`lbinv.probe.ProbeSummary`'s ``levels``).
        self.last_summary: Optional[list[dict[str, Any]]] = None
        #: The same for the last final inversion (the converged point a user quotes).
        self.final_summary: Optional[list[dict[str, Any]]] = None

    # ------------------------------------------------------------------ Lightning state
    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(encoder=self._access.encoder_name, num_samples=self.num_samples)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**self._probe_images.state_dict(), "monitor": self._monitor.state_dict()}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._probe_images.load_state_dict(state_dict)
        self._monitor.load_state_dict(state_dict.get("monitor") or {})

    @property
    def probe(self) -> Optional[Tensor]:
        """The fixed probe images ``(n, *input_shape)`` (CPU), or ``None`` before they are captured."""
        return self._probe_images.images

    @property
    def alphas(self) -> Optional[list[float]]:
        """The current α per noise level of ``alpha="auto"`` (None for the other rules)."""
        search = self._monitor.search
        return None if search is None else search.alphas()[:, 0].tolist()

    # ------------------------------------------------------------------ decisions
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

    def _final(self, trainer: Trainer) -> bool:
        """Whether an inversion here is the final one: ``trainer.validate``, or the last epoch of a fit."""
        return self._clock.has_final and (trainer.state.fn == "validate" or last_epoch(trainer))

    def _plan(self, trainer: Trainer, begin: float, final: bool) -> Plan:
        """What an inversion that begins at ``begin`` does: a final one every level until ``final_seconds``;
        a budgeted one during fit the levels ``time_share`` affords (at least :data:`MIN_SWEEPS` sweeps
        of each, by the last inversion's cost; in rotation; none: skipped) until the allowance, less
        the time its last one took after its solve, or ``max_seconds``. Every rank decides alike."""
        levels = len(self.noise_levels)
        every = torch.ones(levels, dtype=torch.bool)
        if final:
            return Plan(every, self._clock.final_deadline(begin), final=True)
        if not self._clock.shares(trainer.state.fn == "fit"):
            return Plan(every, self._clock.deadline(begin), final=False)
        allowance, cost = self._clock.allowance(), self._monitor.cost
        codes = int(self._monitor.columns(self._probe_images.share(trainer.world_size, 0)[1], every)[1][0].sum())
        count = cost.levels(allowance, codes, levels)  # codes of one level
        if trainer.world_size > 1:  # every rank must decide alike
            count = int(trainer.strategy.reduce(torch.tensor(float(count)), reduce_op="min"))
        return Plan(self._monitor.rotation(count), self._clock.deadline(begin, allowance - cost.after_solve), False, allowance)

    # ------------------------------------------------------------------ hooks
    @override
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._access.new_run()
        self._probe_images.forget_pending()
        self._fit = FitRecord()

    @override
    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._clock.start()
        self._access.check_encoder(pl_module, self.probe)
        if not has_validation_step(pl_module) or trainer.limit_val_batches == 0:
            why = "has no validation_step" if not has_validation_step(pl_module) else "runs no validation (limit_val_batches=0)"
            self._notices.warn(
                trainer,
                "no-validation",
                f"InversionCallback: {type(pl_module).__name__} {why}, and the callback inverts at the end of validation "
                "epochs: nothing will be inverted. Add a validation_step and a val_dataloader, or call trainer.validate().",
            )

    @override
    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """The final model gets the final inversion unless the last one was it
        (:meth:`~lbinv.lightning.callback.schedule.FitRecord.final_model_epoch`)."""
        epoch = None if self.probe is None else self._fit.final_model_epoch(trainer, self._clock.has_final)
        if epoch is not None:
            self._invert_and_log(trainer, pl_module, epoch, final=self._clock.has_final)
        if self._fit.inverted_at is None and "no-validation" not in self._notices.given:
            self._notices.warn(
                trainer,
                "nothing-inverted",
                "InversionCallback: no validation epoch ended during this fit, so nothing was inverted (does the "
                "trainer validate, e.g. check_val_every_n_epoch <= max_epochs, a val_dataloader?).",
            )

    @override
    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._access.check_encoder(pl_module, self.probe)

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
        if not self._access.batch_checked or (not trainer.sanity_checking and self.probe is None):
            with self._clock.charging(trainer.state.fn == "fit"):
                x = batch_inputs(batch)
                self._access.check_batch(trainer, pl_module, x, self._notices)
                if not trainer.sanity_checking:
                    self._probe_images.capture(x)

    @override
    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.probe is None:
            message = self._probe_images.finalize(trainer, pl_module)  # collective: every rank calls it
            if message is not None:
                warn_on_rank_zero(trainer, message)
        if trainer.state.fn == "fit":
            self._fit.validation(trainer)
        if self._should_skip(trainer) or self.probe is None:
            return
        self._invert_and_log(trainer, pl_module, trainer.current_epoch, final=self._final(trainer))

    # ------------------------------------------------------------------ inversion
    def _data_range(self) -> tuple[float, float]:
        """``data_range``, or the probe's (min, max) where it is None."""
        return self.data_range or self._probe_images.value_range() or (0.0, 1.0)

    def _invert_and_log(self, trainer: Trainer, pl_module: LightningModule, epoch: int, final: bool) -> None:
        """Invert the probe (this rank's share), gather, summarise and log at step ``epoch``, as
        :meth:`_plan` decides: during fit charged to ``time_share``; ``final``: the converged final
        inversion, in rounds while ``"auto"``'s search moves."""
        begin = time.perf_counter()
        with self._clock.charging(trainer.state.fn == "fit" and not final):
            plan = self._plan(trainer, begin, final)
            levels = int(plan.levels.sum())
            if levels < len(self.noise_levels):
                self._say_reduced(trainer, levels, plan.allowance)
            if levels == 0:
                return
            if trainer.state.fn == "fit":
                self._fit.inversion(trainer, final)
            assert self.probe is not None
            self._progress.starting(
                trainer,
                epoch,
                f"{self.probe.shape[0]} images × {levels} noise level{'s' * (levels > 1)}" + (" to tol (final)" if final else ""),
                always=final,
            )
            inversion = self._inverter.invert(trainer, pl_module, self._probe_images, self._monitor, epoch, plan, self._data_range(), begin)
            if inversion is None:
                return
            converged, solved = int(inversion.out.converged.nan_to_num(0.0).sum()), int(inversion.out.solved.sum())
            self._progress.finished(trainer, epoch, time.perf_counter() - begin, converged, solved, always=final)
            inversion.warn_nonfinite(self.noise_levels, epoch)
            self._log(trainer, inversion, epoch, final)
            if not final:  # what a budgeted inversion costs (its logging included), for the next one's plan
                inversion.learn_cost(self._monitor, begin)

    def _say_reduced(self, trainer: Trainer, count: int, allowance: float) -> None:
        """Once per kind: the time share affords fewer levels than all, or none this epoch."""
        what = (
            "skips the inversion of this epoch (and of each epoch until the share affords one level)"
            if count == 0
            else f"inverts {count} of {len(self.noise_levels)} noise levels per epoch, in rotation"
        )
        self._notices.say(
            trainer,
            "skip" if count == 0 else "rotation",
            f"InversionCallback (epoch {trainer.current_epoch}): {MIN_SWEEPS} sweeps of the probe cost about "
            f"{MIN_SWEEPS * (self._monitor.cost.per_code_sweep or 0.0):.2g} s per code, and time_share="
            f"{self.time_share} leaves {max(allowance, 0.0):.2g} s now: it {what}. A smaller num_samples, "
            "fewer noise levels or a larger time_share invert more.",
        )

    # ------------------------------------------------------------------ logging
    def _log(self, trainer: Trainer, inversion: Inversion, epoch: int, final: bool) -> None:
        """Keep the summary on the callback (:attr:`last_summary`, :attr:`final_summary`; a final
        inversion also prints its table) and log it at step ``epoch`` (:class:`~.tensorboard.Publisher`)."""
        self.last_summary = inversion.summary.levels
        if final:
            self.final_summary = inversion.summary.levels
            table = tensorboard.final_table(inversion.summary.levels, self._access.has_decoder)
            say(trainer, f"InversionCallback: the final inversion (epoch {epoch}):\n{table}")
        assert self.probe is not None
        self._publisher.publish(trainer, epoch, inversion.summary, inversion.out, self.probe, self._data_range(), final)
