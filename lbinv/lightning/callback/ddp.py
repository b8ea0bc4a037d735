"""The inversion callback's collectives. Every rank calls each of these, in the same order, with
tensors of the same shapes: a rank that skipped them would hang the others."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import Tensor

if TYPE_CHECKING:  # either namespace's classes
    from lightning.pytorch import LightningModule, Trainer

#: Most dimensions, the batch dimension included, of the probe batches :func:`gather_probe` exchanges.
MAX_BATCH_DIMS = 7


def gather(trainer: Trainer, tensor: Tensor, n: int, sample_dim: Optional[int]) -> Tensor:
    """All-gather over ranks. ``sample_dim``: the per-rank shares along that dim are concatenated
    in rank order and cut to the ``n`` probe images; ``None``: ranks are concatenated along dim 0."""
    gathered = trainer.strategy.all_gather(tensor.contiguous())  # (world, *tensor.shape)
    if sample_dim is None:
        return gathered.reshape(-1, *tensor.shape[1:])
    gathered = gathered.movedim(0, sample_dim)  # (..., world, k, ...)
    shape = list(tensor.shape)
    shape[sample_dim] = -1
    return gathered.reshape(shape).narrow(sample_dim, 0, n)


def gather_probe(trainer: Trainer, pl_module: LightningModule, local: Optional[Tensor]) -> Optional[Tensor]:
    """Every rank's captured images, interleaved (rank 0's first, rank 1's first, …), on every rank
    (the caller keeps the first ``num_samples``)."""
    device = pl_module.device
    header = torch.zeros(2 + MAX_BATCH_DIMS, dtype=torch.long, device=device)  # count, ndim, the dims
    if local is not None:
        if local.dim() > MAX_BATCH_DIMS:
            raise ValueError(
                f"InversionCallback: the validation inputs may have at most {MAX_BATCH_DIMS - 1} dimensions besides the "
                f"batch dimension, got a batch of shape {tuple(local.shape)}."
            )
        header[0], header[1] = local.shape[0], local.dim()
        header[2 : 2 + local.dim()] = torch.tensor(local.shape, device=device)
    headers = trainer.strategy.all_gather(header).reshape(-1, 2 + MAX_BATCH_DIMS).cpu()
    counts = headers[:, 0]
    m = int(counts.max())
    if m == 0:
        return None
    ref = headers[int(counts.argmax())]
    shape = tuple(int(d) for d in ref[2 : 2 + int(ref[1])])
    # one dtype on every rank (a rank without images has none to copy): the module's
    dtype = pl_module.dtype if isinstance(pl_module.dtype, torch.dtype) else torch.get_default_dtype()
    buffer = torch.zeros((m, *shape[1:]), device=device, dtype=dtype)
    if local is not None:
        buffer[: local.shape[0]] = local.to(device)
    gathered = trainer.strategy.all_gather(buffer).reshape(-1, m, *shape[1:]).cpu()  # (world, m, ...)
    valid = torch.arange(m).unsqueeze(0) < counts.unsqueeze(1)  # (world, m)
    return gathered.transpose(0, 1).reshape(-1, *shape[1:])[valid.t().reshape(-1)]
