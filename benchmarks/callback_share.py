"""The InversionCallback's share of a training run as configured (experiments/configs/conv.yaml:
an inversion at every epoch end, ``time_share`` 0.2, warm starts), and what its last inversion
reaches against a cold solve of the same probe at the final weights with no time budget.

- ``callback_share``: seconds inside the callback's hooks / seconds of the whole ``fit``;
- ``details.callback_share.last_epoch``: PSNR per noise level of the last (warm, budgeted)
  inversion and of a cold ``max_iter`` solve of the same noisy codes, and the decoder's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from timing import ROOT

CONFIG = ROOT / "experiments" / "configs" / "conv.yaml"


def bench_callback_share(epochs: int | None, work: Path) -> dict[str, Any]:
    """Train the conv config for ``epochs`` (None: the config's) on the CPU, timing the callback."""
    import lbinv.lightning.callback.callback as callbacks
    from train import train  # experiments/train.py (timing puts experiments/ on sys.path)

    hook_seconds: list[float] = []
    original = callbacks.InversionCallback.on_validation_epoch_end

    def timed(self, trainer, pl_module):
        start = time.perf_counter()
        original(self, trainer, pl_module)
        if not trainer.sanity_checking:
            hook_seconds.append(time.perf_counter() - start)

    args = ["--config", str(CONFIG), "--trainer.default_root_dir", str(work), "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu"]
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs)]
    callbacks.InversionCallback.on_validation_epoch_end = timed
    try:
        start = time.perf_counter()
        trainer = train(args)
        fit_seconds = time.perf_counter() - start
    finally:
        callbacks.InversionCallback.on_validation_epoch_end = original
    callback = next(c for c in trainer.callbacks if isinstance(c, callbacks.InversionCallback))
    return {
        "run": f"{CONFIG.name}, {trainer.current_epoch} epochs, time_share {callback.time_share}, "
               f"warm_start {callback.warm_start}",
        "fit_seconds": fit_seconds,
        "callback_seconds": sum(hook_seconds),
        "callback_share": sum(hook_seconds) / fit_seconds,
        "inversions": len(hook_seconds),
        "last_epoch": _last_epoch_against_cold(trainer, callback),
    }


def _last_epoch_against_cold(trainer, callback) -> dict[str, Any]:
    """PSNRs of the last inversion (warm, budgeted: the callback's last solution) and of a cold
    solve of the same probe, noise and α at the final weights with only ``max_iter`` to stop it."""
    from functools import partial

    from lbinv import invert
    from lbinv.metrics import psnr
    from lbinv.probe import invert_probe

    module = trainer.lightning_module.eval()
    probe, levels = callback.probe, len(callback.noise_levels)
    solve = partial(invert, method=callback.method, max_iter=callback.max_iter, tol=callback.tol, **callback._solver_options())
    with torch.no_grad():
        cold = invert_probe(module.encoder, module.decoder, probe, noise_levels=callback.noise_levels,
                            alphas=callback._alphas(), seed=callback.seed, offset=0, n=probe.shape[0],
                            data_range=callback.data_range, solve=solve)
    if callback._solution is None:  # the last inversion failed or was not finite
        return {"error": "no solution from the last inversion"}
    last = callback._solution.reshape(levels, *probe.shape)  # one α, no reference solves (three layers)
    truth = probe.unsqueeze(0).expand_as(last)
    warm = psnr(last.flatten(0, 1), truth.flatten(0, 1), callback.data_range).reshape(levels, -1)
    return {
        "sigma": [f"{s:g}" for s in callback.noise_levels],
        "psnr_last_inversion": _mean(warm),
        "psnr_cold_max_iter": _mean(cold["psnr_inv"]),
        "psnr_decoded": _mean(cold["psnr_dec"]),
        "cold_seconds": float(cold["seconds"]),
    }


def _mean(psnr: torch.Tensor) -> list[float]:
    return [round(float(v), 3) for v in psnr.reshape(psnr.shape[0], -1).mean(dim=1)]
