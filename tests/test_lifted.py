"""Tests of lbinv.lifted: LiftedNetwork.from_module (MATH.md §1, §9), its refusals, and the
devices and dtypes it keeps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbinv import invert
from lbinv.lifted import LiftedLayer, LiftedNetwork
from lbinv.operators import AffineMap
from lbinv.proximal import IDENTITY, LeakyReLUProx, PReLUProx, ProxActivation
from tests.helpers import (
    ADJ_TOL,
    F64,
    adjoint_error,
    dense_matrix,
    generator,
    init_module,
    paper_conv_encoder,
    paper_dense_encoder,
    randn,
)


# ------------------------------------------------------------------------------ LiftedNetwork


@pytest.mark.parametrize("encoder", ["dense", "conv", "conv-relu"])
def test_paper_encoders_round_trip_and_adjoints(encoder):
    if encoder == "dense":
        module, n_layers, acts = init_module(paper_dense_encoder()), 1, ["ReLU"]
    else:
        module = init_module(paper_conv_encoder(final_relu=encoder == "conv-relu"))
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
    x = torch.rand(5, 1, 28, 28, generator=generator(2), dtype=F64)
    assert torch.equal(net(x), module(x))
    outs = net.forward_all(x)
    assert len(outs) == n_layers and torch.equal(outs[-1], net(x))
    if encoder != "dense":
        assert torch.equal(outs[0], module[:2](x))
        assert torch.equal(outs[1], module[:4](x))


def test_round_trip_leaky_avgpool_batchnorm_stack():
    module = init_module(nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.LeakyReLU(0.1),
        nn.AvgPool2d(2), nn.Conv2d(4, 6, 3, stride=2), nn.BatchNorm2d(6), nn.LeakyReLU(0.3),
        nn.Dropout(0.2), nn.Flatten(), nn.Linear(6 * 2 * 2, 10),
    ))
    net = LiftedNetwork.from_module(module, input_shape=(1, 12, 12))
    assert len(net) == 3
    assert [len(ly.affine._ops) for ly in net.layers] == [2, 3, 3]
    x = randn(4, 1, 12, 12, seed=9)
    torch.testing.assert_close(net(x), module(x), rtol=0, atol=0)
    for layer in net.layers:
        assert adjoint_error(layer.affine) <= ADJ_TOL


def _prelu(slopes: list[float]) -> nn.PReLU:
    module = nn.PReLU(len(slopes))
    with torch.no_grad():
        module.weight.copy_(torch.tensor(slopes))
    return module


def _prelu_conv_encoder() -> nn.Sequential:
    """Conv → PReLU(4) → conv → PReLU(6) → linear code of 20 for 12×12 images, slopes set per channel."""
    torch.manual_seed(0)
    return init_module(nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2, padding=1), _prelu([0.05, 0.2, 0.5, 0.9]),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), _prelu([0.1, 0.3, 0.45, 0.6, 0.8, 1.0]),
        nn.Flatten(), nn.Linear(6 * 3 * 3, 20),
    ))


def test_prelu_encoders_lift_and_equal_the_module():
    conv = nn.Sequential(nn.Conv2d(1, 4, 3), _prelu([0.1, 0.25, 0.6, 1.0]), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    dense = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.PReLU())
    dense_per_unit = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), _prelu(torch.linspace(0.01, 1.0, 32).tolist()))
    x = torch.rand(3, 1, 28, 28, generator=generator(5), dtype=F64)
    for module, kind, hidden in ((conv, PReLUProx, conv[:2]), (dense, LeakyReLUProx, dense),
                                 (dense_per_unit, PReLUProx, dense_per_unit)):
        module = init_module(module)
        net = LiftedNetwork.from_module(module, input_shape=(1, 28, 28))
        assert isinstance(net.layers[0].activation, kind)
        with torch.no_grad():
            assert torch.equal(net(x), module(x))
            assert torch.equal(net.forward_all(x)[0], hidden(x))
    # a hidden node's values are (B, C, H, W): its Bregman loss vanishes at the truth, per channel
    module = _prelu_conv_encoder()
    net = LiftedNetwork.from_module(module, input_shape=(1, 12, 12))
    x = torch.rand(2, 1, 12, 12, generator=generator(6), dtype=F64)
    with torch.no_grad():
        values = [x, *net.forward_all(x)]
        for k, node in enumerate(net.nodes):
            assert values[k + 1].shape[1:] == node.shape
            assert float(node.activation.bregman(values[k + 1], node.pre_activation(values)).abs().max()) < 1e-14


def test_inverting_a_prelu_conv_encoder():
    """From the truth with no regulariser the lifted solver stays there (its hidden steps are the per-channel
    prox of the PReLU nodes, at a fixed point only if they agree with σ); from zeros it explains the code."""
    module = _prelu_conv_encoder()
    x = torch.zeros(2, 1, 12, 12, dtype=F64)
    x[0, 0, 2:7, 3:9] = 1.0
    x[1, 0, 4:10, 1:5] = 1.0
    with torch.no_grad():
        y = module(x)
    res = invert(module, y, input_shape=(1, 12, 12), regularizer=None, x_init=x, max_iter=5, tol=0.0)
    torch.testing.assert_close(res.x, x, rtol=0, atol=1e-12)

    def solve(iterations: int):
        res = invert(module, y, alpha=1e-4, input_shape=(1, 12, 12), bounds=(0.0, 1.0), max_iter=iterations, tol=0.0)
        with torch.no_grad():
            return res, (module(res.x) - y).norm(dim=1) / y.norm(dim=1)

    (short, _), (res, residual) = solve(20), solve(200)
    with torch.no_grad():
        start = (module(torch.zeros_like(x)) - y).norm(dim=1) / y.norm(dim=1)
    assert bool((res.objective < short.objective).all())
    assert bool((residual < 0.25 * start).all())  # measured 0.079 of 0.47 and 0.50


def test_nested_sequential_and_activation_first():
    module = init_module(nn.Sequential(
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
    x = randn(3, 6)
    assert torch.equal(net(x), module(x))


def test_a_module_used_twice_in_a_sequential_runs_twice():
    """The Udacity conv autoencoder's encoder: one ReLU and one MaxPool2d instance, each listed twice
    (named_children() lists them once, and the lifted network lost the second pooling)."""
    relu, pool = nn.ReLU(), nn.MaxPool2d(2)
    module = init_module(nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), relu, pool, nn.Conv2d(3, 2, 3, padding=1), relu, pool))
    net = LiftedNetwork.from_module(module, input_shape=(1, 8, 8))
    x = randn(2, 1, 8, 8)
    assert net.output_shape == (2, 2, 2)
    torch.testing.assert_close(net(x), module(x))


def test_single_linear_perceptron_reads_images_flattened():
    lin = init_module(nn.Linear(64, 16))
    net = LiftedNetwork.from_module(lin, input_shape=(8, 8))
    assert len(net) == 1 and net.layers[0].activation is IDENTITY
    assert net.input_shape == (8, 8) and net.output_shape == (16,)
    x = randn(3, 8, 8)
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
    conv = init_module(nn.Conv2d(1, 2, 3))
    net = LiftedNetwork.from_module(conv, input_shape=(1, 5, 5))
    assert net.output_shape == (2, 3, 3)
    assert LiftedNetwork.from_module(net) is net
    assert LiftedNetwork.from_module(net, input_shape=(1, 5, 5)) is net
    with pytest.raises(ValueError, match="does not match"):
        LiftedNetwork.from_module(net, input_shape=(1, 6, 6))


def test_network_follows_module_updates():
    module = init_module(paper_dense_encoder())
    net = LiftedNetwork.from_module(module, input_shape=(1, 28, 28))
    with torch.no_grad():
        module[1].weight.mul_(-1)
    x = torch.rand(2, 1, 28, 28, dtype=F64)
    assert torch.equal(net(x), module(x))


# ------------------------------------------------------------------------------ refusals


REFUSALS = {
    "adaptive-maxpool": (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveMaxPool2d(2)), (1, 8, 8),
        r"module 2 \(AdaptiveMaxPool2d.*use nn\.MaxPool2d \(F\.max_pool2d\) with a fixed kernel, or average pooling "
        r"\(nn\.AdaptiveAvgPool2d",
    ),
    "lp-pool-nested": (
        nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.ReLU(), nn.LPPool2d(2, 2))), (1, 8, 8),
        r"module 2 \(LPPool2d, at '1\.1' of the nested nn\.Sequential\).*nn\.MaxPool2d, or nn\.AvgPool2d",
    ),
    "gelu": (
        nn.Sequential(nn.Linear(4, 3), nn.GELU()), None,
        r"module 1 \(GELU.*GELU",
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
    "unknown-layer": (
        nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)), None,
        r"module 1 \(LayerNorm.*lbinv lifts networks of supported layers: Linear, Conv1d",
    ),
    "modulelist": (nn.ModuleList([nn.Linear(4, 4)]), None, r"ModuleList has no forward\(\).*nn\.Sequential"),
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
    "prelu-slopes": (
        nn.Sequential(nn.Linear(4, 3), nn.PReLU(3, init=1.5)), None,
        r"module 1 \(PReLU.*PReLU\(num_parameters=3\) is not a proximal map: channels 0 \(slope 1\.5\), 1 \(slope 1\.5\)"
        + r".*a slope above 1 is expansive",
    ),
    "prelu-channels": (
        nn.Sequential(nn.Conv2d(1, 4, 3), _prelu([0.1, 0.2, 0.3, 0.4, 0.5])), (1, 8, 8),
        r"module 1 \(PReLU.*5 channels first.*got samples of shape \(4, 6, 6\)",
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
    plain = init_module(paper_conv_encoder(final_relu=True), dtype=F64)
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
    # adjoints in IEEE float32, which is what is checked (docs/inversion.md, "Guarantees and limits")
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    module = init_module(paper_conv_encoder(final_relu=True), dtype=dtype).to(device)
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
