"""Tests of lbinv.tracing: modules with their own forward() (and methods of modules) read as
chains of layers — the lifted network equals the module, inverts like the equivalent
nn.Sequential, and every refusal names the construct and its source line."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lbinv import LiftedNetwork, invert
from lbinv.tracing import CodeModule, code_module
from tests.helpers import F64, init_module, randn


# ---------------------------------------------------------------------------- user-written encoders
class ConvEncoder(nn.Module):
    """A hand-written forward: arithmetic on the input, F.relu, F.leaky_relu, view, torch.sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.fc = nn.Linear(6 * 3 * 3, 10)

    def forward(self, x):
        x = x * 2 - 1
        x = F.relu(self.conv1(x))
        x = F.leaky_relu(self.conv2(x), 0.2)
        x = x.view(x.size(0), -1)
        return torch.sigmoid(self.fc(x))


def conv_encoder_as_sequential(enc: ConvEncoder) -> nn.Sequential:
    """The same network written as an nn.Sequential, sharing the parameters."""
    from lbinv.operators.module_ops import ScaleShift

    return nn.Sequential(
        ScaleShift(2.0, -1.0), enc.conv1, nn.ReLU(), enc.conv2, nn.LeakyReLU(0.2), nn.Flatten(), enc.fc, nn.Sigmoid()
    )


class FunctionalEncoder(nn.Module):
    """Parameters used through F.conv2d / F.linear, F.avg_pool2d, clamp, torch.flatten, dropout in eval."""

    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(3, 1, 3, 3))
        self.b1 = nn.Parameter(torch.randn(3))
        self.w2 = nn.Parameter(torch.randn(5, 3 * 2 * 2))

    def forward(self, x):
        h = F.conv2d(x, self.w1, self.b1, padding=1).clamp(min=0.0)
        h = F.avg_pool2d(h, 2)
        h = F.dropout(h, 0.3, self.training)
        h = torch.flatten(h, 1).contiguous()
        return F.linear(h, self.w2) / 4


class VAE(nn.Module):
    """A VAE's encoder: a body, then mean and log-variance heads; encode returns both."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(36, 12), nn.Tanh())
        self.fc_mu = nn.Linear(12, 4)
        self.fc_var = nn.Linear(12, 4)

    def encode(self, x):
        h = self.body(x)
        return [self.fc_mu(h), self.fc_var(h)]

    def forward(self, x):
        mu, logvar = self.encode(x)
        return {"mu": mu, "logvar": logvar}


class LinearWithForward(nn.Linear):
    def forward(self, x):
        return super().forward(x).clamp(max=1.0)


class SequentialWithForward(nn.Sequential):
    def forward(self, x):
        return -super().forward(x)


class OneLinear(nn.Module):
    """A forward around one ``self.fc = nn.Linear(4, 4)``; subclasses write the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)


class Residual(OneLinear):
    def forward(self, x):
        return F.relu(x + self.fc(x))


class Concat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class MaxPooled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return F.max_pool2d(F.relu(self.conv(x)), 2)


class ResNetLike(nn.Module):
    """A stem with max pooling, a residual block with BatchNorm, a concatenation, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.conv1, self.bn1 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.conv2, self.bn2 = nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3)
        self.side = nn.Conv2d(3, 2, 1)
        self.fc = nn.Linear(5 * 3 * 3, 4)

    def forward(self, x):
        h = self.pool(F.relu(self.stem(x)))
        out = F.relu(self.bn1(self.conv1(h)))
        h = F.relu(h + self.bn2(self.conv2(out)))
        h = torch.cat([h, torch.tanh(self.side(h))], dim=1)
        return self.fc(h.flatten(1))


class ToImage(nn.Module):
    """A decoder-style reshape from flat to image, and a torch.cat of one value (DenseNet's first layer)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 36)
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, z):
        h = torch.relu(self.fc(z)).view(z.shape[0], 1, 6, 6)
        return torch.cat([F.relu(self.conv(h))], 1)


class ShapeLoop(nn.Module):
    """The PyTorch tutorial's LeNet counts features in a loop over x.size()."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(36, 3)

    def forward(self, x):
        n = 1
        for d in x.size()[1:]:
            n *= d
        return self.fc(x.view(-1, n))


class InPlace(OneLinear):
    def forward(self, x):
        out = self.fc(x)
        out.add_(x)  # torch.fx does not follow this
        return F.relu(out)


class CatConstant(OneLinear):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("extra", torch.zeros(2, 2))  # fits a batch of 2 only: a constant, not a layer

    def forward(self, x):
        return torch.cat([self.fc(x), self.extra], 1)


class Sampling(OneLinear):
    """A VAE-style forward that samples in training mode."""

    def forward(self, x):
        h = self.fc(x)
        return h + torch.exp(h) * 0.1 if self.training else h


class PReLUs(nn.Module):
    """F.prelu with a parameter of slopes, the method .prelu() and an nn.PReLU submodule."""

    def __init__(self, slopes=(0.1, 0.5, 0.9)) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 3, 3, padding=1), nn.Conv2d(3, 3, 3, stride=2)
        self.slopes, self.slope = nn.Parameter(torch.tensor(slopes)), nn.Parameter(torch.tensor([0.3]))
        self.act = nn.PReLU(3)
        self.fc = nn.Linear(3 * 2 * 2, 5)

    def forward(self, x):
        h = F.prelu(self.conv1(x), self.slopes)
        h = self.act(self.conv2(h).prelu(self.slope))
        return self.fc(h.flatten(1))


class ShapeReads(nn.Module):
    """Sizes read from the input's shape as arguments: they evaluate in the one run of the graph."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)

    def forward(self, x):
        h = F.relu(self.conv(x / x.size(-1)))
        h = F.avg_pool2d(h, h.shape[-1] // 2)  # a kernel from the shape: 2×2 on 4×4
        return h.reshape(h.size(0), h.size(1) * h.size(2) * h.size(3))


IMAGE = (1, 6, 6)

# name -> (module factory, input shape, how to call it: the module itself or (method, output))
EQUAL = {
    "hand-written forward": (ConvEncoder, (1, 12, 12), None),
    "functional forms": (FunctionalEncoder, (1, 4, 4), None),
    "VAE encode, output 0": (VAE, IMAGE, ("encode", 0)),
    "VAE forward, output key": (VAE, IMAGE, ("forward", "mu")),
    "VAE log-variance head": (VAE, IMAGE, ("encode", 1)),
    "Linear subclass with forward": (lambda: nn.Sequential(nn.Linear(4, 4), LinearWithForward(4, 3)), (4,), None),
    "Sequential subclass with forward": (lambda: SequentialWithForward(nn.Linear(4, 3), nn.ReLU()), (4,), None),
    "first Linear reads an image flattened": (lambda: SequentialWithForward(nn.Linear(36, 3)), IMAGE, None),
    "residual": (Residual, (4,), None),
    "concatenation": (Concat, (4,), None),
    "max pooling": (MaxPooled, (1, 4, 4), None),
    "max pooling in a Sequential": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2)), IMAGE, None),
    "two activations in a row": (lambda: nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Sigmoid()), (4,), None),
    "ResNet-like": (ResNetLike, IMAGE, None),
    "flat to image, cat of one": (ToImage, (8,), None),
    "F.prelu, .prelu() and nn.PReLU": (PReLUs, IMAGE, None),
    "shape reads as arguments": (ShapeReads, (1, 4, 4), None),
}


def _encoder(name: str):
    factory, shape, call = EQUAL[name]
    module = init_module(factory())
    if call is None:
        return module, module, shape, None
    method, output = call
    return module, getattr(module, method), shape, output


def _reference(model, output):
    def run(x):
        out = model(x)
        return out if output is None else out[output]
    return run


@pytest.mark.parametrize("name", list(EQUAL))
def test_lifted_network_equals_the_module(name):
    _, model, shape, output = _encoder(name)
    net = LiftedNetwork.from_module(model, shape, output=output)
    x = randn(5, *shape, seed=1)
    want = _reference(model, output)(x.reshape(5, -1) if name.startswith("first Linear") else x)
    torch.testing.assert_close(net(x), want, rtol=1e-12, atol=1e-12)


def test_the_lifted_view_is_live_for_functional_parameters():
    # F.linear(x, self.w) is read as an nn.Linear holding the user's own parameter, not a copy
    module = init_module(FunctionalEncoder())
    net = LiftedNetwork.from_module(module, (1, 4, 4))
    with torch.no_grad():
        module.w2.mul_(-3.0)
        module.b1.add_(0.5)
    x = randn(3, 1, 4, 4, seed=2)
    torch.testing.assert_close(net(x), module(x), rtol=1e-12, atol=1e-12)


def test_a_traced_encoder_inverts_exactly_like_its_sequential():
    # the done-when of #15: a hand-written forward inverts with no change to the user's code, as the
    # equivalent nn.Sequential does (the same layers, so the same iterates to round-off)
    torch.manual_seed(0)
    enc = ConvEncoder().double().eval()
    x_true = torch.rand(3, 1, 12, 12, generator=torch.Generator().manual_seed(0), dtype=F64)
    y = enc(x_true).detach()
    options = {"alpha": 1e-4, "input_shape": (1, 12, 12), "bounds": (0.0, 1.0), "max_iter": 200, "tol": 0.0}
    traced = invert(enc, y, **options)
    sequential = invert(conv_encoder_as_sequential(enc), y, **options)
    torch.testing.assert_close(traced.x, sequential.x, rtol=0, atol=1e-10)


def test_invert_takes_a_method_and_an_output():
    vae = init_module(VAE())
    x_true = torch.rand(2, *IMAGE, generator=torch.Generator().manual_seed(3), dtype=F64)
    mu = vae.encode(x_true)[0].detach()
    res = invert(vae.encode, mu, output=0, input_shape=IMAGE, alpha=1e-6, max_iter=300)
    by_sequential = invert(nn.Sequential(vae.body, vae.fc_mu), mu, input_shape=IMAGE, alpha=1e-6, max_iter=300)
    torch.testing.assert_close(res.x, by_sequential.x, rtol=0, atol=1e-10)


def test_code_module_picks_the_output_and_keeps_plain_modules():
    vae = init_module(VAE())
    x = randn(2, *IMAGE)
    assert code_module(vae.body) is vae.body
    picked = code_module(vae.encode, 1)
    assert isinstance(picked, CodeModule) and list(picked.parameters()) == list(vae.parameters())
    torch.testing.assert_close(picked(x), vae.fc_var(vae.body(x)))
    torch.testing.assert_close(code_module(vae, "mu")(x), vae.encode(x)[0])


# ---------------------------------------------------------------------------- refusals
class Product(OneLinear):
    def forward(self, x):
        return torch.sigmoid(self.fc(x)) * x


class AdaptiveMax(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return F.adaptive_max_pool2d(F.relu(self.conv(x)), 2)


class WithGELU(OneLinear):
    def forward(self, x):
        return F.gelu(self.fc(x))


class DropoutAlwaysOn(OneLinear):
    def forward(self, x):
        return F.dropout(self.fc(x), 0.5)  # training=True by default


class BatchMixing(OneLinear):
    def forward(self, x):
        return self.fc(x).view(-1)


class Branching(OneLinear):
    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return x


class TensorConstant(OneLinear):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.ones(4))

    def forward(self, x):
        return self.fc(x - self.mean)


REFUSALS = {
    "product": (Product(), None, r"the operator \* in forward\(\) at test_tracing\.py:\d+: the operator \* of 2 values.*not affine"),
    "adaptive max pooling": (AdaptiveMax(), (1, 6, 6), r"F\.adaptive_max_pool2d in forward\(\) at test_tracing\.py:\d+ is not supported: adaptive max pooling.*F\.max_pool2d\)"
                             r" with a fixed kernel, or average pooling \(nn\.AdaptiveAvgPool2d, nn\.AvgPool2d or their F\. forms\)"),
    "GELU": (WithGELU(), None, r"F\.gelu in forward\(\) at test_tracing\.py:\d+: GELU is not supported.*not monotone"),
    "dropout on": (DropoutAlwaysOn(), None, r"F\.dropout in forward\(\) at test_tracing\.py:\d+: dropout in training mode.*\.eval\(\)"),
    "batch mixing view": (BatchMixing(), None, r"the method \.view\(\).*changes the batch dimension.*x\.view\(x\.size\(0\), -1\)"),
    "control flow": (Branching(), None, r"cannot trace Branching\.forward with torch\.fx.*`if`.*nn\.Sequential"),
    "tensor constant": (TensorConstant(), (4,), r"the operator - in forward\(\) at test_tracing\.py:\d+:.*a tensor constant"),
    "tuple without output": (VAE().encode, IMAGE, r"output: VAE\.encode returns a tuple or list of 2 items.*output=0"),
    "dict without output": (VAE(), IMAGE, r"output: VAE\.forward returns a dict of 2 items"),
    "missing output": (code_module(VAE().encode, 2), IMAGE, r"output: VAE\.encode returns list, which has no item 2"),
    "shape loop": (ShapeLoop(), IMAGE, r"cannot trace ShapeLoop\.forward.*reads the input's shape.*x\.flatten\(1\)"),
    "in place, result unused": (InPlace(), None, r"the method \.add_\(\) in forward\(\) at test_tracing\.py:\d+ changes a value in place.*out = out \+ h"),
    "cat with a constant": (CatConstant(), None, r"torch\.cat in forward\(\) at test_tracing\.py:\d+:.*constant tensor"),
    "ModuleList": (nn.ModuleList([nn.Linear(4, 4)]), None, r"ModuleList has no forward\(\).*nn\.Sequential"),
    "F.prelu, expansive": (PReLUs((0.5, 2.0, 0.5)), IMAGE, r"F\.prelu in forward\(\) at test_tracing\.py:\d+: "
                           + r"PReLU\(num_parameters=3\) is not a proximal map: channel 1 \(slope 2\): a slope above 1"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refusals_name_the_construct_and_the_line(name):
    model, shape, pattern = REFUSALS[name]
    with pytest.raises(ValueError, match=pattern):
        LiftedNetwork.from_module(model, shape)


class ThreeProblems(nn.Module):
    """A GELU, an adaptive max pooling and a product of two values computed from the input."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        h = F.gelu(self.conv(x))
        h = F.adaptive_max_pool2d(h, 2)
        return h * torch.sigmoid(h)


def test_every_unsupported_construct_is_reported_in_one_error():
    # one run shows all three problems, each with its line and its advice (the texts of the single refusals)
    with pytest.raises(ValueError) as caught:
        LiftedNetwork.from_module(init_module(ThreeProblems()), (1, 6, 6))
    lines = str(caught.value).split("\n")
    assert lines[0] == "3 constructs of the network cannot be lifted:"
    patterns = [
        r"- F\.gelu in forward\(\) at test_tracing\.py:\d+: GELU is not supported.*not monotone.*nn\.Softplus",
        r"- F\.adaptive_max_pool2d in forward\(\) at test_tracing\.py:\d+ is not supported: adaptive max pooling.*"
        r"nn\.MaxPool2d \(F\.max_pool2d\) with a fixed kernel, or average pooling",
        r"- the operator \* in forward\(\) at test_tracing\.py:\d+: the operator \* of 2 values.*not affine",
    ]
    assert len(lines) == 4 and all(re.match(p, line) for p, line in zip(patterns, lines[1:])), lines
    # the same in an nn.Sequential: its layers named by their index
    with pytest.raises(ValueError, match=r"^2 constructs.*\n- module 1 \(GELU\).*\n- module 3 \(LPPool1d\).*nn\.AvgPool1d$"):
        LiftedNetwork.from_module(nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Unflatten(1, (1, 4)), nn.LPPool1d(2, 2)))


def test_bad_model_and_output_arguments():
    with pytest.raises(ValueError, match=r"model: expected an nn\.Module or a method of one.*function"):
        LiftedNetwork.from_module(lambda x: x)
    with pytest.raises(ValueError, match=r"output: expected None, an index \(int\) or a key \(str\), got 1\.5"):
        LiftedNetwork.from_module(nn.Linear(3, 2), output=1.5)
    with pytest.raises(TypeError, match=r"model: expected an nn\.Module, a method of one"):
        invert(torch.relu, torch.zeros(1, 3))


def test_tracing_leaves_the_global_random_state_alone():
    # the callback traces at every inversion: the training run's random stream must not move
    module = init_module(ConvEncoder())
    state = torch.get_rng_state()
    LiftedNetwork.from_module(module, (1, 12, 12))
    assert torch.equal(torch.get_rng_state(), state)


def test_a_module_in_training_mode_is_read_with_eval_semantics_and_left_as_it_was():
    # a VAE-style forward samples in training mode: lbinv reads its eval forward, like nn.Dropout in a
    # Sequential, and neither the modes nor BatchNorm's statistics change; BatchNorm itself in training
    # mode is still refused, as in a Sequential
    sampling = init_module(Sampling()).train()
    net = LiftedNetwork.from_module(sampling)
    assert sampling.training
    x = randn(3, 4)
    torch.testing.assert_close(net(x), sampling.eval()(x))
    body = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).double().train()
    module = SequentialWithForward(*body)
    mean = module[1].running_mean.clone()
    with pytest.raises(ValueError, match=r"BatchNorm1d.*training mode.*call \.eval\(\)"):
        LiftedNetwork.from_module(module, (4,))
    assert torch.equal(module[1].running_mean, mean) and int(module[1].num_batches_tracked) == 0


def test_a_compiled_submodule_is_read_as_the_module_it_wraps():
    inner = init_module(nn.Sequential(nn.Linear(4, 3), nn.ReLU()))
    outer = SequentialWithForward(torch.compile(inner))
    torch.testing.assert_close(LiftedNetwork.from_module(outer, (4,))(randn(2, 4)), outer(randn(2, 4)))


@pytest.mark.parametrize("before", [[], [nn.ReLU(), nn.Dropout()]], ids=["linear first", "after elementwise modules"])
def test_a_traced_first_linear_checks_input_shape_as_a_sequential_does(before):
    # one rule for both: the shape is inferred from in_features (also after elementwise modules), an
    # image of in_features elements is read flattened, and any other shape is refused naming the layer
    module = init_module(SequentialWithForward(*before, nn.Linear(36, 3)))
    assert LiftedNetwork.from_module(module).input_shape == (36,)
    net = LiftedNetwork.from_module(module, IMAGE)
    assert net.input_shape == IMAGE
    x = randn(2, *IMAGE)
    torch.testing.assert_close(net(x), module(x.flatten(1)))
    with pytest.raises(ValueError, match=r"`\d` \(Linear\).*expects input_shape \(36,\) \(in_features=36\).*got input_shape \(1, 5, 5\)"):
        LiftedNetwork.from_module(module, (1, 5, 5))


class BufferWeight(nn.Module):
    """F.linear of a weight kept as a buffer (not a parameter)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.arange(12.0).reshape(3, 4))

    def forward(self, x):
        return torch.relu(F.linear(x, self.weight))


def test_a_first_f_linear_of_a_buffer_fixes_the_input_shape():
    module = BufferWeight().double()
    net = LiftedNetwork.from_module(module)
    assert net.input_shape == (4,)
    x = randn(3, 4)
    torch.testing.assert_close(net(x), torch.relu(x @ module.weight.T), rtol=0, atol=1e-12)
