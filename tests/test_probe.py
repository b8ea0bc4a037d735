"""Tests of lbinv.probe without a Trainer: the rules that pick α from a grid (fixed, oracle,
discrepancy principle)."""

from __future__ import annotations

import torch

from lbinv.probe import select_alpha


def test_select_alpha_rules():
    # 2 levels, 3 samples, grid of 3 ascending α
    psnr = torch.tensor([[[10.0, 12.0, 11.0]] * 3, [[9.0, 8.0, 7.0]] * 3])
    residual = torch.tensor([[[0.1, 0.2, 0.3]] * 3, [[0.1, 0.5, 0.9]] * 3])
    delta = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    assert select_alpha("fixed", psnr, residual, delta).tolist() == [0, 0]
    assert select_alpha("oracle", psnr, residual, delta).tolist() == [1, 0]
    # σ = 0 → smallest α; level 1: residual 0.5 ≤ η·δ = 0.5 → index 1, 0.9 > 0.5
    assert select_alpha("discrepancy", psnr, residual, delta).tolist() == [0, 1]
    assert select_alpha("discrepancy", psnr, residual, delta, eta=2.0).tolist() == [0, 2]
    assert select_alpha("discrepancy", psnr, residual, delta, eta=0.1).tolist() == [0, 0]
    broken = residual.clone()
    broken[1, 0, 1] = float("nan")  # a NaN never satisfies the discrepancy test
    assert select_alpha("discrepancy", psnr, broken, delta).tolist() == [0, 0]
    psnr_nan = psnr.clone()
    psnr_nan[0, :, 1] = float("nan")
    assert select_alpha("oracle", psnr_nan, residual, delta).tolist() == [2, 0]
