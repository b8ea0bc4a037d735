"""Tests of lbinv.probe without a Trainer: the rules that pick α from a grid (fixed, oracle,
discrepancy principle), the local search of α="auto" and its warm starts, and invert_probe's α
columns and starting points."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch
from torch import nn

from lbinv import LiftedNetwork, invert
from lbinv.alpha_search import SEARCH_GRID, AlphaSearch, WarmStarts
from lbinv.probe import ProbeResult, invert_probe, level_numbers, select_alpha, start_objective, summarize
from lbinv.regularizers import TotalVariation


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


def test_summarize_reduces_each_field_as_it_declares():
    """Level 0 (oracle α: column 1): the per-sample numbers average images 0 and 1 only (image 2's
    inversion is not finite: failed), bregman_sym leaves its NaN out; the per-code numbers average the
    level's codes (δ² of the squares). Level 1 solved nothing: not inverted, no per-sample numbers."""
    nan = math.nan
    x_inv = torch.zeros(2, 3, 2, 1, 2, 2)
    x_inv[0, 2, 1] = nan
    level1 = [[nan, nan]] * 3
    out = ProbeResult(
        x_inv=x_inv,
        psnr_inv=torch.tensor([[[10.0, 20.0], [12.0, 22.0], [14.0, 24.0]], level1]),
        residual=torch.zeros(2, 3, 2),
        iterations=torch.tensor([[[1.0, 5.0], [1.0, 7.0], [1.0, 100.0]], level1]),
        converged=torch.tensor([[[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]], level1]),
        solved=torch.tensor([[[1.0, 1.0]] * 3, [[0.0, 0.0]] * 3]),
        bregman_sym=torch.tensor([[[nan, 0.1], [nan, nan], [nan, 0.3]], level1]),
        delta=torch.tensor([[3.0, 4.0, 0.0], [1.0, 1.0, 1.0]]),
        bregman_delta=torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]]),
        seconds=torch.tensor([0.5]),
        x_dec=torch.zeros(2, 3, 1, 2, 2),
        psnr_dec=torch.tensor([[5.0, nan, 7.0], [1.0, 1.0, 1.0]]),
    )
    alphas = torch.tensor([[1e-3, 1e-2], [1e-3, 1e-2]], dtype=torch.float64)
    summary = summarize(out, alphas, (0.0, 0.1), "oracle", 1.0)
    assert summary.index.tolist() == [1, 0] and summary.seconds == 0.5
    assert summary.failed.tolist() == [[False, False, True], [False] * 3]
    assert summary.finite.tolist() == [[True, True, False], [False] * 3]
    expected = {"sigma": 0.0, "inverted": True, "alpha": 1e-2, "psnr_inverted": 21.0, "iterations": 6.0,
                "converged_fraction": 0.5, "bregman_sym": 0.1, "delta2": 25 / 3, "delta2_bregman": 2.0, "psnr_decoded": 6.0}
    assert summary.levels[0] == pytest.approx(expected)
    assert summary.levels[1] == pytest.approx({"sigma": 0.1, "inverted": False, "alpha": None, "psnr_inverted": None,
                                               "iterations": None, "converged_fraction": None, "bregman_sym": None,
                                               "delta2": 1.0, "delta2_bregman": 0.0, "psnr_decoded": 1.0})
    assert set(level_numbers()) == set(expected) - {"sigma", "inverted"}
    assert set(level_numbers(decoder=False)) == set(expected) - {"sigma", "inverted", "psnr_decoded"}


# ---------------------------------------------------------------------- α="auto": the local search
def test_alpha_search_columns_and_counts_at_the_grid_ends():
    search = AlphaSearch(levels=2, grid=(1e-3, 1e-2, 1e-1), start=1e-2)
    search.index = torch.tensor([0, 1])
    alphas = search.alphas()
    assert torch.isnan(alphas[0, 1]) and alphas[0, [0, 2]].tolist() == [1e-3, 1e-2]  # no lower neighbour
    assert alphas[1].tolist() == [1e-2, 1e-3, 1e-1]
    assert search.counts(8, 2).tolist() == [[8, 0, 2], [8, 2, 2]]
    assert search.counts(8, 2, levels=torch.tensor([False, True])).tolist() == [[0, 0, 0], [8, 2, 2]]


def test_alpha_search_compares_the_columns_on_the_images_they_share():
    """Column 0 solved every image, the neighbours the first two: only those two count, so the
    current α's great PSNR on the other images does not keep it; a tie keeps it; NaN loses."""
    search = AlphaSearch(levels=3, grid=(1e-3, 1e-2, 1e-1), start=1e-2)
    nan = math.nan
    psnr = torch.tensor([
        [[20.0, 21.0, 22.0], [20.0, 21.0, 22.0], [40.0, nan, nan], [40.0, nan, nan]],  # higher α wins on images 0, 1
        [[20.0, 20.0, 19.0], [20.0, 20.0, 19.0], [40.0, nan, nan], [40.0, nan, nan]],  # tie with the lower: stay
        [[20.0, nan, 25.0], [20.0, 30.0, 25.0], [40.0, nan, nan], [40.0, nan, nan]],  # a NaN result counts as -inf
    ])
    solved = torch.tensor([[1.0, 1.0, 1.0]] * 2 + [[1.0, 0.0, 0.0]] * 2).expand(3, 4, 3)
    assert search.best(psnr, solved).tolist() == [2, 0, 2]
    search.move(torch.tensor([2, 0, 1]))
    assert search.alphas()[:, 0].tolist() == [1e-1, 1e-2, 1e-3]


def test_alpha_search_stride_doubles_on_repeated_moves_and_halves_on_a_stay():
    search = AlphaSearch(levels=1, grid=tuple(range(1, 30)), start=20)
    path = []
    for column in (1, 1, 1, 1, 0, 0, 2):
        search.move(torch.tensor([column]))
        path.append((int(search.index), int(search.stride)))
    i = 19  # grid value 20
    assert path == [(i - 1, 1), (i - 2, 2), (i - 4, 4), (i - 8, 4), (i - 8, 2), (i - 8, 1), (i - 7, 1)]
    assert search.alphas()[0].tolist() == [13.0, 12.0, 14.0]
    search.index[:] = 1
    search.stride[:] = 4
    assert search.alphas()[0].tolist() == [2.0, 1.0, 6.0]  # the lower neighbour stops at the grid's end
    search.index[:] = 0
    assert math.isnan(search.alphas()[0, 1])  # none below the first value


def test_alpha_search_climbs_to_the_grid_maximum_and_stays():
    """On a PSNR that peaks at α* = 3e-5, the search walks from 1e-3 to the grid value nearest α*
    (one step per inversion) and stays there."""
    search = AlphaSearch(levels=1, start=1e-3)
    target = min(SEARCH_GRID, key=lambda a: abs(math.log(a / 3e-5)))
    for _ in range(12):
        a = search.alphas()
        psnr = (30.0 - (torch.log(a / 3e-5)) ** 2).reshape(1, 1, 3).expand(1, 2, 3)
        search.move(search.best(psnr, torch.ones(1, 2, 3)))
    assert search.alphas()[0, 0].item() == target


def test_warm_starts_take_the_nearest_alpha_per_image():
    warm = WarmStarts(levels=1)
    assert warm.starts(torch.tensor([[1e-3]], dtype=torch.float64), torch.arange(3)) is None
    x = torch.arange(3.0).reshape(3, 1, 1, 1)  # image i holds value i
    out = torch.stack([x, x + 10.0], dim=1).unsqueeze(0)  # (1 level, 3 images, 2 columns, 1, 1, 1)
    solved = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]])  # the second α has no image 2
    out[0, 1, 1] = math.nan  # nor a finite image 1
    warm.update(torch.tensor([[1e-3, 2e-3]], dtype=torch.float64), out, solved)
    starts = warm.starts(torch.tensor([[1.9e-3, 1e-2]], dtype=torch.float64), torch.tensor([0, 1, 2, 2]))
    # nearest to 1.9e-3 is 2e-3 (image 0 only), then 1e-3; the same order for 1e-2
    assert starts[0, :, 0].flatten().tolist() == [10.0, 1.0, 2.0, 2.0]
    assert starts[0, :, 1].flatten().tolist() == [10.0, 1.0, 2.0, 2.0]
    restored = WarmStarts(levels=1)
    restored.load_state_dict(warm.state_dict())
    torch.testing.assert_close(restored.starts(torch.tensor([[1e-3]], dtype=torch.float64), torch.arange(3)),
                               warm.starts(torch.tensor([[1e-3]], dtype=torch.float64), torch.arange(3)))


# ---------------------------------------------------------------------- invert_probe: columns and starts
def _one_layer():
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(36, 10), nn.ReLU()).double()
    decoder = nn.Sequential(nn.Linear(10, 36), nn.Sigmoid(), nn.Unflatten(1, (1, 6, 6))).double()
    x = torch.rand(3, 1, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    return encoder, decoder, x


def test_invert_probe_solves_the_counted_columns_from_the_decoder_or_the_warm_start():
    encoder, decoder, x = _one_layer()
    seen = []

    def solve(net, data, **kwargs):
        seen.append((data.clone(), kwargs["x_init"].clone(), kwargs["alpha"].clone()))
        return invert(net, data, max_iter=5, bounds=(0.0, 1.0), **kwargs)

    alphas = torch.tensor([[1e-2, 2e-2], [3e-2, 4e-2]], dtype=torch.float64)
    counts = torch.tensor([[3, 1], [0, 0]])  # level 0: all images at 1e-2, image 0 at 2e-2; level 1 off
    common = dict(noise_levels=(0.0, 0.1), alphas=alphas, seed=0, offset=0, n=3, data_range=(0.0, 1.0), solve=solve, counts=counts)
    with torch.no_grad():
        out = invert_probe(encoder, decoder, x, start="decoder", **common)
        data, x0, alpha = seen[-1]
        assert out.solved[0].tolist() == [[1, 1], [1, 0], [1, 0]] and not out.solved[1].any()
        assert torch.isnan(out.psnr_inv[1]).all() and torch.isnan(out.psnr_inv[0, 1:, 1]).all()
        assert torch.isfinite(out.psnr_inv[0, :, 0]).all() and torch.isfinite(out.psnr_dec).all()
        assert alpha.tolist() == [1e-2, 2e-2, 1e-2, 1e-2]  # (level, image, column) in order
        torch.testing.assert_close(data, encoder(x)[[0, 0, 1, 2]])  # σ = 0: the clean codes
        torch.testing.assert_close(x0, decoder(encoder(x))[[0, 0, 1, 2]].clamp(0.0, 1.0))
        warm = torch.full((2, 3, 2, 1, 6, 6), math.nan, dtype=torch.float64)
        warm[0, 1, 0] = 0.25  # one sample has a warm start; the others start from the decoder
        invert_probe(encoder, decoder, x, start="decoder", x_init=warm, **common)
        x0 = seen[-1][1]
        assert (x0[2] == 0.25).all()
        torch.testing.assert_close(x0[[0, 1, 3]], decoder(encoder(x))[[0, 0, 2]].clamp(0.0, 1.0))
        invert_probe(encoder, decoder, x, start="zeros", x_init=warm, **common)
        assert (seen[-1][1][[0, 1, 3]] == 0).all()


def test_final_rounds_of_the_search_find_the_grid_best_of_a_cold_solve():
    """The callback's final inversion (rounds of the three columns to tol, warm-started) ends at the
    α that a cold solve of every grid value calls best on the neighbours' images (at σ = 0.05), or
    within 0.05 dB of it."""
    encoder, decoder, x = _one_layer()
    solve = partial(invert, max_iter=2000, tol=1e-7)
    common = dict(noise_levels=(0.05,), seed=3, offset=0, n=3, data_range=(0.0, 1.0), solve=solve)
    grid = SEARCH_GRID[6:15]  # 1e-4 … 1e-1
    search, warm = AlphaSearch(levels=1, grid=grid, start=1e-2), WarmStarts(levels=1)
    with torch.no_grad():
        for _ in range(len(grid)):
            alphas = search.alphas()
            out = invert_probe(encoder, decoder, x, alphas=alphas, counts=search.counts(3, 1),
                               x_init=warm.starts(alphas, torch.arange(3)), start="decoder", **common)
            warm.update(alphas, out.x_inv, out.solved)
            column = search.best(out.psnr_inv, out.solved)
            if column.item() == 0:
                break
            search.move(column)
        cold = invert_probe(encoder, decoder, x, alphas=torch.tensor([grid], dtype=torch.float64),
                            counts=torch.tensor([[1] * len(grid)]), start="zeros", **common)
    scores = cold.psnr_inv[0, 0]  # image 0: the neighbours' image
    chosen = grid.index(search.alphas()[0, 0].item())
    assert scores[chosen] >= scores.max() - 0.05, (chosen, scores.tolist())


def test_a_warm_start_is_kept_only_where_it_explains_the_code_better_than_the_decoder():
    """The encoder trains between inversions, so the last solution can be worse than the decoder's
    output at the new weights: invert_probe keeps it where the lifted objective (hidden variables by a
    forward pass) is at most the decoder start's, and compares with start_objective's values."""
    encoder, decoder, x = _one_layer()
    seen = []

    def solve(net, data, **kwargs):
        seen.append(kwargs["x_init"].clone())
        return invert(net, data, max_iter=1, bounds=(0.0, 1.0), **kwargs)

    alphas, counts = torch.tensor([[1e-9]], dtype=torch.float64), torch.tensor([[3]])  # TV barely counts
    with torch.no_grad():
        decoded = decoder(encoder(x)).clamp(0.0, 1.0)
        warm = torch.stack([decoded[0], x[1], torch.rand(1, 6, 6, dtype=torch.float64)]).reshape(1, 3, 1, 1, 6, 6)
        invert_probe(encoder, decoder, x, noise_levels=(0.0,), alphas=alphas, seed=0, offset=0, n=3, data_range=(0.0, 1.0),
                     solve=solve, counts=counts, x_init=warm, start="decoder")
        net = LiftedNetwork.from_module(encoder, (1, 6, 6))
        tv, y, a = TotalVariation(), encoder(x), torch.full((3,), 1e-9, dtype=torch.float64)
        f_warm = start_objective(net, warm.reshape(3, 1, 6, 6), y, a, tv, (0.0, 1.0))
        f_decoded = start_objective(net, decoded, y, a, tv, (0.0, 1.0))
    keep = (f_warm <= f_decoded).tolist()
    assert keep[:2] == [True, True] and not keep[2]  # a tie keeps it; the truth fits the code; noise does not
    expected = torch.where(torch.tensor(keep).reshape(3, 1, 1, 1), warm.reshape(3, 1, 6, 6), decoded)
    torch.testing.assert_close(seen[0], expected)
    assert f_warm[1] < f_decoded[1]  # the true image: a better start than the decoder's
