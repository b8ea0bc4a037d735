"""Reproduce the paper's MNIST experiments (sec. 5.1.2 and 5.2, Figs. 4–7; MATH.md §9).

For the dense (one-layer encoder) and the conv (three-layer encoder) autoencoder: encode probe
images, add Gaussian noise of standard deviation σ to the code (σ from 0.33 down to 0), clip the
noisy code into the ReLU's domain, and recover the image from it

- with the lifted Bregman formulation (``method="lifted"``: the paper's PDHG for the dense encoder,
  ``solver="pdhg"``, coordinate descent for the conv one), isotropic TV, x in the box [0, 1] (the images' range);
- with the baselines on the same noisy codes: ``method="sequential"`` (layer by layer; skipped for the
  one-layer dense encoder, where it *is* the lifted problem) and ``method="gradient"`` (Adam through
  the encoder on ``½‖N(x) − y^δ‖² + α TV_ε(x)``, same bounds);
- and with the decoder (the autoencoder's own answer).

Each (model, method) is one batched :func:`lbinv.invert` call over noise levels × α grid × images;
α is then picked per noise level by the "oracle" rule (best mean PSNR, needs the truth) and by the
discrepancy principle (largest α with ‖N(x_α) − y^δ‖ ≤ η‖y^δ − y‖, no truth needed), separately for
the training and the validation images.

    python experiments/noise_sweep.py --quick                      # trains both nets (a few epochs)
    python experiments/noise_sweep.py --ckpt-dense D.ckpt --ckpt-conv C.ckpt --out results/ns

Writes ``noise_sweep.csv`` (one row per model, split, method, α rule and noise level), the figures
``noise_sweep_{model}_images.png`` (Figs. 4/5), ``noise_sweep_{model}_levels.png`` (Fig. 6) and
``noise_sweep_psnr.png`` (Fig. 7), and ``noise_sweep.json`` (settings, data, training, timings).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import structural_similarity_index_measure

from lbinv import LiftedNetwork, invert
from lbinv.probe import PER_CALL, ProbeResult, invert_probe, summarize
from lbinv.checkpoints import load_checkpoint
from lbinv.lightning.data import MNISTDataModule
from lbinv.lightning.models import AutoencoderModule

MODELS = ("dense", "conv")
INPUT_SHAPE = (1, 28, 28)
#: Images are in [0, 1]: the inversions are constrained to this box and PSNR/SSIM use this range.
BOUNDS = (0.0, 1.0)
#: Code noise levels (std of the Gaussian added to the code), from the paper's 0.33 down to 0.
SIGMAS = (0.33, 0.25, 0.18, 0.12, 0.08, 0.04, 0.02, 0.0)
ALPHA_RULES = ("oracle", "discrepancy")
COLUMNS = (
    "model", "split", "sigma", "delta2", "delta2_bregman", "alpha", "psnr_decoded", "psnr_inverted",
    "alpha_rule", "method", "ssim_inverted", "ssim_decoded", "iterations", "seconds", "note",
)
SEQUENTIAL_NOTE = "one-layer encoder: method='sequential' is the lifted problem itself, not run again"


@dataclass
class SweepConfig:
    """What the sweep solves: noise levels, α grid, probe images and solver budget."""

    sigmas: Sequence[float] = SIGMAS
    alphas: Sequence[float] = ()  # ascending; empty: log_grid(10)
    n_train: int = 5
    n_val: int = 5
    max_iter: int = 1500
    tol: float = 1e-5
    check_every: int = 10
    eta: float = 1.0
    seed: int = 0
    methods: Sequence[str] = ("lifted", "sequential", "gradient")
    gradient_options: dict[str, Any] = field(default_factory=lambda: {"lr": 1e-2, "tv_smoothing": 1e-2})

    def __post_init__(self) -> None:
        if not self.alphas:
            self.alphas = log_grid(10)
        if sorted(self.alphas) != list(self.alphas) or min(self.alphas) <= 0:
            raise ValueError(f"alphas: expected an ascending grid of positive values, got {self.alphas}")
        if self.n_train < 1 or self.n_val < 1:
            raise ValueError(f"n_train, n_val: expected >= 1, got {self.n_train}, {self.n_val}")


def log_grid(count: int, lo: float = 1e-4, hi: float = 1e-1) -> tuple[float, ...]:
    """``count`` values log-spaced in [lo, hi], rounded to 3 significant digits."""
    if count == 1:
        return (lo,)
    step = math.log10(hi / lo) / (count - 1)
    return tuple(float(f"{lo * 10 ** (step * i):.3g}") for i in range(count))


# ---------------------------------------------------------------------------------------------
# Models and data
# ---------------------------------------------------------------------------------------------
def load_model(path: str | Path) -> AutoencoderModule:
    """An :class:`AutoencoderModule` from a Lightning checkpoint of one of lbinv's nets, loaded safely
    (:func:`lbinv.checkpoints.load_checkpoint`: weights and plain data only, no pickled code)."""
    checkpoint = load_checkpoint(path)
    hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    if hparams.get("net") not in MODELS:
        raise ValueError(f"{path}: expected a checkpoint of AutoencoderModule(net='dense' or 'conv'), "
                         f"found hyperparameters {hparams}")
    module = AutoencoderModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval()


def train_model(name: str, *, dataset: str, root: Path, epochs: int | None, extra: Sequence[str] = ()) -> dict:
    """Train ``name`` with ``experiments/train.py`` and its config; return the best checkpoint's path,
    the validation loss, the epochs and the seconds taken."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train import CONFIGS, train

    args = ["--config", str(CONFIGS / f"{name}.yaml"), f"--data.dataset={dataset}",
            f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false"]
    if epochs is not None:
        args.append(f"--trainer.max_epochs={epochs}")
    start = time.perf_counter()
    trainer = train([*args, *extra])
    seconds = time.perf_counter() - start
    checkpoint = trainer.checkpoint_callback
    path = checkpoint.best_model_path or checkpoint.last_model_path
    return {"checkpoint": path, "val_loss": _item(checkpoint.best_model_score), "epochs": trainer.current_epoch,
            "seconds": seconds, "dataset": trainer.datamodule.dataset_used, "args": [*args, *extra]}


def probe_images(dataset: str, n_train: int, n_val: int) -> tuple[dict[str, Tensor], str]:
    """The first ``n_train`` training and ``n_val`` validation images of the seed-0 split that
    experiments/train.py uses, and the dataset actually used."""
    data = MNISTDataModule(dataset=dataset)
    data.prepare_data()
    data.setup("fit")
    take = lambda subset, n: torch.stack([subset[i][0] for i in range(min(n, len(subset)))])  # noqa: E731
    return {"train": take(data.train_set, n_train), "val": take(data.val_set, n_val)}, data.dataset_used


def methods_for(encoder: nn.Module, methods: Sequence[str]) -> list[str]:
    """``methods`` without "sequential" for a one-layer encoder (it equals "lifted" there)."""
    layers = len(LiftedNetwork.from_module(encoder, INPUT_SHAPE))
    return [m for m in methods if not (m == "sequential" and layers == 1)]


# ---------------------------------------------------------------------------------------------
# The sweep
# ---------------------------------------------------------------------------------------------
def solve_all(model: AutoencoderModule, x: Tensor, method: str, cfg: SweepConfig) -> ProbeResult:
    """One batched inversion of levels × images × α grid; the per-sample numbers of
    :func:`lbinv.probe.invert_probe` (x_inv, psnr_inv, residual, delta, x_dec, …)."""
    options = {"gradient": cfg.gradient_options, "lifted": {"solver": "pdhg"}}.get(method, {})
    solve = partial(invert, method=method, regularizer="tv", bounds=BOUNDS, max_iter=cfg.max_iter,
                    tol=cfg.tol, check_every=cfg.check_every, **options)
    levels = len(cfg.sigmas)
    alphas = torch.tensor(cfg.alphas, dtype=x.dtype).expand(levels, -1)
    with torch.no_grad():
        return invert_probe(model.encoder, model.decoder, x, noise_levels=list(cfg.sigmas), alphas=alphas,
                            seed=cfg.seed, offset=0, n=x.shape[0], data_range=BOUNDS, solve=solve)


def take_images(out: ProbeResult, index: slice) -> ProbeResult:
    """The results ``out`` restricted to the images ``index`` (dimension 1)."""
    return out.map(lambda value, per: value if per == PER_CALL else value[:, index])


def ssim(x: Tensor, truth: Tensor) -> Tensor:
    """Per-image SSIM (Gaussian window 11, σ 1.5) on [0, 1], ``x`` clamped into it like the PSNR."""
    x = x.clamp(*BOUNDS).to(torch.float64)
    return structural_similarity_index_measure(x, truth.to(torch.float64), data_range=1.0, reduction="none")


def summarize_split(out: ProbeResult, truth: Tensor, rule: str, cfg: SweepConfig) -> dict[str, Any]:
    """α per level by ``rule`` (:func:`lbinv.probe.summarize`), plus SSIMs and the chosen
    inversions ``x_chosen`` (levels, n, *input) for the figures."""
    alphas = torch.tensor(cfg.alphas, dtype=torch.float64).expand(len(cfg.sigmas), -1)
    summary = summarize(out, alphas, list(cfg.sigmas), rule, cfg.eta)
    index = summary.index
    chosen = out.x_inv[torch.arange(len(cfg.sigmas)), :, index]  # (levels, n, *input)
    for i, level in enumerate(summary.levels):
        ok = summary.finite[i]
        level["ssim_inverted"] = float(ssim(chosen[i, ok], truth[ok]).mean()) if ok.any() else None
        level["ssim_decoded"] = None if out.x_dec is None else float(ssim(out.x_dec[i], truth).mean())
    return {"levels": summary.levels, "x_chosen": chosen}


def sweep_model(name: str, model: AutoencoderModule, images: dict[str, Tensor], cfg: SweepConfig,
                log=print) -> tuple[list[dict], dict]:
    """All methods on one model. Returns the CSV rows and, for the figures, the chosen inversions
    and decodings per method/rule/split."""
    x = torch.cat([images["train"], images["val"]])
    splits = {"train": slice(0, len(images["train"])), "val": slice(len(images["train"]), len(x))}
    methods = methods_for(model.encoder, cfg.methods)
    skipped_sequential = "sequential" in cfg.methods and "sequential" not in methods
    rows, results = [], {"decoded": {}, "delta": {}, "inverted": {}}
    for method in methods:
        out = solve_all(model, x, method, cfg)
        seconds = float(out.seconds.max())
        log(f"{name:5s} {method:10s}: {seconds:7.1f} s for {x.shape[0] * len(cfg.sigmas) * len(cfg.alphas)} "
            f"inversions (max_iter {cfg.max_iter}), mean iterations {float(out.iterations.mean()):.0f}")
        for split, index in splits.items():
            part = take_images(out, index)
            results["decoded"][split], results["delta"][split] = part.x_dec, part.delta
            for rule in ALPHA_RULES:
                summary = summarize_split(part, images[split], rule, cfg)
                results["inverted"][(method, rule, split)] = summary
                note = SEQUENTIAL_NOTE if method == "lifted" and skipped_sequential else ""
                rows += [_row(name, split, method, rule, level, seconds, note) for level in summary["levels"]]
    return rows, results


def _row(model: str, split: str, method: str, rule: str, level: dict, seconds: float, note: str) -> dict:
    return {"model": model, "split": split, "sigma": level["sigma"], "delta2": level["delta2"],
            "delta2_bregman": level["delta2_bregman"], "alpha": level["alpha"],
            "psnr_decoded": level["psnr_decoded"], "psnr_inverted": level["psnr_inverted"], "alpha_rule": rule,
            "method": method, "ssim_inverted": level["ssim_inverted"], "ssim_decoded": level["ssim_decoded"],
            "iterations": level["iterations"], "seconds": seconds, "note": note}


def write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def table(rows: list[dict], split: str = "val") -> str:
    """Markdown table per model and noise level: decoder PSNR, lifted PSNR by each α rule and the
    baselines (oracle / discrepancy), on ``split``."""
    by_key = {(r["model"], r["method"], r["alpha_rule"], r["sigma"]): r for r in rows if r["split"] == split}
    models = sorted({r["model"] for r in rows if r["split"] == split}, key=MODELS.index)
    methods = [m for m in ("lifted", "sequential", "gradient") if any(k[1] == m for k in by_key)]
    head = ["model", "σ", "δ²", "decoder"] + [f"{m} {rule} (α)" for m in methods for rule in ("oracle", "discr.")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def fmt(row: dict | None) -> str:
        if row is None or row["psnr_inverted"] is None:
            return "–"
        return f"{row['psnr_inverted']:.2f} ({row['alpha']:.2g})"

    for model in models:
        for sigma in sorted({k[3] for k in by_key if k[0] == model}, reverse=True):
            ref = by_key[(model, methods[0], "oracle", sigma)]
            cells = [model, f"{sigma:g}", f"{ref['delta2']:.2f}", f"{ref['psnr_decoded']:.2f}"]
            cells += [fmt(by_key.get((model, m, rule, sigma))) for m in methods for rule in ALPHA_RULES]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _show(ax, image: Tensor) -> None:
    ax.imshow(image.reshape(INPUT_SHAPE[-2:]).clamp(*BOUNDS).cpu(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def _method_label(method: str) -> str:
    return {"lifted": "lifted Bregman TV", "sequential": "sequential TV", "gradient": "Adam + TV"}[method]


def figure_images(name: str, images: dict[str, Tensor], results: dict, cfg: SweepConfig, path: Path) -> None:
    """Figs. 4/5: truth, decoder and inversions (oracle α) from the noise-free code, training images
    left, validation images right."""
    plt = _pyplot()
    clean = list(cfg.sigmas).index(0.0) if 0.0 in cfg.sigmas else len(cfg.sigmas) - 1
    methods = [m for m in cfg.methods if (m, "oracle", "val") in results["inverted"]]
    alpha = lambda m, split: results["inverted"][(m, "oracle", split)]["levels"][clean]["alpha"]  # noqa: E731
    short = {"lifted": "lifted TV", "sequential": "sequential", "gradient": "Adam + TV"}
    labels = ["truth", "decoder"] + [f"{short[m]}\nα {alpha(m, 'train'):.2g}|{alpha(m, 'val'):.2g}" for m in methods]
    n = {s: images[s].shape[0] for s in ("train", "val")}
    fig, axes = plt.subplots(len(labels), n["train"] + n["val"] + 1, squeeze=False,
                             figsize=(1.1 * (n["train"] + n["val"] + 1) + 0.9, 1.15 * len(labels) + 0.4),
                             gridspec_kw={"width_ratios": [1] * n["train"] + [0.25] + [1] * n["val"]})
    for split, offset in (("train", 0), ("val", n["train"] + 1)):
        for j in range(n[split]):
            rows = [images[split][j], results["decoded"][split][clean, j]]
            rows += [results["inverted"][(m, "oracle", split)]["x_chosen"][clean, j] for m in methods]
            for i, image in enumerate(rows):
                _show(axes[i, offset + j], image)
        axes[0, offset].set_title(f"{split} images", loc="left", fontsize=9)
    for i, label in enumerate(labels):
        axes[i, 0].set_ylabel(label, fontsize=8)
        axes[i, n["train"]].axis("off")
    fig.suptitle(f"{name} autoencoder: from the noise-free code (α by best PSNR, train | val)", fontsize=10)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def figure_levels(name: str, results: dict, cfg: SweepConfig, path: Path, image: int = 0) -> None:
    """Fig. 6: one validation digit across the noise levels; decoder row and inversion row (oracle α)."""
    plt = _pyplot()
    summary = results["inverted"][("lifted", "oracle", "val")]
    levels = summary["levels"]
    fig, axes = plt.subplots(2, len(levels), squeeze=False, figsize=(1.1 * len(levels) + 0.8, 2.8))
    for j, level in enumerate(levels):
        _show(axes[0, j], results["decoded"]["val"][j, image])
        _show(axes[1, j], summary["x_chosen"][j, image])
        delta2 = float(results["delta"]["val"][j, image] ** 2)
        axes[0, j].set_title(f"σ={level['sigma']:g}\nδ²={delta2:.2f}", fontsize=8)
        axes[1, j].set_xlabel(f"α={level['alpha']:.2g}", fontsize=8)
    axes[0, 0].set_ylabel("decoder", fontsize=8)
    axes[1, 0].set_ylabel("lifted TV inversion", fontsize=8)
    fig.suptitle(f"{name} autoencoder: one validation digit, decreasing code noise (α by best PSNR per level)",
                 fontsize=10, y=1.04)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def figure_psnr(rows: list[dict], path: Path, split: str = "val") -> None:
    """Fig. 7: mean PSNR against δ² per model; decoder, lifted inversion (both α rules) and baselines."""
    plt = _pyplot()
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(models), squeeze=False, figsize=(5.2 * len(models), 4.0))
    styles = {("lifted", "oracle"): ("C0", "-", "o"), ("lifted", "discrepancy"): ("C0", "--", "s"),
              ("sequential", "oracle"): ("C2", ":", "^"), ("gradient", "oracle"): ("C3", ":", "v")}
    for ax, model in zip(axes[0], models):
        mine = [r for r in rows if r["model"] == model and r["split"] == split]
        decoder = sorted({(r["delta2"], r["psnr_decoded"]) for r in mine if r["method"] == "lifted"})
        curves = {}
        for (method, rule) in styles:
            curves[method, rule] = sorted((r["delta2"], r["psnr_inverted"]) for r in mine if r["method"] == method
                                          and r["alpha_rule"] == rule and r["psnr_inverted"] is not None)
        # the y range of decoder and lifted inversion; a baseline far below it is named, not drawn to scale
        shown = [p for _, p in decoder] + [p for key in styles if key[0] == "lifted" for _, p in curves[key]]
        bottom = min(shown) - 2.0
        for (method, rule), (color, line, marker) in styles.items():
            curve = curves[method, rule]
            if not curve:
                continue
            label = f"{_method_label(method)}, {rule} α"
            if max(p for _, p in curve) < bottom:
                label += f" (off scale: {min(p for _, p in curve):.1f}–{max(p for _, p in curve):.1f} dB)"
            ax.plot(*zip(*curve), color=color, linestyle=line, marker=marker, markersize=4, label=label)
        ax.plot(*zip(*decoder), color="k", marker="x", label="decoder")
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(max(d for d, _ in decoder) * 1.3, -0.01)
        ax.set_ylim(bottom=bottom)
        ax.set_xlabel("δ² = mean ‖y^δ − y‖²  (symlog; noise falls →)")
        ax.set_ylabel(f"mean PSNR [dB], {split} images")
        ax.set_title(f"{model} autoencoder")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def save_figures(name: str, images: dict[str, Tensor], results: dict, cfg: SweepConfig, out: Path) -> list[Path]:
    paths = [out / f"noise_sweep_{name}_images.png", out / f"noise_sweep_{name}_levels.png"]
    figure_images(name, images, results, cfg, paths[0])
    figure_levels(name, results, cfg, paths[1])
    return paths


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------
#: What --quick changes (each can still be overridden on the command line).
QUICK = {"dataset": "mnist-5k", "epochs": {"dense": 10, "conv": 10}, "alphas": 7, "n_train": 4, "n_val": 4}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt-dense", type=Path, help="checkpoint of the dense autoencoder (else trained here)")
    p.add_argument("--ckpt-conv", type=Path, help="checkpoint of the conv autoencoder (else trained here)")
    p.add_argument("--quick", action="store_true",
                   help=f"train a few epochs on mnist-5k, smaller α grid and probe ({QUICK})")
    p.add_argument("--dataset", choices=("auto", "mnist", "mnist-5k", "shapes"),
                   help="data for training and probe images (default: auto; mnist-5k with --quick)")
    p.add_argument("--out", type=Path, default=Path("results/noise_sweep"))
    p.add_argument("--models", default="dense,conv", help="comma-separated subset of dense,conv")
    p.add_argument("--epochs", type=int, help="training epochs of both models (default: the configs'; --quick: 10)")
    p.add_argument("--train-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for experiments/train.py, e.g. --train-arg=--trainer.limit_train_batches=5")
    p.add_argument("--sigmas", help=f"comma-separated code noise stds (default {','.join(map(str, SIGMAS))})")
    p.add_argument("--alphas", type=int, help="size of the log α grid in [1e-4, 1e-1] (default 10; --quick: 7)")
    p.add_argument("--n-train", type=int, help="training probe images (default 5; --quick: 4)")
    p.add_argument("--n-val", type=int, help="validation probe images (default 5; --quick: 4)")
    p.add_argument("--methods", default="lifted,sequential,gradient", help="comma-separated methods")
    p.add_argument("--max-iter", type=int, default=1500)
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--eta", type=float, default=1.0, help="discrepancy principle: ‖N(x) − y^δ‖ ≤ η δ")
    p.add_argument("--seed", type=int, default=0, help="seed of the code noise")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (one is fastest for these small iterations)")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> SweepConfig:
    pick = lambda value, key, full: value if value is not None else (QUICK[key] if args.quick else full)  # noqa: E731
    sigmas = tuple(float(s) for s in args.sigmas.split(",")) if args.sigmas else SIGMAS
    return SweepConfig(sigmas=sigmas, alphas=log_grid(pick(args.alphas, "alphas", 10)),
                       n_train=pick(args.n_train, "n_train", 5), n_val=pick(args.n_val, "n_val", 5),
                       max_iter=args.max_iter, tol=args.tol, eta=args.eta, seed=args.seed,
                       methods=tuple(args.methods.split(",")))


def get_model(name: str, args: argparse.Namespace, dataset: str) -> tuple[AutoencoderModule, dict]:
    """The checkpoint given for ``name``, or one trained here; with a description of where it came from."""
    path = getattr(args, f"ckpt_{name}")
    if path is not None:
        return load_model(path), {"checkpoint": str(path), "trained_here": False}
    epochs = args.epochs if args.epochs is not None else (QUICK["epochs"][name] if args.quick else None)
    info = train_model(name, dataset=dataset, root=args.out / "train", epochs=epochs, extra=args.train_arg)
    print(f"{name}: trained {info['epochs']} epochs on {info['dataset']} in {info['seconds']:.0f} s, "
          f"val/loss {info['val_loss']:.4f} → {info['checkpoint']}")
    return load_model(info["checkpoint"]), {**info, "trained_here": True}


def main(argv: Sequence[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # we pass args on purpose
    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    cfg = config_from(args)
    dataset = args.dataset or ("mnist-5k" if args.quick else "auto")
    images, dataset_used = probe_images(dataset, cfg.n_train, cfg.n_val)
    rows, report = [], {"config": asdict(cfg), "dataset": dataset_used, "bounds": BOUNDS, "models": {}}
    for name in args.models.split(","):
        model, info = get_model(name, args, dataset)
        model_rows, results = sweep_model(name, model, images, cfg)
        rows += model_rows
        figures = save_figures(name, images, results, cfg, args.out)
        report["models"][name] = {**info, "figures": [str(p) for p in figures]}
        write_csv(rows, args.out / "noise_sweep.csv")  # after each model, so a long run leaves something
    figure_psnr(rows, args.out / "noise_sweep_psnr.png")
    report["seconds"] = time.perf_counter() - start
    (args.out / "noise_sweep.json").write_text(json.dumps(report, indent=2, default=str))
    print(table(rows))
    print(f"\n{len(rows)} rows → {args.out / 'noise_sweep.csv'}; figures in {args.out}; "
          f"{report['seconds']:.0f} s in all")
    return rows


def _item(value) -> float | None:
    return None if value is None else float(value)


if __name__ == "__main__":
    main()
