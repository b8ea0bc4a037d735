"""Safe loading (issue 9): a pickle payload in a crafted checkpoint is refused, never executed."""

from __future__ import annotations

import builtins
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from lbinv.checkpoints import UnsafeCheckpointError, load_checkpoint


class Payload:
    """Unpickling this object calls ``open(marker, "w")``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def crafted_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A Lightning-like checkpoint whose pickle would run code when loaded."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "crafted.ckpt"
    weights = nn.Linear(3, 2).state_dict()
    torch.save({"state_dict": weights, "hyper_parameters": {"lr": 0.1, "net": Payload(marker)}}, path)
    return path, marker


def test_crafted_payload_is_refused_and_never_runs(tmp_path):
    path, marker = crafted_checkpoint(tmp_path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(info.value)
    assert str(path) in message and "not plain weights" in message
    assert "io.open" in message  # what was refused
    assert "torch.load(path, weights_only=False)" in message and "trust" in message  # how to load a trusted file
    # both families of errors catch it
    assert isinstance(info.value, ValueError) and isinstance(info.value, pickle.UnpicklingError)


def test_the_payload_is_real(tmp_path):
    """Control: the same file loaded the unsafe way does run the payload, so the refusal above matters."""
    path, marker = crafted_checkpoint(tmp_path)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_real_state_dict_and_a_nested_checkpoint_load(tmp_path):
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    state = load_checkpoint(tmp_path / "weights.pt")
    fresh = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    fresh.load_state_dict(state)
    for key, value in net.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
        assert state[key].device.type == "cpu"
    # the plain data a Lightning checkpoint or a results file holds
    results = {"epoch": 3, "hyper_parameters": {"net": "conv", "code_dim": None, "lr": 0.1},
               "done": [0, 1, 2], "psnr": torch.tensor([21.5, 19.0]), "callbacks": {"probe": torch.rand(2, 1, 4, 4)}}
    torch.save(results, str(tmp_path / "results.pt"))
    loaded = load_checkpoint(str(tmp_path / "results.pt"), map_location=torch.device("cpu"))
    assert loaded["hyper_parameters"] == results["hyper_parameters"] and loaded["done"] == [0, 1, 2]
    torch.testing.assert_close(loaded["callbacks"]["probe"], results["callbacks"]["probe"])


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.ckpt")
    (tmp_path / "junk.ckpt").write_bytes(b"\x80\x02garbage that is no checkpoint")
    with pytest.raises((pickle.UnpicklingError, RuntimeError, EOFError)):
        load_checkpoint(tmp_path / "junk.ckpt")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec.*")
def test_lbinv_lightning_checkpoints_load_weights_only(tmp_path):
    """A checkpoint of lbinv's AutoencoderModule with an InversionCallback and a ModelCheckpoint
    state holds plain data only: load_checkpoint, load_from_checkpoint(weights_only=True) and a
    resumed fit(weights_only=True) all accept it."""
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    from lbinv.lightning.callback import InversionCallback
    from lbinv.lightning.models import AutoencoderModule

    data = DataLoader(TensorDataset(torch.rand(4, 1, 28, 28), torch.zeros(4)), batch_size=2)

    def trainer(epochs: int) -> L.Trainer:
        inversion = InversionCallback(noise_levels=(0.0,), num_samples=2, max_iter=2, input_shape=(1, 28, 28), log_images=False)
        return L.Trainer(
            max_epochs=epochs, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0, logger=False,
            enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", default_root_dir=str(tmp_path),
            callbacks=[inversion, ModelCheckpoint(dirpath=str(tmp_path), save_last=True)],
        )

    trainer(1).fit(AutoencoderModule(net="dense", code_dim=8), data, data)
    path = tmp_path / "last.ckpt"
    checkpoint = load_checkpoint(path)
    assert checkpoint["hyper_parameters"]["net"] == "dense" and checkpoint["epoch"] == 0
    model = AutoencoderModule.load_from_checkpoint(path, weights_only=True)
    torch.testing.assert_close(model.state_dict()["net.encoder.1.weight"], checkpoint["state_dict"]["net.encoder.1.weight"])
    resumed = trainer(2)
    resumed.fit(AutoencoderModule(net="dense", code_dim=8), data, data, ckpt_path=str(path), weights_only=True)
    assert resumed.current_epoch == 2
