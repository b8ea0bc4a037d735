"""experiments/train.py end to end: both configs, overrides, logs and checkpoints."""

import subprocess
import sys

import torch
import yaml

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lbinv import InversionCallback
from lbinv.lightning.models import AutoencoderModule
from tests.experiments.helpers import EXPERIMENTS, load_experiment

TRAIN = EXPERIMENTS / "train.py"
QUICK = ["--data.dataset=mnist-5k", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
         "--trainer.limit_val_batches=1"]


def test_no_config_trains_both_models(tmp_path):
    out = subprocess.run(
        [sys.executable, str(TRAIN), *QUICK, f"--trainer.default_root_dir={tmp_path}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("dense", "conv"):
        run = tmp_path / "lightning_logs" / name / "version_0"
        assert list(run.glob("events.out.tfevents.*")), sorted(run.iterdir())
        checkpoints = {p.name for p in (run / "checkpoints").glob("*.ckpt")}
        assert "last.ckpt" in checkpoints and len(checkpoints) == 2
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["model"]["net"] == name and config["data"]["dataset"] == "mnist-5k"
        assert str(run) in out.stdout
    assert f"tensorboard --logdir {tmp_path / 'lightning_logs'} --samples_per_plugin images=100" in out.stdout


def test_one_config_with_overrides(tmp_path, monkeypatch):
    train = load_experiment("train", "train_script")
    threads = []
    monkeypatch.setattr(torch, "set_num_threads", threads.append)
    args = ["--config", str(EXPERIMENTS / "configs" / "conv.yaml"), *QUICK,
            f"--trainer.default_root_dir={tmp_path}", "--model.code_dim=16", "--model.lr=0.05",
            "--model.optimizer=adam", "--data.batch_size=8", "--num_threads=2", "--checkpoint.save_last=false",
            "--inversion.every_n_epochs=1", "--inversion.max_iter=20", "--inversion.num_samples=4"]
    (trainer,) = train.main(args)
    model, data = trainer.lightning_module, trainer.datamodule
    assert isinstance(model, AutoencoderModule) and model.hparams.net == "conv"
    assert model.hparams.code_dim == 16 and isinstance(trainer.optimizers[0], torch.optim.Adam)
    assert data.hparams.batch_size == 8 and trainer.max_epochs == 1 and threads == [2]
    run = tmp_path / "lightning_logs" / "conv" / "version_0"
    assert trainer.log_dir == str(run) and list(run.glob("events.out.tfevents.*"))
    (inversion,) = [c for c in trainer.callbacks if isinstance(c, InversionCallback)]
    assert inversion.alpha == "auto" and inversion.max_iter == 20  # the default α rule, the override's budget
    events = EventAccumulator(str(run)).Reload()
    assert {f"inversion/psnr_inverted/sigma_{s:g}" for s in inversion.noise_levels} <= set(events.Tags()["scalars"])
    (checkpoint,) = (run / "checkpoints").glob("*.ckpt")
    reloaded = AutoencoderModule.load_from_checkpoint(checkpoint)
    assert reloaded.hparams.code_dim == 16 and reloaded.encode(torch.rand(2, 1, 28, 28)).shape == (2, 16)
