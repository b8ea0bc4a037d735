"""Tests of lbinv.lifted: AffineMap (forward, linear, adjoint, bias, opnorm) and
LiftedNetwork.from_module (MATH.md §1, §9)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import lbinv.operators.affine_map as affine_map
from lbinv.lifted import LiftedLayer, LiftedNetwork
from lbinv.operators import AffineMap, operator_norm
from lbinv.proximal import IDENTITY, ProxActivation

F64 = torch.float64
ADJ_TOL = 1e-10

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")




# ------------------------------------------------------------------------------ helpers


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, dtype=F64, device="cpu"):
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype).to(device)


def _init(module: nn.Module, seed: int = 0, dtype=F64) -> nn.Module:
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


@torch.no_grad()
def adjoint_error(A: AffineMap, batch: int = 3, seed: int = 1) -> float:
    """max over the batch of |<Ax, y> - <x, A^T y>| / (|A| |x| |y|)."""
    dtype = A.dtype or F64
    x = _randn(batch, *A.in_shape, seed=seed, dtype=dtype, device=A.device or "cpu")
    y = _randn(batch, *A.out_shape, seed=seed + 1, dtype=dtype, device=A.device or "cpu")
    ax, aty = A.linear(x), A.adjoint(y)
    assert ax.shape == (batch, *A.out_shape)
    assert aty.shape == (batch, *A.in_shape)
    lhs = (ax * y).flatten(1).sum(1)
    rhs = (x * aty).flatten(1).sum(1)
    scale = A.opnorm() * x.flatten(1).norm(dim=1) * y.flatten(1).norm(dim=1)
    return float(((lhs - rhs).abs() / scale).max())


@torch.no_grad()
def dense_matrix(A: AffineMap) -> torch.Tensor:
    """The matrix of the linear part, (m, n), assembled column by column."""
    n = math.prod(A.in_shape)
    eye = torch.eye(n, dtype=A.dtype or F64, device=A.device).reshape(n, *A.in_shape)
    return A.linear(eye).reshape(n, -1).T


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
    "composite": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.AvgPool2d(2), nn.Dropout(),
            nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1),
            nn.Flatten(), nn.Linear(2 * 8 * 8, 10), nn.Unflatten(1, (2, 5)),
        ),
        (1, 8, 8),
    ),
}


# ------------------------------------------------------------------------------ AffineMap


@pytest.mark.parametrize("name", list(LAYERS))
def test_adjoint_every_layer(name):
    factory, in_shape = LAYERS[name]
    module = _init(factory())
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
    module = _init(factory())
    A = AffineMap(module, in_shape)
    x = _randn(4, *in_shape, seed=3)
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
    A = AffineMap(_init(nn.Conv2d(1, 1, 4, 2, 1)), (1, 9, 7))
    assert A.out_shape == (1, 4, 3)
    assert A._ops[0].t_output_padding == (1, 1)
    assert A.adjoint(torch.ones(2, 1, 4, 3, dtype=F64)).shape == (2, 1, 9, 7)


def test_identity_map_and_empty_run():
    A = AffineMap([], (3, 4))
    x = _randn(2, 3, 4)
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
    A = AffineMap(_init(factory()), in_shape)
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
    lin = _init(nn.Linear(30, 20))
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
    lin = _init(nn.Linear(10, 8))
    A = AffineMap(lin, (10,))
    before, bias_before = A.opnorm(), A.bias.clone()
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    lin(_randn(5, 10)).square().sum().backward()
    opt.step()
    exact = float(torch.linalg.matrix_norm(lin.weight.detach(), ord=2))
    assert A.opnorm() != before
    assert A.opnorm() == pytest.approx(exact, rel=1e-2)
    assert not torch.equal(A.bias, bias_before)
    torch.testing.assert_close(A.bias, lin.bias.detach())


def test_operator_norm_function():
    M = _randn(6, 9, seed=5)
    est = operator_norm(lambda v: v @ M.T, lambda w: w @ M, (9,), dtype=F64)
    assert est == pytest.approx(float(torch.linalg.matrix_norm(M, ord=2)), rel=1e-6)
    assert operator_norm(lambda v: 0 * v[:, :2], lambda w: torch.zeros(w.shape[0], 9, dtype=F64), (9,)) == 0.0


@pytest.mark.parametrize("ctx", ["no_grad", "inference_mode"])
def test_adjoint_without_autograd(ctx):
    """The vjp-based adjoints (and everything else) work for no_grad/inference_mode callers."""
    mods = {
        "ceil": (nn.AvgPool2d(2, ceil_mode=True), (2, 7, 9)),
        "excl": (nn.AvgPool2d(3, 2, 1, count_include_pad=False), (1, 6, 5)),
        "adaptive": (nn.AdaptiveAvgPool2d(3), (2, 7, 7)),
        "conv": (_init(paper_conv_encoder()[0]), (1, 28, 28)),
        "flatten-linear": (_init(paper_conv_encoder()[4:]), (16, 7, 7)),
    }
    manager = torch.no_grad if ctx == "no_grad" else torch.inference_mode
    for module, in_shape in mods.values():
        A = AffineMap(module, in_shape)
        y_ref = _randn(3, *A.out_shape, seed=7)
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
    A = AffineMap(_init(nn.Conv2d(1, 2, 3)), (1, 5, 5))
    assert not A.bias.requires_grad
    A.opnorm()  # must not fail nor build graphs


def test_float32_and_dtype_casting():
    module = _init(paper_conv_encoder(), dtype=torch.float32)
    net = LiftedNetwork.from_module(module, input_shape=(1, 28, 28))
    assert net.dtype == torch.float32
    for layer in net.layers:
        assert adjoint_error(layer.affine) <= 1e-5
    x = torch.rand(2, 1, 28, 28, dtype=torch.float32)
    assert torch.equal(net(x), module(x))
    # inputs are cast to the parameters' dtype
    net64 = LiftedNetwork.from_module(_init(paper_conv_encoder()), input_shape=(1, 28, 28))
    assert net64(x).dtype == F64
    assert net64.layers[0].affine.adjoint(torch.rand(2, 8, 14, 14, dtype=torch.float32)).dtype == F64


# ------------------------------------------------------------------------------ LiftedNetwork


@pytest.mark.parametrize("encoder", ["dense", "conv", "conv-relu"])
def test_paper_encoders_round_trip_and_adjoints(encoder):
    if encoder == "dense":
        module, n_layers, acts = _init(paper_dense_encoder()), 1, ["ReLU"]
    else:
        module = _init(paper_conv_encoder(final_relu=encoder == "conv-relu"))
        n_layers, acts = 3, ["ReLU", "ReLU", "ReLU" if encoder == "conv-relu" else None]
    net = LiftedNetwork.from_module(module, input_shape=(1, 28, 28))
    assert len(net) == n_layers
    assert net.input_shape == (1, 28, 28)
    assert net.output_shape == ((100,) if encoder == "dense" else (300,))
    for layer, act in zip(net.layers, acts):
        assert isinstance(layer, LiftedLayer)
        assert isinstance(layer.activation, ProxActivation)
        if act is None:
            assert layer.activation is IDENTITY
        assert adjoint_error(layer.affine) <= ADJ_TOL
        exact = float(torch.linalg.matrix_norm(dense_matrix(layer.affine), ord=2))
        assert abs(layer.affine.opnorm() - exact) <= 0.01 * exact
    if encoder != "dense":
        assert [ly.affine.out_shape for ly in net.layers] == [(8, 14, 14), (16, 7, 7), (300,)]
    x = torch.rand(5, 1, 28, 28, generator=_gen(2), dtype=F64)
    assert torch.equal(net(x), module(x))
    outs = net.forward_all(x)
    assert len(outs) == n_layers and torch.equal(outs[-1], net(x))
    if encoder != "dense":
        assert torch.equal(outs[0], module[:2](x))
        assert torch.equal(outs[1], module[:4](x))


def test_round_trip_leaky_avgpool_batchnorm_stack():
    module = _init(nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1),
        nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, stride=2), nn.BatchNorm2d(6), nn.LeakyReLU(0.3),
        nn.Dropout(0.2), nn.Flatten(), nn.Linear(6 * 2 * 2, 10),
    ))
    net = LiftedNetwork.from_module(module, input_shape=(1, 12, 12))
    assert len(net) == 3
    assert [len(ly.affine._ops) for ly in net.layers] == [2, 3, 3]
    x = _randn(4, 1, 12, 12, seed=9)
    torch.testing.assert_close(net(x), module(x), rtol=0, atol=0)
    for layer in net.layers:
        assert adjoint_error(layer.affine) <= ADJ_TOL


def test_nested_sequential_and_activation_first():
    module = _init(nn.Sequential(
        nn.Sigmoid(),
        nn.Sequential(nn.Linear(6, 5), nn.Sequential(nn.Tanh())),
        nn.Sequential(nn.Linear(5, 4)),
    ))
    net = LiftedNetwork.from_module(module)  # (6,) inferred from the first Linear
    assert net.input_shape == (6,)
    assert len(net) == 3
    first = net.layers[0].affine
    assert first.in_shape == first.out_shape == (6,) and first.opnorm() == 1.0
    assert net.layers[-1].activation is IDENTITY
    x = _randn(3, 6)
    assert torch.equal(net(x), module(x))


def test_single_linear_perceptron_reads_images_flattened():
    lin = _init(nn.Linear(64, 16))
    net = LiftedNetwork.from_module(lin, input_shape=(8, 8))
    assert len(net) == 1 and net.layers[0].activation is IDENTITY
    assert net.input_shape == (8, 8) and net.output_shape == (16,)
    x = _randn(3, 8, 8)
    assert torch.equal(net(x), lin(x.flatten(1)))
    assert adjoint_error(net.layers[0].affine) <= ADJ_TOL
    # the circle perceptron (MATH.md §9): input_shape inferred from in_features
    big = nn.Linear(4096, 512)
    net = LiftedNetwork.from_module(big)
    assert net.input_shape == (4096,) and net.output_shape == (512,)
    net = LiftedNetwork.from_module(nn.Sequential(big, nn.ReLU()), input_shape=(64, 64))
    assert net.input_shape == (64, 64)
    # a Linear acting on the last dim of a non-image shape keeps PyTorch's semantics
    net = LiftedNetwork.from_module(nn.Linear(8, 3), input_shape=(8, 8))
    assert net.output_shape == (8, 3)


def test_single_layer_modules_and_lifted_network_passthrough():
    net = LiftedNetwork.from_module(nn.ReLU(), input_shape=(3,))
    assert len(net) == 1 and net.layers[0].affine.opnorm() == 1.0
    conv = _init(nn.Conv2d(1, 2, 3))
    net = LiftedNetwork.from_module(conv, input_shape=(1, 5, 5))
    assert net.output_shape == (2, 3, 3)
    assert LiftedNetwork.from_module(net) is net
    assert LiftedNetwork.from_module(net, input_shape=(1, 5, 5)) is net
    with pytest.raises(ValueError, match="does not match"):
        LiftedNetwork.from_module(net, input_shape=(1, 6, 6))


def test_network_follows_module_updates():
    module = _init(paper_dense_encoder())
    net = LiftedNetwork.from_module(module, input_shape=(1, 28, 28))
    with torch.no_grad():
        module[1].weight.mul_(-1)
    x = torch.rand(2, 1, 28, 28, dtype=F64)
    assert torch.equal(net(x), module(x))


# ------------------------------------------------------------------------------ refusals


class _Custom(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(x) + x


class _LinearWithForward(nn.Linear):
    def forward(self, x):
        return super().forward(x).clamp(max=1.0)


class _SeqWithForward(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 2


REFUSALS = {
    "maxpool": (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)), (1, 8, 8),
        r"module 2 \(MaxPool2d.*use nn\.AvgPool2d instead",
    ),
    "maxpool-nested": (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.MaxPool2d(2))), (1, 8, 8),
        r"module 2 \(MaxPool2d, at '1\.1' of the nested nn\.Sequential\).*AvgPool2d",
    ),
    "gelu": (
        nn.Sequential(nn.Linear(4, 3), nn.GELU()), None,
        r"module 1 \(GELU.*GELU",
    ),
    "two-activations": (
        nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sigmoid()), None,
        r"module 2 \(Sigmoid.*two activations in a row",
    ),
    "batchnorm-train": (
        nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3)).train(), None,
        r"module 1 \(BatchNorm1d.*training mode.*call \.eval\(\)",
    ),
    "batchnorm-no-running-stats": (
        nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=False)).eval(), None,
        r"module 1 \(BatchNorm1d.*track_running_stats=False",
    ),
    "reflect-padding": (
        nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect")), (1, 8, 8),
        r"module 0 \(Conv2d.*padding_mode='reflect'.*use padding_mode='zeros'",
    ),
    "unknown-module": (
        nn.Sequential(nn.Linear(4, 4), _Custom()), None,
        r"module 1 \(_Custom.*must be an nn\.Sequential of supported layers: Linear, Conv1d",
    ),
    "unknown-layer": (
        nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), None,
        r"module 1 \(LayerNorm.*must be an nn\.Sequential of supported layers",
    ),
    "top-level-custom": (
        _Custom(), None, r"_Custom is not a plain nn\.Sequential.*own forward.*supported layers",
    ),
    "sequential-with-forward": (
        _SeqWithForward(nn.Linear(4, 4)), None, r"_SeqWithForward.*own forward",
    ),
    "nested-sequential-with-forward": (
        nn.Sequential(nn.Linear(4, 4), _SeqWithForward(nn.Linear(4, 4))), None,
        r"module 1 \(_SeqWithForward.*must be an nn\.Sequential",
    ),
    "linear-subclass-with-forward": (
        nn.Sequential(nn.Linear(4, 4), _LinearWithForward(4, 4)), None,
        r"module 1 \(_LinearWithForward.*must be an nn\.Sequential of supported layers",
    ),
    "modulelist": (nn.ModuleList([nn.Linear(4, 4)]), None, r"ModuleList.*nn\.Sequential"),
    "conv-channels": (
        nn.Sequential(nn.Conv2d(1, 2, 3)), (3, 28, 28),
        r"module 0 \(Conv2d.*expects input_shape \(in_channels=1, H, W\).*got shape \(3, 28, 28\)",
    ),
    "conv-batch-dim-in-shape": (
        nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 1, 28, 28),
        r"in_channels=1, H, W\) \(no batch dimension\).*\(1, 1, 28, 28\)",
    ),
    "linear-features": (
        nn.Sequential(nn.Linear(784, 10)), (1, 27, 27),
        r"module 0 \(Linear\) expects input_shape \(784,\).*784 elements.*got input_shape \(1, 27, 27\)",
    ),
    "linear-after-conv-mismatch": (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(100, 3)), (1, 8, 8),
        r"module 2 \(Linear.*in_features=100.*got shape \(72,\)",
    ),
    "batchnorm-channels": (
        nn.Sequential(nn.BatchNorm2d(3).eval()), (2, 4, 4),
        r"module 0 \(BatchNorm2d.*num_features = 3.*got shape \(2, 4, 4\)",
    ),
    "input-shape-required": (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), None,
        r"input_shape is required.*module 0 \(Conv2d",
    ),
    "flatten-batch": (
        nn.Sequential(nn.Flatten(0)), (2, 3), r"module 0 \(Flatten.*batch dimension",
    ),
    "bad-input-shape": (nn.Sequential(nn.ReLU()), (0, 3), r"input_shape: expected a non-empty tuple of positive ints"),
    "empty": (nn.Sequential(), (3,), r"empty"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refusals(name):
    module, input_shape, pattern = REFUSALS[name]
    with pytest.raises(ValueError, match=pattern):
        LiftedNetwork.from_module(module, input_shape=input_shape)


def test_refusal_of_non_proximal_activation_reuses_proximal_message():
    from lbinv.proximal import proximal_activation

    with pytest.raises(ValueError) as info:
        proximal_activation(nn.SiLU())
    with pytest.raises(ValueError) as info_net:
        LiftedNetwork.from_module(nn.Sequential(nn.Linear(3, 3), nn.SiLU()))
    assert str(info.value) in str(info_net.value)
    assert "module 1 (SiLU" in str(info_net.value)


def test_torch_compile_wrappers_are_seen_through():
    """An encoder compiled for training (torch.compile returns an OptimizedModule), or with a
    compiled part, is lifted as the module it wraps: same layers, same parameters (a live view)."""
    plain = _init(paper_conv_encoder(final_relu=True), dtype=F64)
    whole = torch.compile(plain)
    part = nn.Sequential(torch.compile(plain[:2]), plain[2:])
    x = torch.rand(2, 1, 28, 28, dtype=F64)
    reference = LiftedNetwork.from_module(plain, (1, 28, 28))
    for module in (whole, part):
        net = LiftedNetwork.from_module(module, (1, 28, 28))
        assert len(net) == len(reference)
        torch.testing.assert_close(net(x), plain(x), rtol=0, atol=0)
    with torch.no_grad():
        plain[0].weight.mul_(2.0)
    torch.testing.assert_close(LiftedNetwork.from_module(whole, (1, 28, 28))(x), plain(x), rtol=0, atol=0)


# ------------------------------------------------------------------------------ devices


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_device_and_dtype_kept(device, dtype, monkeypatch):
    # cuDNN computes float32 convolutions in TF32 by default (10-bit mantissa); the ops are exact
    # adjoints in IEEE float32, which is what is checked (README, "Guarantees and limits")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    module = _init(paper_conv_encoder(final_relu=True), dtype=dtype).to(device)
    net = LiftedNetwork.from_module(module, input_shape=(1, 28, 28))
    assert net.device.type == device and net.dtype == dtype
    x = torch.rand(3, 1, 28, 28, dtype=dtype, device=device)
    out = net(x)
    assert out.device.type == device and out.dtype == dtype
    torch.testing.assert_close(out, module(x))
    tol = ADJ_TOL if dtype == F64 else 1e-5
    with torch.inference_mode():
        for layer in net.layers:
            A = layer.affine
            assert A.bias.device.type == device and A.bias.dtype == dtype
            assert A.adjoint(torch.ones(2, *A.out_shape, dtype=dtype, device=device)).device.type == device
            assert adjoint_error(A) <= tol
    pool = AffineMap(nn.AvgPool2d(2, ceil_mode=True), (1, 7, 7))
    y = torch.rand(2, 1, 4, 4, dtype=dtype, device=device)
    assert pool.adjoint(y).device.type == device and pool.adjoint(y).dtype == dtype
