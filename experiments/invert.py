"""Invert every code of a dataset split with ``Trainer.predict``, one result file per batch and rank.

    python experiments/invert.py --ckpt runs/conv.ckpt --out results/inverted
    python experiments/invert.py --ckpt C.ckpt --out D --noise-levels 0 0.1 0.33 --alpha 3e-3 1e-2
    python experiments/invert.py --ckpt C.ckpt --out D --trainer.accelerator gpu --trainer.devices 4 \\
        --trainer.strategy ddp --trainer.num_nodes 2

The checkpoint is an :class:`lbinv.lightning.models.AutoencoderModule` checkpoint (``experiments/train.py``),
loaded with :func:`lbinv.checkpoints.load_checkpoint` (tensors and plain data only). Every image of
the split is encoded; Gaussian noise of each ``--noise-levels`` standard deviation is added to its
code (drawn from ``--seed`` and the image's index, so a sample's noise is the same whatever the
batch size, the number of processes or the run); the noisy code is clipped into the code
activation's domain and inverted with :func:`lbinv.invert` for every α of ``--alpha`` — all levels ×
α values × images of a batch in one batched call.

Results: ``DIR/part-<first index>-r<rank>-b<batch>.pt``, one per batch and rank (load them with
:func:`lbinv.checkpoints.load_checkpoint`), each a dict of CPU tensors with leading dimension the
batch's samples: ``index`` (position in the split), ``x_inv`` (n, levels, A, 1, 28, 28),
``iterations``, ``converged``, ``objective``, ``psnr_inverted`` (n, levels, A), ``delta`` (n, levels:
‖y^δ − y‖), ``psnr_decoded`` (n, levels: the decoder on the same noisy code). ``DIR/config.json``
holds the settings. A file is written to a temporary name and renamed, so it is either complete or
absent.

Resuming: a rerun with the same settings skips every sample whose file exists — the prediction
dataset is the split minus those indices, so a run interrupted after k batches redoes nothing and
loses nothing, even with another batch size or number of processes. A rerun with other settings
into the same DIR is refused.

Any ``--trainer.KEY VALUE`` (or ``--trainer.KEY=VALUE``) goes to :class:`lightning.pytorch.Trainer`
(values parsed as YAML: ``2``, ``ddp``, ``[0, 1]``, ``true``). Under DDP, Lightning splits the
remaining samples over the processes without repeating any (``UnrepeatedDistributedSampler``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from lbinv import LiftedNetwork, invert  # noqa: E402
from lbinv.metrics import psnr  # noqa: E402
from lbinv.checkpoints import load_checkpoint  # noqa: E402
from lbinv.lightning.data import MNISTDataModule  # noqa: E402
from lbinv.lightning.models import AutoencoderModule  # noqa: E402

NOISE_LEVELS = (0.0, 0.05, 0.1, 0.2, 0.33)
INPUT_SHAPE = (1, 28, 28)
PART = re.compile(r"^part-(\d+)-r(\d+)-b(\d+)\.pt$")
CONFIG = "config.json"
#: Settings that must match for a rerun to resume into the same directory.
RESUME_KEYS = ("ckpt", "split", "dataset", "limit", "noise_levels", "alpha", "method", "max_iter", "tol", "bounds",
               "regularizer", "seed")


# ----------------------------------------------------------------------------------- data


class NoisyCodeDataset(Dataset):
    """``(index, image, noise)`` for the given indices of ``images``; ``noise`` is a standard normal
    ``(levels, *code_shape)`` drawn from a generator seeded by ``(seed, index)``."""

    def __init__(self, images: Dataset, indices: Sequence[int], levels: int, code_shape: tuple[int, ...], seed: int) -> None:
        self.images, self.indices = images, list(indices)
        self.levels, self.code_shape, self.seed = levels, code_shape, seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, Tensor, Tensor]:
        index = self.indices[i]
        image = self.images[index][0]
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        return index, image, torch.randn((self.levels, *self.code_shape), generator=generator)


def finished_indices(out: Path) -> set[int]:
    """Sample indices held by the complete result files in ``out``."""
    done: set[int] = set()
    for path in sorted(out.glob("part-*.pt")):
        if PART.match(path.name):
            done.update(int(i) for i in load_checkpoint(path)["index"].tolist())
    return done


# ----------------------------------------------------------------------------------- module


class InversionModule(LightningModule):
    """``predict_step``: encode, add the per-sample noise at every level, invert all levels × α × images
    of the batch in one :func:`lbinv.invert` call, and measure."""

    def __init__(self, autoencoder: AutoencoderModule, noise_levels: Sequence[float], alphas: Sequence[float],
                 solver: dict[str, Any]) -> None:
        super().__init__()
        self.autoencoder = autoencoder.eval()
        self.noise_levels, self.alphas, self.solver = tuple(noise_levels), tuple(alphas), dict(solver)
        self.net: LiftedNetwork | None = None

    def on_predict_start(self) -> None:
        self.autoencoder.eval()
        self.net = LiftedNetwork.from_module(self.autoencoder.encoder, INPUT_SHAPE)  # on the final device

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        index, x, noise = batch
        net, encoder = self.net, self.autoencoder.encoder
        levels, grid, k = len(self.noise_levels), len(self.alphas), x.shape[0]
        y = encoder(x)  # (k, *code)
        code = tuple(y.shape[1:])
        sigma = torch.tensor(self.noise_levels, dtype=y.dtype, device=y.device).reshape(1, levels, *[1] * len(code))
        y_delta = net.nodes[-1].activation.project_data(y.unsqueeze(1) + sigma * noise.to(y.dtype))  # (k, levels, *code)
        data = y_delta.unsqueeze(2).expand(k, levels, grid, *code).reshape(-1, *code)
        alpha = torch.tensor(self.alphas, dtype=y.dtype, device=y.device).repeat(k * levels)
        result = invert(net, data, alpha=alpha, input_shape=INPUT_SHAPE, **self.solver)
        shape = (k, levels, grid)
        truth = x.unsqueeze(1).expand(k, levels * grid, *INPUT_SHAPE).reshape(-1, *INPUT_SHAPE)
        decoded = self.autoencoder.decode(y_delta.reshape(-1, *code)).reshape(-1, *INPUT_SHAPE)
        truth_dec = x.unsqueeze(1).expand(k, levels, *INPUT_SHAPE).reshape(-1, *INPUT_SHAPE)
        out = {
            "index": index.long(),
            "x_inv": result.x.reshape(*shape, *INPUT_SHAPE),
            "iterations": result.iterations.reshape(shape),
            "converged": result.converged.reshape(shape),
            "objective": result.objective.reshape(shape),
            "psnr_inverted": psnr(result.x, truth, (0.0, 1.0)).reshape(shape),
            "delta": (y_delta - y.unsqueeze(1)).flatten(2).norm(dim=2),
            "psnr_decoded": psnr(decoded, truth_dec, (0.0, 1.0)).reshape(k, levels),
        }
        return {key: value.detach().cpu() for key, value in out.items()}


# ----------------------------------------------------------------------------------- writer


class AtomicBatchWriter(BasePredictionWriter):
    """Writes each batch's prediction to ``part-<first index>-r<rank>-b<batch>.pt`` in ``out``:
    saved under a temporary name in the same directory, then renamed (atomic on POSIX), so that a
    killed run leaves complete files or none. The first index makes the name unique across reruns
    (every file holds samples no other file holds)."""

    def __init__(self, out: Path) -> None:
        super().__init__(write_interval="batch")
        self.out = Path(out)
        self.written: list[Path] = []

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx) -> None:
        first = int(prediction["index"].min())
        path = self.out / f"part-{first:07d}-r{trainer.global_rank}-b{batch_idx}.pt"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(prediction, tmp)
        os.replace(tmp, path)
        self.written.append(path)


# ----------------------------------------------------------------------------------- command line


def parse(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True, help="AutoencoderModule checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="output directory (resumed if it holds results)")
    parser.add_argument("--noise-levels", type=float, nargs="+", default=list(NOISE_LEVELS), help="std of the code noise")
    parser.add_argument("--alpha", type=float, nargs="+", default=[1e-2], help="α values; each level is solved with each")
    parser.add_argument("--split", choices=("val", "train"), default="val")
    parser.add_argument("--dataset", default=None, help="default: the checkpoint's datamodule setting, else 'auto'")
    parser.add_argument("--data-dir", default=None, help="default: the checkpoint's datamodule setting, else 'data'")
    parser.add_argument("--limit", type=int, default=None, help="only the first N samples of the split")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--method", default="lifted")
    parser.add_argument("--regularizer", default="tv")
    parser.add_argument("--max-iter", type=int, default=1500)
    parser.add_argument("--tol", type=float, default=1e-5)
    parser.add_argument("--bounds", type=float, nargs=2, default=[0.0, 1.0], help="box on x (images in [0, 1])")
    parser.add_argument("--seed", type=int, default=0, help="seed of the code noise")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per process (one is fastest here)")
    args, rest = parser.parse_known_args(list(argv))
    trainer: dict[str, Any] = {}
    i = 0
    while i < len(rest):
        arg = rest[i]
        if not arg.startswith("--trainer."):
            parser.error(f"unrecognized argument {arg!r} (Trainer options are --trainer.KEY VALUE)")
        key, eq, value = arg[len("--trainer."):].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                parser.error(f"{arg} needs a value")
            value, i = rest[i + 1], i + 1
        trainer[key] = yaml.safe_load(value)
        i += 1
    if any(a <= 0 for a in args.alpha):
        parser.error("--alpha: values must be > 0")
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    return args, trainer


def load_autoencoder(path: Path) -> tuple[AutoencoderModule, dict[str, Any]]:
    """The module and the datamodule hyperparameters of a checkpoint (weights and plain data only)."""
    checkpoint = load_checkpoint(path)
    hparams = {k: v for k, v in checkpoint.get("hyper_parameters", {}).items() if not k.startswith("_")}
    if not isinstance(hparams.get("net"), str):
        raise ValueError(f"{path}: expected a checkpoint of AutoencoderModule(net='dense' or 'conv') with its "
                         f"hyperparameters, found {sorted(hparams)}")
    module = AutoencoderModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    data = {k: v for k, v in checkpoint.get("datamodule_hyper_parameters", {}).items() if not k.startswith("_")}
    return module.eval(), data


def check_resume(out: Path, config: dict[str, Any]) -> None:
    """Write ``config.json``, or check that the one in ``out`` has the same settings."""
    path = out / CONFIG
    if path.exists():
        old = json.loads(path.read_text())
        diff = {k: (old.get(k), config.get(k)) for k in RESUME_KEYS if old.get(k) != config.get(k)}
        if diff:
            raise SystemExit(f"{out} holds results of other settings ({diff}, as (then, now)); "
                             "use another --out, or the same settings to resume")
        return
    tmp = path.with_name(f".{CONFIG}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(config, indent=2))
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None, callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run the inversion; return a summary (samples in the split, skipped as done, written now)."""
    args, trainer_kwargs = parse(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    autoencoder, data_hparams = load_autoencoder(args.ckpt)
    data_hparams = {k: v for k, v in data_hparams.items() if k in ("dataset", "data_dir", "val_fraction", "center", "seed", "num_shapes")}
    if args.dataset is not None:
        data_hparams["dataset"] = args.dataset
    if args.data_dir is not None:
        data_hparams["data_dir"] = args.data_dir
    datamodule = MNISTDataModule(**data_hparams)
    datamodule.setup()  # no download here: "auto" falls back to the bundled digits when MNIST is absent
    split = datamodule.val_set if args.split == "val" else datamodule.train_set
    total = len(split) if args.limit is None else min(args.limit, len(split))

    config = {
        "ckpt": str(args.ckpt.resolve()), "split": args.split, "dataset": datamodule.dataset_used, "limit": total,
        "noise_levels": args.noise_levels, "alpha": args.alpha, "method": args.method, "max_iter": args.max_iter,
        "tol": args.tol, "bounds": args.bounds, "regularizer": args.regularizer, "seed": args.seed,
        "input_shape": list(INPUT_SHAPE), "files": "part-<first index>-r<rank>-b<batch>.pt",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    check_resume(args.out, config)  # every rank checks; the first writes (same content on all)
    done = finished_indices(args.out)
    remaining = [i for i in range(total) if i not in done]
    summary = {"samples": total, "skipped": total - len(remaining), "remaining": len(remaining)}
    if not remaining:
        return {**summary, "written": 0}

    with torch.no_grad():
        code_shape = tuple(autoencoder.encoder(torch.zeros(1, *INPUT_SHAPE)).shape[1:])
    dataset = NoisyCodeDataset(split, remaining, len(args.noise_levels), code_shape, args.seed)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=False)
    solver = {"method": args.method, "max_iter": args.max_iter, "tol": args.tol,
              "regularizer": None if args.regularizer in ("none", "None") else args.regularizer,
              "bounds": tuple(args.bounds)}
    module = InversionModule(autoencoder, args.noise_levels, args.alpha, solver)
    writer = AtomicBatchWriter(args.out)
    kwargs = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False, **trainer_kwargs}
    kwargs["callbacks"] = [writer, *callbacks, *(kwargs.get("callbacks") or [])]
    trainer = Trainer(**kwargs)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    return {**summary, "written": len(writer.written), "rank": trainer.global_rank, "world_size": trainer.world_size}


if __name__ == "__main__":
    print(json.dumps(main()))
