"""Tests of lbinv.operators.conv_polyphase (the speed paths of issue 10): the polyphase Conv2d
adjoint computes what conv_transpose2d computes, passes the adjoint test, follows weight updates,
and is chosen by conv_adjoint("auto") where it is faster."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbinv.operators import AffineMap, adjointness_test, conv_adjoint
from lbinv.operators.conv_polyphase import PolyphaseConvAdjoint
from tests.helpers import F64

CONVS = {
    "paper-1": (lambda: nn.Conv2d(1, 8, 4, 2, 1), (1, 28, 28)),
    "paper-2": (lambda: nn.Conv2d(8, 16, 4, 2, 1), (8, 14, 14)),
    "stride1": (lambda: nn.Conv2d(2, 3, 3), (2, 8, 8)),
    "odd-size": (lambda: nn.Conv2d(2, 3, 4, stride=2, padding=1), (2, 9, 7)),
    "rect-stride": (lambda: nn.Conv2d(2, 4, (3, 2), stride=(3, 2), padding=(1, 0)), (2, 10, 9)),
    "same-even": (lambda: nn.Conv2d(2, 3, (4, 3), padding="same"), (2, 7, 8)),
    "big-padding": (lambda: nn.Conv2d(2, 3, 5, stride=3, padding=4), (2, 11, 13)),
    "1x1-stride2": (lambda: nn.Conv2d(3, 2, 1, stride=2), (3, 9, 8)),
    "stride-above-kernel": (lambda: nn.Conv2d(2, 2, 2, stride=4), (2, 10, 11)),
}


def _map(name: str, dtype=F64) -> AffineMap:
    factory, shape = CONVS[name]
    torch.manual_seed(0)
    return AffineMap(factory().to(dtype).eval(), shape)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("name", list(CONVS))
@torch.no_grad()
def test_polyphase_adjoint_equals_conv_transpose_and_passes_the_adjoint_test(name):
    A = _map(name)
    assert A._ops[0].polyphase is not None
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *A.in_shape, generator=g, dtype=F64)
    y = torch.randn(3, *A.out_shape, generator=g, dtype=F64)
    with conv_adjoint("transpose"):
        reference = A.adjoint(y)
    with conv_adjoint("polyphase"):
        got = A.adjoint(y)
        assert float(adjointness_test(A, x, y).max()) <= 1e-10
    assert got.shape == reference.shape
    torch.testing.assert_close(got, reference, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 700])  # below and above the strided-interleave threshold
def test_auto_uses_polyphase_for_float32_on_the_cpu(batch, monkeypatch):
    A = _map("paper-2", torch.float32)
    y = torch.randn(batch, *A.out_shape)
    calls = []
    original = PolyphaseConvAdjoint.__call__
    monkeypatch.setattr(PolyphaseConvAdjoint, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    got = A.adjoint(y)  # "auto" outside any conv_adjoint block
    assert calls, "auto should take the polyphase path for float32 on the CPU"
    with conv_adjoint("transpose"):
        torch.testing.assert_close(got, A.adjoint(y), rtol=1e-5, atol=1e-5)
    calls.clear()
    A64 = _map("paper-2")
    A64.adjoint(y.double())
    assert not calls, "float64 keeps conv_transpose2d (faster there)"


@conv_adjoint("polyphase")
@torch.no_grad()  # where the kernel is cached (with a gradient to track it is rebuilt at every call)
def test_polyphase_kernel_follows_weight_updates():
    A = _map("paper-1")
    y = torch.randn(2, *A.out_shape, dtype=F64)
    first = A.adjoint(y)
    assert A._ops[0].polyphase._cache is not None
    A.modules[0].weight.mul_(-2.0)  # in place: a new version, the cached kernel is stale
    torch.testing.assert_close(A.adjoint(y), -2.0 * first)
    A.modules[0].weight = nn.Parameter(torch.ones_like(A.modules[0].weight))  # a new tensor
    with conv_adjoint("transpose"):
        expected = A.adjoint(y)
    torch.testing.assert_close(A.adjoint(y), expected)


def test_conv_adjoint_refuses_an_unknown_mode_and_restores_the_previous_one():
    A = _map("paper-1", torch.float32)
    y = torch.randn(2, *A.out_shape)
    with pytest.raises(ValueError, match="mode: expected one of .*'polyphase'.*got 'fast'"), conv_adjoint("fast"):
        pass
    with conv_adjoint("transpose"):
        with conv_adjoint("polyphase"):
            A.adjoint(y)
        reference = A.adjoint(y)  # the outer mode again: conv_transpose2d
    torch.testing.assert_close(reference, torch.nn.functional.conv_transpose2d(
        y, A.modules[0].weight, None, 2, 1, output_padding=0), rtol=0, atol=0)


def test_polyphase_adjoint_is_differentiable_and_works_in_inference_mode():
    A = _map("paper-1")
    with conv_adjoint("polyphase"):
        y = torch.randn(2, *A.out_shape, dtype=F64, requires_grad=True)
        A.adjoint(y).square().sum().backward()  # through y and the weight
        assert y.grad is not None and A.modules[0].weight.grad is not None
        with torch.inference_mode():
            y_inf = torch.randn(2, *A.out_shape, dtype=F64)
            out = A.adjoint(y_inf)
    with torch.no_grad(), conv_adjoint("transpose"):
        torch.testing.assert_close(out, A.adjoint(y_inf))
