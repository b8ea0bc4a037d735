"""Train the paper's autoencoders on MNIST with PyTorch Lightning, logging to TensorBoard.

    python experiments/train.py                                    # dense, then conv
    python experiments/train.py --config experiments/configs/conv.yaml --trainer.max_epochs=5
    python experiments/train.py --data.dataset=mnist --model.lr=0.05 --trainer.default_root_dir=runs

Without ``--config`` both configs of ``experiments/configs`` are trained one after the other, each
with the other arguments applied. Logs go to ``<default_root_dir>/lightning_logs/<model>/version_N``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger

from lbinv import InversionCallback
from lbinv.lightning.data import MNISTDataModule
from lbinv.lightning.models import AutoencoderModule

CONFIGS = Path(__file__).resolve().parent / "configs"
MODELS = ("dense", "conv")


class TrainCLI(LightningCLI):
    """LightningCLI with ``num_threads``, a checkpoint callback (``checkpoint.*``), the lifted-Bregman
    :class:`~lbinv.InversionCallback` (``inversion.*``), a rich progress bar and a TensorBoard logger
    named after the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--num_threads", type=int | None, default=None,
                            help="torch CPU threads (torch.set_num_threads); default: torch's choice")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.monitor": "val/loss", "checkpoint.save_last": True})
        parser.add_lightning_class_args(InversionCallback, "inversion")

    def before_instantiate_classes(self) -> None:
        if self.config.num_threads is not None:
            torch.set_num_threads(self.config.num_threads)

    def instantiate_trainer(self, **kwargs) -> Trainer:
        trainer_config = self.config_init.trainer
        if trainer_config.logger in (None, True):
            net = self.model.hparams.get("net", type(self.model.net).__name__)
            root = Path(trainer_config.default_root_dir or ".")
            kwargs["logger"] = TensorBoardLogger(root / "lightning_logs", name=str(net), default_hp_metric=False)
        callbacks = trainer_config.callbacks or []
        if trainer_config.enable_progress_bar is not False and not any(
            isinstance(c, ProgressBar) for c in callbacks
        ):
            kwargs["callbacks"] = [*callbacks, RichProgressBar()]
        return super().instantiate_trainer(**kwargs)


def train(args: list[str]) -> Trainer:
    """Parse ``args`` like the command line, fit, and return the trainer."""
    cli = TrainCLI(
        AutoencoderModule,
        MNISTDataModule,
        run=False,
        args=args,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli.trainer


def main(argv: list[str] | None = None) -> list[Trainer]:
    """Train the configs named in ``argv`` (all of ``MODELS`` when none is), print where the logs are."""
    argv = sys.argv[1:] if argv is None else list(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lbinv").setLevel(logging.INFO)
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # we pass args on purpose
    single = any(a in ("-h", "--help", "-c") or a.startswith(("--config", "--print_config")) for a in argv)
    runs = [argv] if single else [["--config", str(CONFIGS / f"{m}.yaml"), *argv] for m in MODELS]
    trainers = [train(args) for args in runs]
    print()
    for trainer in trainers:
        print(f"logs and checkpoints: {trainer.log_dir}")
    roots = {str(Path(t.logger.save_dir)) for t in trainers if isinstance(t.logger, TensorBoardLogger)}
    for root in sorted(roots):
        print(f"watch them with:      tensorboard --logdir {root} --samples_per_plugin images=100")
    return trainers


if __name__ == "__main__":
    main()
