"""One batched inversion of the probe on every rank (a *round*), with the callback's settings: the
encoder and decoder of the module at the inversion's precision, this rank's share of the probe at
the given α columns (:func:`lbinv.probe.invert_probe`), a solve that ends at a deadline, and the
gather of every rank's results. A failure on any rank warns and returns None: training goes on."""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch import Tensor

from lbinv.lightning.callback.access import at_precision, inversion_target, resolve_decoder, resolve_encoder
from lbinv.lightning.callback.ddp import gather, placeholder
from lbinv.lightning.callback.messages import InversionWarning, warn_on_rank_zero
from lbinv.lightning.callback.monitor import Monitor
from lbinv.lightning.callback.probe_images import ProbeImages
from lbinv.lightning.callback.schedule import MIN_BUDGET_SECONDS
from lbinv.probe import invert_probe
from lbinv.solvers import invert
from lbinv.tracing import Output, eval_mode

if TYPE_CHECKING:  # either namespace's classes
    from lightning.pytorch import LightningModule, Trainer

__all__ = ["ProbeInverter"]


class ProbeInverter:
    """The callback's settings of :func:`lbinv.invert` and of the probe, and :meth:`round`."""

    def __init__(
        self, encoder: Any, decoder: Any, encoder_output: Output, noise_levels: Sequence[float], seed: int, method: str,
        max_iter: int, tol: float, eta: float, solver_options: dict[str, Any], start: str,
    ) -> None:
        self.encoder, self.decoder, self.encoder_output = encoder, decoder, encoder_output
        self.noise_levels, self.seed, self.start = tuple(noise_levels), seed, start
        self.method, self.max_iter, self.tol, self.eta, self.solver_options = method, max_iter, tol, eta, solver_options

    def round(
        self, trainer: Trainer, pl_module: LightningModule, probe_images: ProbeImages, monitor: Monitor, epoch: int,
        alphas: Tensor, counts: Tensor, data_range: tuple[float, float], deadline: Optional[float], window: list[float],
        final: bool,
    ) -> Optional[dict[str, Tensor]]:
        """This rank's share of the probe at the α columns ``alphas`` / ``counts`` (from the monitor's
        warm starts, else its ``start``), gathered on every rank; its solve ends after the first sweep
        past ``deadline`` and records when it started and ended in ``window``. None (warned) when it
        failed on some rank."""
        probe = probe_images.images
        assert probe is not None
        n, world, rank = probe.shape[0], trainer.world_size, trainer.global_rank
        local_x, per_rank = probe_images.share(world, rank)
        images = torch.arange(rank * per_rank, (rank + 1) * per_rank).clamp(max=n - 1)
        device, dtype = pl_module.device, torch.get_default_dtype()  # if the encoder cannot even be resolved
        try:
            encoder = resolve_encoder(self.encoder, pl_module, self.encoder_output, tuple(probe.shape[1:]))
            decoder = resolve_decoder(self.decoder, pl_module)
            device, dtype = inversion_target(encoder, pl_module)
            with torch.no_grad(), eval_mode(encoder, decoder):
                encoder, decoder = at_precision(encoder, decoder, dtype)
                x = local_x.to(device, dtype)
                if monitor.cost.per_code_sweep is None:
                    monitor.cost.guess(_forward_seconds(encoder, x))
                out = invert_probe(
                    encoder, decoder, x, noise_levels=self.noise_levels, alphas=alphas, seed=self.seed,
                    offset=rank * per_rank, n=n, data_range=data_range, solve=self._solve(data_range, deadline, window),
                    subgradient=self.subgradient_rule(data_range), counts=counts, x_init=monitor.starts(alphas, images, final),
                    start=self.start if decoder is not None else "zeros",
                    regularizer=self.options(data_range).get("regularizer", "tv"),
                )
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
        out = {k: v.to(device, dtype) for k, v in out.items()}  # the same on every rank, failed or not
        if world > 1:  # collectives on every rank, never rank-guarded
            # same keys in the same order on every rank, whether its inversion succeeded or not
            out = {k: gather(trainer, out[k], n, sample_dim=None if k in ("ok", "seconds") else 1) for k in sorted(out)}
        if not bool((out["ok"] > 0).all()):
            failed = [r for r, ok in enumerate(out["ok"].tolist()) if ok <= 0]
            if rank not in failed:  # the failing ranks have warned with their reason
                warn_on_rank_zero(
                    trainer,
                    f"InversionCallback: the inversion failed at epoch {epoch} on rank(s) {failed}; "
                    "nothing is logged for this epoch; training continues.",
                )
            return None
        return out

    def _solve(self, data_range: tuple[float, float], deadline: Optional[float], window: list[float]) -> Callable[..., Any]:
        """:func:`lbinv.invert` with the callback's settings, its ``max_seconds`` what is left until
        ``deadline`` when it starts; records when it started and ended in ``window``."""

        def solve(*args: Any, **kwargs: Any) -> Any:
            window[0] = time.perf_counter()
            max_seconds = None if deadline is None else max(deadline - window[0], MIN_BUDGET_SECONDS)
            result = invert(*args, method=self.method, max_iter=self.max_iter, tol=self.tol, max_seconds=max_seconds,
                            **self.options(data_range), **kwargs)
            window[1] = time.perf_counter()
            return result

        return solve

    def options(self, data_range: tuple[float, float]) -> dict[str, Any]:
        """The options of :func:`lbinv.invert` beyond the callback's own arguments: the box
        ``data_range`` unless the user's options set ``bounds``, the user's, and η for Landweber's
        discrepancy principle."""
        landweber = {"eta": self.eta} if self.method == "landweber" else {}
        return {"bounds": data_range, **self.solver_options, **landweber}

    def subgradient_rule(self, data_range: tuple[float, float]) -> Optional[str]:
        """How ``inversion/bregman_sym`` gets its TV subgradients (used for one-layer encoders only):
        the optimality condition, or the dual variable when a box makes the optimality condition carry
        a normal-cone term; ``None`` (no tag) for methods without a TV dual."""
        options = self.options(data_range)
        if self.method not in ("lifted", "sequential") or options.get("regularizer", "tv") is None:
            return None
        return "dual" if options["bounds"] is not None else "optimality"


def _forward_seconds(encoder: Callable[[Tensor], Any], x: Tensor) -> float:
    """Seconds of one forward pass of ``encoder`` per image of ``x`` (for the first cost guess)."""
    begin = time.perf_counter()
    encoder(x)
    return (time.perf_counter() - begin) / max(x.shape[0], 1)
