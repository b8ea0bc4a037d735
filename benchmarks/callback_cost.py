"""The cost of InversionCallback in a conv training run, and what its settings buy."""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import torch

from timing import sync

from lbinv import invert


def bench_callback(device: torch.device, epochs: int, quick: bool, work: Path) -> dict[str, Any]:
    """A conv training run (experiments/configs/conv.yaml settings on the bundled digits) with the
    default InversionCallback; timings of its hooks and of the solver inside them."""
    from lightning.pytorch import Callback, Trainer
    from lightning.pytorch.loggers import TensorBoardLogger

    import lbinv.lightning.callback.callback as callbacks
    import lbinv.lightning.callback.inverter as inverter
    from lbinv.probe import invert_probe
    from lbinv.lightning.data import MNISTDataModule
    from lbinv.lightning.models import AutoencoderModule

    solve_seconds: list[float] = []
    real_invert = inverter.invert

    def timed_invert(*args, **kwargs):
        start = time.perf_counter()
        result = real_invert(*args, **kwargs)
        sync(device)
        solve_seconds.append(time.perf_counter() - start)
        return result

    class TimedInversionCallback(callbacks.InversionCallback):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.hook_seconds: list[float] = []
            self._batch_hooks = 0.0

        def on_validation_batch_end(self, *args, **kwargs):
            start = time.perf_counter()
            super().on_validation_batch_end(*args, **kwargs)
            self._batch_hooks += time.perf_counter() - start

        def on_validation_epoch_end(self, trainer, pl_module):
            start = time.perf_counter()
            super().on_validation_epoch_end(trainer, pl_module)
            sync(device)
            if not trainer.sanity_checking:
                self.hook_seconds.append(time.perf_counter() - start + self._batch_hooks)
            self._batch_hooks = 0.0

    class EpochClock(Callback):
        def __init__(self):
            self.train, self.snapshots = [], []

        def on_train_epoch_start(self, trainer, pl_module):
            self._start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.train.append(time.perf_counter() - self._start)

        def on_validation_epoch_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.snapshots.append(copy.deepcopy(pl_module.net.encoder).eval())

    torch.manual_seed(0)
    module = AutoencoderModule(net="conv", code_dim=300, code_activation="relu", optimizer="sgd", lr=0.3, momentum=0.9)
    data = MNISTDataModule(dataset="mnist-5k", batch_size=32)
    # the settings this section has always measured (the defaults before issue #24): 5 noise levels x 16
    # images, alpha 1e-2, from zeros, each inversion to tol or 1,500 sweeps, no time share, no final inversion
    inversion = TimedInversionCallback(alpha=1e-2, time_share=None, warm_start=False, start="zeros", final_seconds=0,
                                       data_range=(0.0, 1.0))
    clock = EpochClock()
    trainer = Trainer(
        max_epochs=epochs,
        limit_train_batches=140,
        limit_val_batches=16,
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=1,
        logger=TensorBoardLogger(work / "logs", name="bench"),
        callbacks=[inversion, clock],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=50,
    )
    inverter.invert = timed_invert
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            trainer.fit(module, datamodule=data)
            fit_seconds = time.perf_counter() - start
    finally:
        inverter.invert = real_invert
    hooks, solves = inversion.hook_seconds, solve_seconds
    share = [(h - s) / h for h, s in zip(hooks, solves)]
    result: dict[str, Any] = {
        "run": f"conv AE, SGD lr 0.3 momentum 0.9, mnist-5k, 140 train / 16 val batches of 32, {epochs} epochs; "
               "InversionCallback defaults (5 noise levels x 16 images, alpha 1e-2, max_iter 1500, tol 1e-5)",
        "callback_seconds_per_epoch": hooks,
        "solve_seconds_per_epoch": solves,
        "overhead_share_per_epoch": share,
        "overhead_share": statistics.median(share),
        "train_epoch_seconds": clock.train,
        "fit_seconds": fit_seconds,
        "callback_share_of_fit": sum(hooks) / fit_seconds,
    }
    mean_callback = statistics.mean(hooks)
    result["every_n_epochs"] = {  # derived: the callback runs on one epoch in n
        str(n): {"callback_seconds_per_epoch": mean_callback / n,
                 "share_of_epoch": (mean_callback / n) / (statistics.mean(clock.train) + mean_callback / n)}
        for n in (1, 2, 5, 10)
    }

    # num_samples and warm starts: the callback's own pipeline, on the encoders of the last two epochs
    sizes = (4, 16) if quick else (4, 16, 64)
    x_probe = torch.stack([data.val_set[i][0] for i in range(max(sizes))]).to(device)
    decoder = module.net.decoder.to(device).eval()
    levels = inversion.noise_levels
    alphas = torch.full((len(levels), 1), 1e-2, dtype=torch.float64)

    def probe(encoder, n, solve):
        with torch.no_grad():
            return invert_probe(encoder.to(device), decoder, x_probe[:n], noise_levels=levels, alphas=alphas, seed=0,
                                offset=0, n=n, data_range=(0.0, 1.0), solve=solve)

    base = partial(invert, max_iter=1500, tol=1e-5)
    per_size = {}
    for n in sizes:
        out = probe(clock.snapshots[-1], n, base)
        per_size[str(n)] = {"batch": n * len(levels), "solve_seconds": float(out.seconds),
                            "mean_iterations": float(out.iterations.mean()),
                            "seconds_per_image": float(out.seconds) / (n * len(levels))}
    result["num_samples"] = per_size
    if len(clock.snapshots) >= 2:
        # the probe's noisy codes at the last epoch, solved from zero and from the previous epoch's
        # solution; objective histories tell how many sweeps the warm start needs to match the cold
        # start's final objective
        n, runs = 16, {}

        def recording(name, **extra):
            def solve(net, data, **kwargs):
                runs[name] = invert(net, data, max_iter=1500, tol=1e-5, record_history=True, **extra, **kwargs)
                return runs[name]
            return solve

        previous = probe(clock.snapshots[-2], n, base)
        x_prev = previous.x_inv.reshape(-1, *x_probe.shape[1:])
        cold = probe(clock.snapshots[-1], n, recording("cold"))
        warm = probe(clock.snapshots[-1], n, recording("warm", x_init=x_prev))
        target = runs["cold"].objective.cpu()  # (B,) after the cold run's sweeps
        hist = runs["warm"].history
        reached = hist["objective"].cpu() <= target.unsqueeze(0)  # (checks, B)
        first = torch.where(reached.any(0), reached.float().argmax(0), torch.full_like(target, -1).long())
        sweeps = torch.tensor(hist["iteration"], dtype=torch.float64)[first.clamp_min(0)]
        sweeps[first < 0] = math.inf  # not within the budget
        median = float(sweeps.sort().values[len(sweeps) // 2])
        result["warm_start"] = {
            "epochs": [len(clock.snapshots) - 2, len(clock.snapshots) - 1],
            "cold": {"seconds": float(cold.seconds), "mean_iterations": float(cold.iterations.mean()),
                     "mean_psnr": float(cold.psnr_inv.mean()), "mean_objective": float(target.mean())},
            "warm": {"seconds": float(warm.seconds), "mean_iterations": float(warm.iterations.mean()),
                     "mean_psnr": float(warm.psnr_inv.mean()), "mean_objective": float(runs["warm"].objective.mean())},
            "warm_sweeps_to_cold_objective_median": median if math.isfinite(median) else None,
            "share_of_samples_reaching_it": float((first >= 0).double().mean()),
            "sweep_saving_median": float(runs["cold"].iterations.double().median()) / median,
            "note": "x_init = the previous epoch's solution of the same noisy codes (InversionCallback does not "
                    "warm-start yet); sweeps counted at checks every 10 sweeps",
        }
    return result
