"""Tests of lbinv.operators.affine_map: AffineMap (forward, linear, adjoint, bias, opnorm) of every
supported layer (MATH.md §1)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import lbinv.operators.affine_map as affine_map
from lbinv.lifted import LiftedNetwork
from lbinv.operators import AffineMap
from lbinv.operators.module_ops import ScaleShift
from tests.helpers import (
    ADJ_TOL,
    F64,
    adjoint_error,
    dense_matrix,
    init_module,
    paper_conv_encoder,
    randn,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")


# (factory, in_shape) of every supported layer type, in several configurations.
LAYERS = {
    "linear": (lambda: nn.Linear(7, 5), (7,)),
    "linear-nobias": (lambda: nn.Linear(7, 5, bias=False), (7,)),
    "linear-multidim": (lambda: nn.Linear(6, 4), (3, 6)),
    "conv1d": (lambda: nn.Conv1d(2, 3, 3), (2, 11)),
    "conv1d-s2-p1": (lambda: nn.Conv1d(2, 3, 4, stride=2, padding=1), (2, 11)),
    "conv1d-s3-d2-g2": (lambda: nn.Conv1d(4, 6, 3, stride=3, padding=2, dilation=2, groups=2), (4, 16)),
    "conv1d-same-even": (lambda: nn.Conv1d(2, 3, 4, padding="same"), (2, 9)),
    "conv1d-valid": (lambda: nn.Conv1d(2, 3, 3, padding="valid"), (2, 9)),
    "conv2d": (lambda: nn.Conv2d(2, 3, 3), (2, 8, 8)),
    "conv2d-s2-p1-odd": (lambda: nn.Conv2d(2, 3, 4, stride=2, padding=1), (2, 9, 7)),
    "conv2d-s3-rect": (lambda: nn.Conv2d(2, 4, (3, 2), stride=(3, 2), padding=(1, 0)), (2, 10, 9)),
    "conv2d-dil2-groups": (lambda: nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2), (4, 11, 10)),
    "conv2d-depthwise": (lambda: nn.Conv2d(3, 6, 3, stride=2, groups=3, bias=False), (3, 8, 9)),
    "conv2d-same-even": (lambda: nn.Conv2d(2, 3, (4, 3), padding="same", dilation=(1, 2)), (2, 7, 8)),
    "convT1d": (lambda: nn.ConvTranspose1d(3, 2, 4, stride=2, padding=1), (3, 7)),
    "convT2d": (lambda: nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1), (3, 5, 6)),
    "convT2d-outpad": (lambda: nn.ConvTranspose2d(2, 4, 3, stride=2, padding=1, output_padding=1, groups=2), (2, 5, 4)),
    "convT2d-outpad-ge-stride": (
        lambda: nn.ConvTranspose2d(2, 3, 3, stride=1, padding=1, output_padding=1, dilation=2), (2, 5, 6)),
    "avgpool2d": (lambda: nn.AvgPool2d(2), (2, 8, 8)),
    "avgpool2d-odd": (lambda: nn.AvgPool2d(2), (2, 7, 9)),
    "avgpool2d-k3-s2-p1": (lambda: nn.AvgPool2d(3, stride=2, padding=1), (2, 9, 8)),
    "avgpool2d-divisor": (lambda: nn.AvgPool2d((2, 3), stride=(1, 2), divisor_override=4), (1, 6, 7)),
    "avgpool2d-exclude-pad (vjp)": (lambda: nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False), (2, 7, 8)),
    "avgpool2d-ceil (vjp)": (lambda: nn.AvgPool2d(2, ceil_mode=True), (2, 7, 9)),
    "avgpool1d": (lambda: nn.AvgPool1d(3, stride=2, padding=1), (2, 10)),
    "adaptiveavgpool2d (vjp)": (lambda: nn.AdaptiveAvgPool2d((3, 2)), (2, 7, 5)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 4)),
    "unflatten": (lambda: nn.Unflatten(1, (3, 4)), (12,)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(5), (5,)),
    "batchnorm1d-seq": (lambda: nn.BatchNorm1d(3), (3, 6)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (3, 4, 5)),
    "batchnorm2d-noaffine": (lambda: nn.BatchNorm2d(3, affine=False), (3, 4, 5)),
    "dropout": (lambda: nn.Dropout(0.5), (4, 3)),
    "identity": (lambda: nn.Identity(), (6,)),
    "scale-shift": (lambda: ScaleShift(-2.5, 0.75), (2, 3, 4)),
    "composite": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AvgPool2d(2), nn.Dropout(),
            nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1),
            nn.Flatten(), nn.Linear(2 * 8 * 8, 10), nn.Unflatten(1, (2, 5)),
        ),
        (1, 8, 8),
    ),
}



@pytest.mark.parametrize("name", list(LAYERS))
def test_adjoint_every_layer(name):
    factory, in_shape = LAYERS[name]
    module = init_module(factory())
    A = AffineMap(module, in_shape)
    assert adjoint_error(A) <= ADJ_TOL
    # the adjoint is exactly the transposed matrix
    M = dense_matrix(A)
    m = M.shape[0]
    eye = torch.eye(m, dtype=F64).reshape(m, *A.out_shape)
    # row i of the matrix of A^T e_i is row i of M
    torch.testing.assert_close(A.adjoint(eye).reshape(m, -1), M, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", list(LAYERS))
def test_forward_linear_bias_match_module(name):
    factory, in_shape = LAYERS[name]
    module = init_module(factory())
    A = AffineMap(module, in_shape)
    x = randn(4, *in_shape, seed=3)
    y = module(x)
    assert A.out_shape == tuple(y.shape[1:])
    assert torch.equal(A.forward(x), y)
    # a map without parameters has bias 0 in the default dtype (it has no dtype of its own)
    expected_bias = module(torch.zeros(1, *in_shape, dtype=F64))[0]
    torch.testing.assert_close(A.bias, expected_bias, check_dtype=A.dtype is not None)
    assert A.bias.shape == A.out_shape
    torch.testing.assert_close(A.linear(x) + A.bias, y, rtol=1e-12, atol=1e-12)


def test_conv_adjoint_uses_output_padding():
    # 9x7 input, k=4, s=2, p=1 -> 4x3 output; the plain conv_transpose would give 8x6
    A = AffineMap(init_module(nn.Conv2d(1, 1, 4, 2, 1)), (1, 9, 7))
    assert A.out_shape == (1, 4, 3)
    assert A._ops[0].t_output_padding == (1, 1)
    assert A.adjoint(torch.ones(2, 1, 4, 3, dtype=F64)).shape == (2, 1, 9, 7)


def test_identity_map_and_empty_run():
    A = AffineMap([], (3, 4))
    x = randn(2, 3, 4)
    assert A.out_shape == (3, 4)
    assert torch.equal(A.forward(x), x) and torch.equal(A.adjoint(x), x)
    assert A.opnorm() == 1.0
    assert torch.equal(A.bias, torch.zeros(3, 4))


def test_affine_map_rejects_activation_and_bad_shape():
    with pytest.raises(ValueError, match="ReLU.*not an affine module"):
        AffineMap([nn.Linear(3, 2), nn.ReLU()], (3,))
    A = AffineMap(nn.Linear(3, 2), (3,))
    with pytest.raises(ValueError, match=r"expects a batched tensor of shape \(B, \*\(3,\)\)"):
        A.forward(torch.zeros(3))
    with pytest.raises(ValueError, match=r"adjoint expects .*\(2,\)"):
        A.adjoint(torch.zeros(4, 3))


@pytest.mark.parametrize(
    "name",
    ["linear-multidim", "conv1d-s3-d2-g2", "conv2d-s2-p1-odd", "conv2d-same-even", "convT2d-outpad",
     "avgpool2d-k3-s2-p1", "avgpool2d-ceil (vjp)", "batchnorm2d", "composite"],
)
def test_opnorm_within_one_percent(name):
    factory, in_shape = LAYERS[name]
    A = AffineMap(init_module(factory()), in_shape)
    exact = float(torch.linalg.matrix_norm(dense_matrix(A), ord=2))
    est = A.opnorm()
    assert isinstance(est, float)
    assert abs(est - exact) <= 0.01 * exact
    assert est <= exact * (1 + 1e-10)  # errs on the low side (documented)


def test_opnorm_close_singular_values():
    # a diagonal with a slowly decaying spectrum: power iteration's hard case
    lin = nn.Linear(200, 200, bias=False).double()
    with torch.no_grad():
        lin.weight.copy_(torch.diag(torch.linspace(1.0, 0.9, 200, dtype=F64)))
    est = AffineMap(lin, (200,)).opnorm()
    assert 0.99 <= est <= 1.0 + 1e-12


def test_opnorm_deterministic_and_cached(monkeypatch):
    lin = init_module(nn.Linear(30, 20))
    A = AffineMap(lin, (30,))
    first = A.opnorm()
    assert AffineMap(lin, (30,)).opnorm() == first  # seeded start: deterministic

    def boom(*args, **kwargs):
        raise AssertionError("opnorm was recomputed although nothing changed")

    monkeypatch.setattr(affine_map, "operator_norm", boom)
    assert A.opnorm() == first
    monkeypatch.undo()

    with torch.no_grad():
        lin.weight.mul_(3.0)  # in place: bumps the version counter
    assert A.opnorm() == pytest.approx(3 * first, rel=1e-6)
    exact = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2))
    assert A.opnorm() == pytest.approx(exact, rel=1e-2)


def test_opnorm_and_bias_follow_optimizer_step():
    lin = init_module(nn.Linear(10, 8))
    A = AffineMap(lin, (10,))
    before, bias_before = A.opnorm(), A.bias.clone()
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    lin(randn(5, 10)).square().sum().backward()
    opt.step()
    exact = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2))
    assert A.opnorm() != before
    assert A.opnorm() == pytest.approx(exact, rel=1e-2)
    assert not torch.equal(A.bias, bias_before)
    torch.testing.assert_close(A.bias, lin.bias.detach())


def test_opnorm_is_computed_once_per_weights_across_invert_calls(monkeypatch):
    """``invert(module, …)`` builds a new LiftedNetwork at every call; ‖W‖ is kept per module
    weights (lbinv.operators.cache), also through the Flatten that from_module inserts before a
    perceptron that reads images. An optimiser step, an update in place, or a new weight tensor, is seen."""
    from lbinv import invert

    lin = init_module(nn.Linear(16, 6))
    y = torch.relu(lin(randn(2, 16)))
    calls = []
    original = affine_map.operator_norm
    monkeypatch.setattr(affine_map, "operator_norm", lambda *a, **k: calls.append(1) or original(*a, **k))
    solve = dict(alpha=1e-2, input_shape=(4, 4), max_iter=3)
    for _ in range(3):
        invert(lin, y, **solve)
    assert len(calls) == 1
    opt = torch.optim.SGD(lin.parameters(), lr=0.1)
    lin(randn(5, 16)).square().sum().backward()
    opt.step()
    for _ in range(2):
        invert(lin, y, **solve)
    assert len(calls) == 2
    exact = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2))
    assert LiftedNetwork.from_module(lin, (4, 4)).layers[0].affine.opnorm() == pytest.approx(exact, rel=1e-2)
    with torch.no_grad():
        lin.weight.mul_(2.0)
    assert LiftedNetwork.from_module(lin, (4, 4)).layers[0].affine.opnorm() == pytest.approx(2 * exact, rel=1e-2)
    lin.weight = nn.Parameter(torch.zeros_like(lin.weight))  # a new tensor, not a new version
    assert LiftedNetwork.from_module(lin, (4, 4)).layers[0].affine.opnorm() == 0.0
    assert len(calls) == 4


def test_the_cache_does_not_keep_modules_alive():
    import gc
    import weakref

    from lbinv.operators import cache

    lin = init_module(nn.Linear(12, 5))
    AffineMap(lin, (12,)).opnorm()
    assert lin in cache._STORE
    alive = weakref.ref(lin)
    del lin
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("ctx", ["no_grad", "inference_mode"])
def test_adjoint_without_autograd(ctx):
    """The vjp-based adjoints (and everything else) work for no_grad/inference_mode callers."""
    mods = {
        "ceil": (nn.AvgPool2d(2, ceil_mode=True), (2, 7, 9)),
        "excl": (nn.AvgPool2d(3, 2, 1, count_include_pad=False), (1, 6, 5)),
        "adaptive": (nn.AdaptiveAvgPool2d(3), (2, 7, 7)),
        "conv": (init_module(paper_conv_encoder()[0]), (1, 28, 28)),
        "flatten-linear": (init_module(paper_conv_encoder()[4:]), (16, 7, 7)),
    }
    manager = torch.no_grad if ctx == "no_grad" else torch.inference_mode
    for module, in_shape in mods.values():
        A = AffineMap(module, in_shape)
        y_ref = randn(3, *A.out_shape, seed=7)
        expected = A.adjoint(y_ref)
        A_fresh = AffineMap(module, in_shape)
        with manager():
            y = y_ref.clone()  # created inside: an inference tensor under inference_mode
            got = A_fresh.adjoint(y)
            norm = A_fresh.opnorm()
            err = adjoint_error(A_fresh)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        assert err <= ADJ_TOL
        assert norm == pytest.approx(A.opnorm(), rel=1e-9)


def test_parameters_requiring_grad_leave_no_graph():
    A = AffineMap(init_module(nn.Conv2d(1, 2, 3)), (1, 5, 5))
    assert not A.bias.requires_grad
    A.opnorm()  # must not fail nor build graphs


def test_float32_and_dtype_casting():
    module = init_module(paper_conv_encoder(), dtype=torch.float32)
    net = LiftedNetwork.from_module(module, input_shape=(1, 28, 28))
    assert net.dtype == torch.float32
    for layer in net.layers:
        assert adjoint_error(layer.affine) <= 1e-5
    x = torch.rand(2, 1, 28, 28, dtype=torch.float32)
    assert torch.equal(net(x), module(x))
    # inputs are cast to the parameters' dtype
    net64 = LiftedNetwork.from_module(init_module(paper_conv_encoder()), input_shape=(1, 28, 28))
    assert net64(x).dtype == F64
    assert net64.layers[0].affine.adjoint(torch.rand(2, 8, 14, 14, dtype=torch.float32)).dtype == F64


def test_the_cache_sees_edits_through_data_and_tells_pooling_layers_apart():
    """Edits through ``.data`` bump no version counter: the fingerprint (sum, sum of squares) sees
    them. Maps that share a conv but pool differently (divisor_override) keep their own ‖W‖."""
    lin = init_module(nn.Linear(9, 4))
    A = AffineMap(lin, (9,))
    norm, bias = A.opnorm(), A.bias.clone()
    lin.weight.data.mul_(4.0)
    lin.bias.data.add_(1.0)
    assert A.opnorm() == pytest.approx(4 * norm, rel=1e-6)
    torch.testing.assert_close(A.bias, bias + 1.0)
    conv = init_module(nn.Conv2d(1, 2, 3, padding=1))
    mean = AffineMap([conv, nn.AvgPool2d(2)], (1, 8, 8)).opnorm()
    summed = AffineMap([conv, nn.AvgPool2d(2, divisor_override=1)], (1, 8, 8)).opnorm()
    assert summed == pytest.approx(4 * mean, rel=1e-6)


def test_a_parameter_free_map_keeps_its_norm(monkeypatch):
    pool = AffineMap(nn.AvgPool2d(2), (1, 6, 6))
    first = pool.opnorm()
    monkeypatch.setattr(affine_map, "operator_norm", lambda *a, **k: pytest.fail("recomputed"))
    assert pool.opnorm() == first == pytest.approx(0.5, rel=1e-6)  # ‖W‖ of a 2×2 mean is 1/2
