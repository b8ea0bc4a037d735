"""lbinv.lightning.callback.ddp with a one-process stand-in for the trainer's strategy (the real
two-process run is tests/lightning/test_callback.py::test_ddp_two_cpu_processes)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lbinv.lightning.callback.ddp import MAX_BATCH_DIMS, gather, gather_probe


def one_process():
    """A trainer and module of world size 1: all_gather stacks this rank's tensor on a new dim 0."""
    trainer = SimpleNamespace(strategy=SimpleNamespace(all_gather=lambda t: t.unsqueeze(0)))
    return trainer, SimpleNamespace(device=torch.device("cpu"), dtype=torch.float32)


def test_gather_probe_takes_inputs_of_up_to_six_dimensions_besides_the_batch():
    trainer, module = one_process()
    local = torch.rand(2, *[1] * (MAX_BATCH_DIMS - 2), 3)  # batch + 6 dimensions
    torch.testing.assert_close(gather_probe(trainer, module, local), local)
    assert gather_probe(trainer, module, None) is None
    too_deep = local.unsqueeze(-1)
    with pytest.raises(ValueError, match=r"at most 6 dimensions besides the batch dimension, got a batch of shape \(2, 1, 1, 1, 1, 1, 3, 1\)"):
        gather_probe(trainer, module, too_deep)


def test_gather_cuts_the_padded_shares_to_the_probe():
    trainer, _ = one_process()
    share = torch.arange(12.0).reshape(2, 3, 2)  # (levels, k = 3 images with one padding, …)
    torch.testing.assert_close(gather(trainer, share, n=2, sample_dim=1), share[:, :2])
    torch.testing.assert_close(gather(trainer, torch.ones(1), n=2, sample_dim=None), torch.ones(1))
