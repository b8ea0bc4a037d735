"""Property-based fuzzing of LiftedNetwork.from_module and invert (issue 9).

Hypothesis draws small nn.Sequential stacks of the supported layers (Linear, Conv2d with random
kernel/stride/padding, AvgPool2d with ceil_mode / count_include_pad, Flatten, BatchNorm1d/2d in
eval mode, and the activations ReLU, LeakyReLU, Sigmoid, Tanh, Hardtanh, Softshrink), random batch
sizes including 1, float32 and float64, α as a float or a per-sample tensor, data inside and
outside the last activation's domain, and then breaks one argument on purpose (NaN/inf in the data,
the start point or the weights, wrong shapes, a wrong dtype, bad α). Properties:

- a broken argument gives a ValueError/TypeError whose message names that argument;
- valid arguments give a finite result of the right shape, dtype and device, each sample having
  run at most ``max_iter`` iterations (no hang: every example also has a deadline);
- for method="lifted", the objective at the result is no worse than at the starting point
  x = 0, computed independently (the torch module's own forward pass and the closed forms of
  Ψ and Φ from MATH.md §2, not lbinv's Bregman code);
- every generated AffineMap passes the normalised adjoint test of lbinv.operators.adjointness_test
  (≤ 1e−10 in float64), and the lifted network reproduces the module.

The examples are derandomised so the suite is reproducible; ``LBINV_FUZZ=500`` (say) runs that
many random examples per property instead, to hunt for new failures.
"""

from __future__ import annotations

import math
import os
import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from torch import nn

from lbinv import LiftedNetwork, invert
from lbinv.operators import adjointness_test

_FUZZ = int(os.environ.get("LBINV_FUZZ", "0"))


def fuzz_settings(examples: int, deadline_ms: int = 15000) -> settings:
    """Derandomised and modest by default (the file runs in ~30 s on two shared cores)."""
    return settings(
        max_examples=_FUZZ or examples,
        deadline=deadline_ms,
        derandomize=not _FUZZ,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


# ------------------------------------------------------------------------------------- networks
ACTIVATIONS = ("relu", "leaky", "sigmoid", "tanh", "hardtanh", "softshrink")


@st.composite
def activation(draw):
    kind = draw(st.sampled_from(ACTIVATIONS))
    if kind == "relu":
        return nn.ReLU()
    if kind == "leaky":
        return nn.LeakyReLU(draw(st.sampled_from([0.01, 0.2, 0.5, 1.0])))
    if kind == "sigmoid":
        return nn.Sigmoid()
    if kind == "tanh":
        return nn.Tanh()
    if kind == "hardtanh":
        lo = draw(st.sampled_from([-2.0, -1.0, -0.5, 0.0]))
        return nn.Hardtanh(lo, lo + draw(st.sampled_from([0.5, 1.0, 2.0])))
    return nn.Softshrink(draw(st.sampled_from([0.0, 0.1, 0.5])))


def _out_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(module.eval()(torch.zeros(2, *shape)).shape[1:])


@st.composite
def affine_module(draw, shape: tuple[int, ...]):
    """One supported affine module that accepts inputs of ``shape``, and its output shape."""
    if len(shape) == 3:
        c, h, w = shape
        kind = draw(st.sampled_from(["conv", "conv", "pool", "bn2d", "flatten"]))
        if kind == "conv":
            padding = draw(st.integers(0, 1))
            kernel = draw(st.integers(1, min(3, min(h, w) + 2 * padding)))
            module = nn.Conv2d(c, draw(st.integers(1, 3)), kernel, stride=draw(st.integers(1, 2)), padding=padding,
                               bias=draw(st.booleans()))
        elif kind == "pool":
            kernel = draw(st.integers(1, min(2, h, w)))
            module = nn.AvgPool2d(kernel, stride=draw(st.sampled_from([None, 1, 2])),
                                  padding=draw(st.integers(0, kernel // 2)), ceil_mode=draw(st.booleans()),
                                  count_include_pad=draw(st.booleans()))
        elif kind == "bn2d":
            module = nn.BatchNorm2d(c, affine=draw(st.booleans()))
        else:
            module = nn.Flatten()
    else:
        (n,) = shape
        kind = draw(st.sampled_from(["linear", "linear", "bn1d"]))
        if kind == "linear":
            module = nn.Linear(n, draw(st.integers(1, 8)), bias=draw(st.booleans()))
        else:
            module = nn.BatchNorm1d(n)
    return module, _out_shape(module, shape)


@st.composite
def stacks(draw, max_blocks: int = 3):
    """(module, input_shape): 1–3 blocks of 1–2 affine modules, each block closed by an
    activation (the last one optionally not), float32 or float64, eval mode, seeded weights."""
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 2)), draw(st.integers(3, 7)), draw(st.integers(3, 7)))
    else:
        shape = (draw(st.integers(1, 10)),)
    input_shape, layers = shape, []
    blocks = draw(st.integers(1, max_blocks))
    for b in range(blocks):
        for _ in range(draw(st.integers(1, 2))):
            module, shape = draw(affine_module(shape))
            layers.append(module)
        if b < blocks - 1 or draw(st.booleans()):
            layers.append(draw(activation()))
    net = nn.Sequential(*layers)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    zero_layer = draw(st.sampled_from([None] * 5 + list(range(len(layers)))))  # sometimes a zero map
    with torch.no_grad():
        for i, m in enumerate(layers):
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / math.sqrt(fan_in))
                if m.bias is not None:
                    m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=gen))
                if i == zero_layer:
                    m.weight.zero_()
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(0.3 * torch.randn(m.running_mean.shape, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=gen))
                if m.affine:
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                    m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=gen))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    return net.to(dtype).eval(), input_shape, dtype


# ----------------------------------------------------- the starting objective, computed independently
def _last_activation(module: nn.Sequential) -> nn.Module | None:
    last = module[-1]
    return None if isinstance(last, (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.Flatten, nn.modules.batchnorm._BatchNorm)) else last


def _domain(act: nn.Module | None) -> tuple[float, float]:
    if isinstance(act, nn.Sigmoid):
        return 0.0, 1.0
    if isinstance(act, nn.Tanh):
        return -1.0, 1.0
    if isinstance(act, nn.Hardtanh):
        return float(act.min_val), float(act.max_val)
    if isinstance(act, nn.ReLU) or (isinstance(act, nn.LeakyReLU) and act.negative_slope == 0):
        return 0.0, math.inf
    return -math.inf, math.inf


def _bregman_closed_form(act: nn.Module | None, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """B_Ψ(y, z) = Σ ½y² + Ψ(y) + Φ(z) − yz per sample, Ψ and Φ from the table of MATH.md §2 (float64)."""
    y, z = y.double().flatten(1), z.double().flatten(1)
    if act is None:
        psi, phi = torch.zeros_like(y), 0.5 * z**2
    elif isinstance(act, nn.ReLU):
        psi, phi = torch.zeros_like(y), 0.5 * z.clamp(min=0) ** 2
    elif isinstance(act, nn.LeakyReLU):
        a = act.negative_slope
        psi = (1 - a) / (2 * a) * y.clamp(max=0) ** 2
        phi = 0.5 * z.clamp(min=0) ** 2 + 0.5 * a * z.clamp(max=0) ** 2
    elif isinstance(act, nn.Hardtanh):
        c = z.clamp(act.min_val, act.max_val)
        psi, phi = torch.zeros_like(y), z * c - 0.5 * c**2
    elif isinstance(act, nn.Sigmoid):
        psi = torch.xlogy(y, y) + torch.xlogy(1 - y, 1 - y) - 0.5 * y**2
        phi = torch.logaddexp(z, torch.zeros_like(z))
    elif isinstance(act, nn.Tanh):
        psi = 0.5 * (torch.xlogy(1 + y, 1 + y) + torch.xlogy(1 - y, 1 - y)) - 0.5 * y**2
        phi = torch.logaddexp(z, -z) - math.log(2.0)  # log cosh z
    elif isinstance(act, nn.Softshrink):
        psi, phi = act.lambd * y.abs(), 0.5 * (z.abs() - act.lambd).clamp(min=0) ** 2
    else:  # pragma: no cover
        raise AssertionError(act)
    return (0.5 * y**2 + psi + phi - y * z).sum(1)


def starting_objective(module: nn.Sequential, y: torch.Tensor, input_shape) -> torch.Tensor:
    """Objective at x = 0 (hidden variables by the forward pass, TV(0) = 0):
    B_{Ψ_L}(clip(y), z_L(0)), z_L the last pre-activation, from the module's own forward."""
    act = _last_activation(module)
    body = module[:-1] if act is not None else module
    x0 = torch.zeros(y.shape[0], *input_shape, dtype=y.dtype)
    with torch.no_grad():
        z = body(x0)
    lo, hi = _domain(act)
    return _bregman_closed_form(act, y.double().clamp(lo, hi), z)


# ------------------------------------------------------------------------------------- problems
def _data(draw, module, input_shape, dtype, batch):
    kind = draw(st.sampled_from(["net", "net", "raw"]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    with torch.no_grad():
        out = module(torch.rand(batch, *input_shape, generator=gen, dtype=torch.float64).to(dtype))
    noise = torch.randn(out.shape, generator=gen, dtype=torch.float64).to(dtype)
    if kind == "net":  # inside the domain (up to noise, which may leave it)
        return out + draw(st.sampled_from([0.0, 0.01, 0.3])) * noise
    return 3.0 * noise  # anywhere: mostly outside a bounded domain


FAULTS = ("y_nan", "y_shape", "y_dtype", "alpha", "input_shape", "x_init", "weights")


@st.composite
def problems(draw, faults=("none",), methods=("lifted", "lifted", "sequential", "gradient", "landweber")):
    module, input_shape, dtype = draw(stacks())
    batch = draw(st.sampled_from([1, 1, 2, 3]))
    y = _data(draw, module, input_shape, dtype, batch)
    image = len(input_shape) == 3
    regularizer = draw(st.sampled_from(["tv", "tv-aniso", None])) if image else None
    method = draw(st.sampled_from(methods))
    n_layers = len(LiftedNetwork.from_module(module, input_shape))
    if method == "landweber" and n_layers > 1:
        method = "lifted"
    if draw(st.booleans()):
        alpha = draw(st.sampled_from([1e-4, 1e-2, 0.3]))
    else:
        alpha = torch.tensor(draw(st.lists(st.sampled_from([1e-4, 1e-2, 0.3]), min_size=batch, max_size=batch)), dtype=dtype)
    kwargs = dict(
        alpha=alpha,
        input_shape=input_shape,
        method=method,
        regularizer=regularizer,
        bounds=draw(st.sampled_from([None, (0.0, 1.0), (-1.0, 2.0)])),
        max_iter=draw(st.integers(1, 40)),
        check_every=draw(st.integers(1, 10)),
        tol=draw(st.sampled_from([0.0, 1e-5, 1e-2])),
    )
    fault = draw(st.sampled_from(faults))
    names: tuple[str, ...] = ()
    if fault == "y_nan":
        y = y.clone()
        index = draw(st.integers(0, y.numel() - 1))
        y.view(-1)[index] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        names = ("y",)
    elif fault == "y_shape":
        bad = draw(st.sampled_from(["extra", "size", "flat0"]))
        if bad == "extra":
            y = y.unsqueeze(-1).expand(*y.shape, 2)
        elif bad == "size":
            y = torch.cat([y.flatten(1), y.flatten(1)[:, :1]], dim=1)
        else:
            y = y.flatten()  # the batch dimension lost
        names = ("y",)
    elif fault == "y_dtype":
        y = y.to(torch.float64 if dtype == torch.float32 else torch.float32)
        names = ("y",)
        if not any(t.is_floating_point() for t in [*module.parameters(), *module.buffers()]):
            names = ()  # a network without parameters or buffers computes in the data's dtype
    elif fault == "alpha":
        kwargs["alpha"] = draw(st.sampled_from([0.0, -1e-2, math.nan, math.inf, "wrong-shape", "string"]))
        if kwargs["alpha"] == "wrong-shape":
            kwargs["alpha"] = torch.full((batch + 1,), 1e-2, dtype=dtype)
        elif kwargs["alpha"] == "string":
            kwargs["alpha"] = "big"
        names = ("alpha",)  # validated even where the method does not need α
    elif fault == "input_shape":
        bad = draw(st.sampled_from(["channels", "rank", "zero"]))
        if bad == "channels" and image:
            kwargs["input_shape"] = (input_shape[0] + 1, *input_shape[1:])
        elif bad == "zero":
            kwargs["input_shape"] = (0, *input_shape[1:])
        else:
            kwargs["input_shape"] = (*input_shape, 2)
        names = ("input_shape", "y", "regularizer")  # a shape the layers accept leaves y mismatched
    elif fault == "x_init":
        if method == "sequential":
            kwargs["method"] = method = "lifted"
        x0 = torch.zeros(batch, *input_shape, dtype=dtype)
        x0.view(-1)[draw(st.integers(0, x0.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf]))
        kwargs["x_init"] = x0
        names = ("x_init",)
    elif fault == "weights":
        params = [p for p in module.parameters()] + [b for b in module.buffers() if b.is_floating_point()]
        if params:
            with torch.no_grad():
                p = params[draw(st.integers(0, len(params) - 1))]
                p.view(-1)[draw(st.integers(0, p.numel() - 1))] = draw(st.sampled_from([math.nan, math.inf]))
            names = ("model",)
    event(f"fault: {fault if names else 'none'}")
    event(f"method: {method}, {n_layers} layer(s), {str(dtype)[6:]}, batch {batch}")
    return module, y, kwargs, names


def _run(module, y, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "clipped into the domain" warnings
        return invert(module, y, **kwargs)


def _check_result(res, module, y, kwargs):
    batch, input_shape = y.shape[0], tuple(kwargs["input_shape"])
    assert tuple(res.x.shape) == (batch, *input_shape)
    assert res.x.dtype == y.dtype and res.x.device == y.device
    assert tuple(res.iterations.shape) == (batch,) and tuple(res.converged.shape) == (batch,)
    assert tuple(res.objective.shape) == (batch,)
    assert res.converged.dtype == torch.bool
    # "sequential" solves one problem per layer, each within max_iter (documented in invert)
    stages = len(LiftedNetwork.from_module(module, kwargs["input_shape"])) if kwargs["method"] == "sequential" else 1
    assert bool((res.iterations >= 1).all()) and bool((res.iterations <= stages * kwargs["max_iter"]).all()), res.iterations
    assert bool(torch.isfinite(res.x).all()), "non-finite x"
    assert bool(torch.isfinite(res.objective).all()), res.objective


# ------------------------------------------------------------------------------------- properties
def answers_with_a_result_or_a_clear_error(problem) -> None:
    module, y, kwargs, names = problem
    note(f"module={module}\ny.shape={tuple(y.shape)} dtype={y.dtype}\nkwargs={kwargs}\nexpected error naming {names}")
    if names:
        with pytest.raises((ValueError, TypeError)) as info:
            _run(module, y, kwargs)
        message = str(info.value)
        assert any(name in message for name in names), message
        return
    _check_result(_run(module, y, kwargs), module, y, kwargs)


@fuzz_settings(examples=50)
@given(problems())
def test_valid_inputs_give_a_finite_result_of_the_right_shape_within_max_iter(problem):
    answers_with_a_result_or_a_clear_error(problem)


@pytest.mark.parametrize("fault", FAULTS)
@fuzz_settings(examples=6)
@given(data=st.data())
def test_a_broken_argument_gives_an_error_that_names_it(fault, data):
    """NaN/inf in y, x_init or the weights; wrong shapes of y or input_shape; y of the other
    dtype; α ≤ 0, NaN, inf, of the wrong shape or a string."""
    answers_with_a_result_or_a_clear_error(data.draw(problems(faults=(fault,))))


@fuzz_settings(examples=30)
@given(problems(faults=("none",), methods=("lifted",)))
def test_lifted_objective_no_worse_than_at_the_start(problem):
    """The lifted objective at the result is at most its value at the starting point x = 0."""
    module, y, kwargs, _ = problem
    bounds = kwargs["bounds"]
    kwargs.update(max_iter=400, check_every=20, tol=1e-7)
    if bounds is not None and not bounds[0] <= 0.0 <= bounds[1]:
        kwargs["bounds"] = None  # x = 0 must be feasible to be a fair reference
    note(f"module={module}\ny={y}\nkwargs={kwargs}")
    res = _run(module, y, kwargs)
    _check_result(res, module, y, kwargs)
    start = starting_objective(module, y, kwargs["input_shape"])
    rtol = 1e-9 if y.dtype == torch.float64 else 1e-4
    final = res.objective.double()
    assert bool((final <= start + rtol * (1.0 + start.abs())).all()), (final, start)


@fuzz_settings(examples=40)
@given(stacks())
def test_every_generated_affine_map_passes_the_adjoint_test(stack):
    """|⟨Ax, y⟩ − ⟨x, Aᵀy⟩| / (‖A‖‖x‖‖y‖) ≤ 1e−10 in float64 for every layer, and net(x) = module(x)."""
    module, input_shape, _ = stack
    module = module.double()
    net = LiftedNetwork.from_module(module, input_shape)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, *input_shape, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), module(x), rtol=1e-12, atol=1e-12)
    for layer in net.layers:
        A = layer.affine
        u = torch.randn(2, *A.in_shape, generator=gen, dtype=torch.float64)
        v = torch.randn(2, *A.out_shape, generator=gen, dtype=torch.float64)
        Au, Atv = A.linear(u), A.adjoint(v)
        assert tuple(Au.shape[1:]) == A.out_shape and tuple(Atv.shape[1:]) == A.in_shape
        error = adjointness_test(A, u, v)
        assert bool((error <= 1e-10).all()), (A, error, A.opnorm())
        # W x + b: forward is linear plus the bias
        torch.testing.assert_close(A.forward(u), Au + A.bias, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------ regressions: what the properties found
@pytest.mark.parametrize("method, regularizer, step_rule", [
    *[(method, regularizer, rule) for method, regularizer in [("lifted", None), ("lifted", "tv"), ("sequential", "tv")]
      for rule in ("balanced", "paper", None)],
    ("landweber", None, None),  # Landweber has no step rule
])
def test_zero_weights_give_a_finite_answer_not_a_division_by_zero(method, regularizer, step_rule):
    """A zero map (‖W‖ = 0) made every step size 1/‖W‖² a ZeroDivisionError (``step_rule``: PDHG's;
    None: the method's default solver and steps)."""
    layers = [nn.Flatten(), nn.Linear(9, 4), nn.ReLU()] + ([] if method == "landweber" else [nn.Linear(4, 3), nn.Sigmoid()])
    module = nn.Sequential(*layers).double()
    with torch.no_grad():
        for m in module:
            if isinstance(m, nn.Linear):
                m.weight.zero_()
    y = torch.full((2, 3 if method != "landweber" else 4), 0.5, dtype=torch.float64)
    options = {}
    if step_rule is not None:  # "sequential" always uses PDHG; "lifted" must choose it
        options = {"step_rule": step_rule, "solver": "pdhg"} if method == "lifted" else {"step_rule": step_rule}
    res = invert(module, y, alpha=1e-2, input_shape=(1, 3, 3), method=method, regularizer=regularizer, max_iter=20, **options)
    assert bool(torch.isfinite(res.x).all()) and bool(torch.isfinite(res.objective).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parameter_free_network_computes_in_the_data_dtype(dtype):
    """A network without parameters (pooling, reshapes) has no dtype: y's is used (it was refused)."""
    module = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.ReLU())
    y = torch.rand(2, 4, dtype=dtype)
    res = invert(module, y, alpha=1e-2, input_shape=(1, 4, 4), max_iter=50)
    assert res.x.dtype == dtype and bool(torch.isfinite(res.x).all())


def test_non_finite_weights_and_start_points_are_refused_by_name():
    module = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2)).double()
    y = torch.rand(1, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="x_init: expected finite values, got 1 NaN/inf"):
        invert(module, y, regularizer=None, x_init=torch.tensor([[0.0, math.nan, 0.0]]), max_iter=5)
    with torch.no_grad():
        module[2].bias[0] = math.inf  # a bias: the power iteration alone would not notice
    with pytest.raises(ValueError, match=r"model: module 2 \(Linear\) has NaN/inf parameters"):
        invert(module, y, regularizer=None, max_iter=5)


def test_a_shape_the_layers_cannot_take_names_input_shape():
    with pytest.raises(ValueError, match="cannot take inputs of shape .*input_shape"):
        LiftedNetwork.from_module(nn.Sequential(nn.AvgPool2d(2), nn.ReLU()), input_shape=(1, 3, 3, 2))


def test_sequential_budget_is_max_iter_per_layer():
    """Documented: "sequential" solves one problem per layer, each within max_iter."""
    module = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2), nn.ReLU()).double()
    res = invert(module, torch.rand(2, 2, dtype=torch.float64), alpha=1e-2, regularizer=None, method="sequential", max_iter=7, tol=0.0)
    assert bool((res.iterations == 2 * 7).all()) and not bool(res.converged.any())
