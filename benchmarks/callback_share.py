"""The InversionCallback's share of a training run as configured (experiments/configs/conv.yaml: the
callback's defaults, an inversion at every epoch end within ``time_share`` 0.2, then the final
inversion to ``tol``).

- ``callback_share``: seconds inside the callback's hooks during the epochs / seconds of the fit
  before the final inversion (what ``time_share`` bounds); ``share_with_final``: all its seconds /
  the whole ``fit``'s; the final inversion's seconds and its table (PSNR per noise level of the
  inversion and of the decoder, α, converged fraction).
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
    final = hook_seconds[-1] if callback.final_summary is not None else 0.0  # the last epoch's hook holds it
    return {
        "run": f"{CONFIG.name}, {trainer.current_epoch} epochs, the callback's defaults (time_share {callback.time_share})",
        "fit_seconds": fit_seconds,
        "callback_seconds": sum(hook_seconds),
        "callback_share": (sum(hook_seconds) - final) / (fit_seconds - final),
        "share_with_final": sum(hook_seconds) / fit_seconds,
        "final_seconds": final,
        "inversions": len(hook_seconds),
        "final": callback.final_summary,
    }
