"""MNISTDataModule: every dataset variant, the split, centring, and the offline behaviour."""

import logging
import struct

import pytest
import torch
from torchvision.datasets import MNIST

from lbinv.lightning import data
from lbinv.lightning.data import MNIST_FILES, MNISTDataModule, make_shapes


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never touch the network: any connection attempt fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to open a network connection")

    monkeypatch.setattr(data.socket, "create_connection", refuse)
    monkeypatch.setattr(MNIST, "download", refuse)


def fake_mnist(root, n_train=30, n_test=10, corrupt=False):
    """Write tiny MNIST IDX files where torchvision looks for them; return the train images."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    g = torch.Generator().manual_seed(1)
    train = torch.randint(0, 256, (n_train, 28, 28), generator=g, dtype=torch.uint8)
    for prefix, images in (("train", train), ("t10k", train[:n_test])):
        labels = torch.arange(len(images), dtype=torch.uint8) % 10
        header = struct.pack(">IIII", 0x803, len(images), 28, 28)
        body = images.numpy().tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + (body[:100] if corrupt else body))
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x801, len(labels)) + labels.numpy().tobytes())
    return train


def loaded(**kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(**kwargs)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def all_images(dataset) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def check_images(dm: MNISTDataModule, lo: float = 0.0, hi: float = 1.0) -> None:
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (dm.hparams.batch_size, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (dm.hparams.batch_size,) and y.dtype == torch.int64
    for split in (dm.train_set, dm.val_set):
        images = all_images(split)
        assert images.min() >= lo and images.max() <= hi
    assert len(dm.val_dataloader().dataset) == len(dm.val_set)


def test_mnist_5k_shapes_ranges_split():
    dm = loaded(dataset="mnist-5k", val_fraction=0.1, seed=3)
    assert dm.dataset_used == "mnist-5k"
    assert (len(dm.train_set), len(dm.val_set)) == (4500, 500)
    check_images(dm)
    assert all_images(dm.train_set).max() == 1.0
    # the file is sorted by label: a random split keeps all ten digits on both sides
    assert set(dm.train_set.labels.tolist()) == set(dm.val_set.labels.tolist()) == set(range(10))
    train = {bytes(r.numpy()) for r in dm.train_set.images.flatten(1)}
    val = {bytes(r.numpy()) for r in dm.val_set.images.flatten(1)}
    assert not train & val and len(train | val) == 5000

    again, other = loaded(dataset="mnist-5k", seed=3), loaded(dataset="mnist-5k", seed=4)
    assert torch.equal(again.val_set.images, dm.val_set.images)
    assert not torch.equal(other.val_set.images, dm.val_set.images)


def test_shapes_are_piecewise_constant_and_seeded():
    dm = loaded(dataset="shapes", num_shapes=200, batch_size=16, val_fraction=0.25)
    assert dm.dataset_used == "shapes" and (len(dm.train_set), len(dm.val_set)) == (150, 50)
    check_images(dm)
    images, labels = make_shapes(200, seed=0)
    assert images.shape == (200, 1, 28, 28) and images.dtype == torch.uint8
    assert set(labels.tolist()) == {1, 2, 3}
    assert all(len(im.unique()) <= n + 1 for im, n in zip(images, labels))
    assert (images > 0).flatten(1).sum(1).min() > 0  # every image shows something
    assert torch.equal(make_shapes(200, seed=0)[0], images)
    assert not torch.equal(make_shapes(200, seed=1)[0], images)


def test_center_subtracts_the_mean_training_image():
    plain = loaded(dataset="shapes", num_shapes=100)
    centred = loaded(dataset="shapes", num_shapes=100, center=True)
    train = all_images(centred.train_set)
    assert centred.mean_image.shape == (1, 28, 28)
    assert train.mean(0).abs().max() < 1e-5
    torch.testing.assert_close(all_images(centred.val_set), all_images(plain.val_set) - centred.mean_image)


def test_mnist_reads_files_and_auto_prefers_them(tmp_path, caplog):
    train = fake_mnist(tmp_path)
    dm = loaded(dataset="mnist", data_dir=tmp_path, batch_size=4, val_fraction=0.2)
    assert (len(dm.train_set), len(dm.val_set)) == (24, 6)
    check_images(dm)
    got = torch.cat([dm.train_set.images, dm.val_set.images]).flatten(1)
    assert {bytes(r.numpy()) for r in got} == {bytes(r.numpy()) for r in train.flatten(1)}

    caplog.set_level(logging.INFO, logger="lbinv.lightning.data")
    auto = loaded(dataset="auto", data_dir=tmp_path, batch_size=4, val_fraction=0.2)
    assert auto.dataset_used == "mnist"
    assert torch.equal(auto.val_set.images, dm.val_set.images)
    assert [r.levelname for r in caplog.records] == ["INFO"] and "full MNIST" in caplog.text


@pytest.mark.parametrize("reachable", [True, False])
def test_mnist_missing_offline_gives_clear_error(tmp_path, monkeypatch, reachable):
    def fail(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(data, "mnist_reachable", lambda timeout=3.0: reachable)
    monkeypatch.setattr(MNIST, "download", fail)
    dm = MNISTDataModule(dataset="mnist", data_dir=tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        dm.prepare_data()
    message = str(err.value)
    for needed in (*MNIST_FILES, str((tmp_path / "MNIST" / "raw").resolve()), "download=True", "mnist-5k"):
        assert needed in message
    assert ("Error downloading" if reachable else "no connection") in message
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        dm.setup()


def test_corrupt_mnist_gives_clear_error(tmp_path):
    fake_mnist(tmp_path, corrupt=True)
    with pytest.raises(RuntimeError, match="could not be read.*delete them"):
        loaded(dataset="mnist", data_dir=tmp_path)


def test_auto_falls_back_to_mnist_5k_and_says_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(data, "mnist_reachable", lambda timeout=3.0: False)
    caplog.set_level(logging.INFO, logger="lbinv.lightning.data")
    dm = loaded(dataset="auto", data_dir=tmp_path)
    assert dm.dataset_used == "mnist-5k" and len(dm.train_set) + len(dm.val_set) == 5000
    assert len(caplog.records) == 1
    line = caplog.records[0].getMessage()
    assert "mnist-5k" in line and str(tmp_path) in line and "no connection" in line


def test_mnist_reachable_gives_up_quietly(monkeypatch):
    def unreachable(address, timeout):
        assert timeout <= 5
        raise OSError("Name or service not known")

    monkeypatch.setattr(data.socket, "create_connection", unreachable)
    assert data.mnist_reachable() is False


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="dataset"):
        MNISTDataModule(dataset="cifar")
    with pytest.raises(ValueError, match="val_fraction"):
        MNISTDataModule(val_fraction=1.0)
    with pytest.raises(ValueError, match="batch_size"):
        MNISTDataModule(batch_size=0)
    with pytest.raises(RuntimeError, match="setup"):
        MNISTDataModule(dataset="shapes").train_dataloader()
