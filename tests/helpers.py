"""Helpers the tests share outside the Lightning shell (those are in tests/lightning/helpers.py):
the repository root, seeded generators and tensors, random initialisation of a module, the paper's
encoders, and the adjoint test and dense matrix of an AffineMap."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from lbinv.operators import AffineMap, adjointness_test

F64 = torch.float64
#: the normalised adjoint error every float64 AffineMap must pass
ADJ_TOL = 1e-10
#: the repository root (experiments/, benchmarks/, lbinv/)
REPO = Path(__file__).resolve().parents[1]


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape, seed=0, dtype=F64, device="cpu") -> torch.Tensor:
    return torch.randn(*shape, generator=generator(seed), dtype=dtype).to(device)


def init_module(module: nn.Module, seed: int = 0, dtype=F64) -> nn.Module:
    """Random parameters and BatchNorm running statistics, eval mode, given dtype."""
    torch.manual_seed(seed)
    module = module.to(dtype)
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            with torch.no_grad():
                if m.running_mean is not None:
                    m.running_mean.normal_()
                    m.running_var.uniform_(0.5, 2.0)
                if m.weight is not None:
                    m.weight.normal_()
                    m.bias.normal_()
    return module.eval()


def paper_dense_encoder() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU())


def paper_conv_encoder(final_relu: bool = False) -> nn.Sequential:
    mods = [
        nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(),
        nn.Flatten(), nn.Linear(784, 300),
    ]
    if final_relu:
        mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def adjoint_error(A: AffineMap, batch: int = 3, seed: int = 1) -> float:
    """lbinv's :func:`~lbinv.operators.adjointness_test` of ``A`` on seeded random vectors in its
    dtype and on its device: the largest |<Ax, y> - <x, A^T y>| / (|A| |x| |y|) of the batch."""
    dtype, device = A.dtype or F64, A.device or "cpu"
    x = randn(batch, *A.in_shape, seed=seed, dtype=dtype, device=device)
    y = randn(batch, *A.out_shape, seed=seed + 1, dtype=dtype, device=device)
    return float(adjointness_test(A, x, y).max())


@torch.no_grad()
def dense_matrix(A: AffineMap) -> torch.Tensor:
    """The matrix of the linear part, (m, n), assembled column by column."""
    n = math.prod(A.in_shape)
    eye = torch.eye(n, dtype=A.dtype or F64, device=A.device).reshape(n, *A.in_shape)
    return A.linear(eye).reshape(n, -1).T
