"""Tests of lbinv.operators.graph_ops: the window entries of max pooling, a value's place in a
concatenation and the linear part of an op — forward against torch, adjoints to 1e-10."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from lbinv.operators import AffineMap, affine_op
from lbinv.operators.graph_ops import Embed, EmbedOp, GatherOp, LinearPartOp, pooling_windows
from tests.helpers import F64, adjoint_error, init_module, randn

ADJ_TOL = 1e-10


def _map(op, in_shape) -> AffineMap:
    return AffineMap.from_ops([op], in_shape, [])


@settings(max_examples=40, deadline=None)
@given(
    kernel=st.integers(1, 4), stride=st.integers(1, 3), dilation=st.integers(1, 2), ceil_mode=st.booleans(),
    size=st.tuples(st.integers(4, 9), st.integers(4, 9)), two_d=st.booleans(), data=st.data(),
)
def test_the_maximum_over_the_window_entries_is_max_pooling(kernel, stride, dilation, ceil_mode, size, two_d, data):
    padding = data.draw(st.integers(0, kernel // 2), label="padding")
    pool_type, shape = (nn.MaxPool2d, (2, *size)) if two_d else (nn.MaxPool1d, (2, size[0]))
    assume((kernel - 1) * dilation + 1 <= min(shape[1:]) + 2 * padding)  # torch refuses a larger window
    pool = pool_type(kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    x = randn(3, *shape, seed=kernel * 7 + stride)
    entries = torch.stack([g(x) for g in pooling_windows(pool, shape)])
    assert torch.equal(entries.amax(dim=0), pool(x))


@pytest.mark.parametrize("pool", [nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1), nn.MaxPool2d((2, 3), (1, 2), (1, 1), ceil_mode=True), nn.MaxPool1d(3, 2, 1)])
def test_window_gather_adjoint(pool):
    shape = (3, 7, 8) if isinstance(pool, nn.MaxPool2d) else (3, 9)
    for gather in pooling_windows(pool, shape):
        assert adjoint_error(_map(GatherOp(gather, "gather"), shape)) <= ADJ_TOL


@pytest.mark.parametrize(("dim", "shape"), [(0, (3, 4, 5)), (1, (3, 4, 5)), (2, (3, 4, 5)), (0, (6,))])
def test_embed_is_one_part_of_a_concatenation(dim, shape):
    other = list(shape)
    other[dim] = 2
    x, z = randn(2, *shape, seed=1), randn(2, *other, seed=2)
    total = shape[dim] + 2
    first, second = Embed(dim, 0, total), Embed(dim, shape[dim], total)
    assert torch.equal(first(x) + second(z), torch.cat([x, z], dim=dim + 1))
    assert adjoint_error(_map(EmbedOp(first, "embed"), shape)) <= ADJ_TOL
    assert adjoint_error(_map(EmbedOp(second, "embed"), tuple(other))) <= ADJ_TOL


def test_linear_part_drops_the_bias_only():
    conv = init_module(nn.Conv2d(2, 3, 3, stride=2, padding=1))
    shape = (2, 7, 6)
    whole, part = _map(affine_op(conv, "conv"), shape), _map(LinearPartOp(affine_op(conv, "conv")), shape)
    x = randn(2, *shape, seed=3)
    torch.testing.assert_close(part.forward(x), F.conv2d(x, conv.weight, None, 2, 1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(part.bias, torch.zeros_like(whole.bias))
    assert adjoint_error(part) <= ADJ_TOL
    assert part.opnorm() == pytest.approx(whole.opnorm(), rel=1e-6)
    # the cache tells the two apart: the bias of one is not served for the other
    assert float(whole.bias.abs().max()) > 0 and part.bias.dtype == F64
