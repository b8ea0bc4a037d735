"""The inversion callback's probe: a fixed set of validation images, captured once and inverted at
every inversion, identical on every rank and kept in checkpoints."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import Tensor

from lbinv.lightning.callback.ddp import gather_probe

if TYPE_CHECKING:  # either namespace's classes
    from lightning.pytorch import LightningModule, Trainer

__all__ = ["ProbeImages"]


class ProbeImages:
    """The first ``num_samples`` images of the first validation epoch that is not a sanity check.

    Each rank :meth:`capture` s from its validation batches; :meth:`finalize` (a collective) merges
    them into :attr:`images` ``(n, *input_shape)``, on the CPU and the same on every rank.
    """

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples
        self.images: Optional[Tensor] = None
        self._pending: list[Tensor] = []  # captured this epoch, before the probe is final

    def capture(self, x: Tensor) -> None:
        """Keep the images of a validation batch ``x`` this rank still needs."""
        have = sum(part.shape[0] for part in self._pending)
        if self.images is None and have < self.num_samples:
            with torch.inference_mode(False):  # store normal tensors, not inference tensors
                self._pending.append(x[: self.num_samples - have].detach().clone().cpu())

    def forget_pending(self) -> None:
        self._pending = []

    def finalize(self, trainer: Trainer, pl_module: LightningModule) -> Optional[str]:
        """Merge every rank's captured images into :attr:`images` (every rank must call it); returns
        a warning to give when the validation data held fewer than ``num_samples`` images."""
        local = torch.cat(self._pending) if self._pending else None
        self._pending = []
        if trainer.world_size > 1:
            local = gather_probe(trainer, pl_module, local)
        if local is None or local.shape[0] == 0:
            return None
        with torch.inference_mode(False):  # a normal tensor, usable outside inference mode
            self.images = local[: self.num_samples].clone()
        if local.shape[0] < self.num_samples:
            return (
                f"InversionCallback: asked for num_samples={self.num_samples} probe images but the validation data gave "
                f"only {local.shape[0]}; using those."
            )
        return None

    def share(self, world: int, rank: int) -> tuple[Tensor, int]:
        """This rank's images (the last one repeated to fill the last rank's share) and the share size."""
        images = self.images
        assert images is not None
        n = images.shape[0]
        per_rank = math.ceil(n / world)
        padded = torch.cat([images, images[-1:].expand(per_rank * world - n, *images.shape[1:])])
        return padded[rank * per_rank : (rank + 1) * per_rank], per_rank

    def value_range(self) -> Optional[tuple[float, float]]:
        """The images' (min, max) (widened to (lo, lo + 1) for constant images), or None before capture."""
        if self.images is None:
            return None
        lo, hi = float(self.images.min()), float(self.images.max())
        return (lo, hi) if lo < hi else (lo, lo + 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"probe": self.images}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        images = state_dict.get("probe")
        self.images = None if images is None else images.detach().cpu()[: self.num_samples]
        self._pending = []
