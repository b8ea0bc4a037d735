"""Tests of lbinv.lifting and of coordinate descent on lifted graphs (residual sums, concatenations,
max pooling as ReLU nodes): random graphs equal their modules and pass the adjoint test on every
edge; the solver's block gradients equal autograd's; sweeps without TV never increase the lifted
objective; the true input is a fixed point; an inversion explains its code."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lbinv import LiftedNetwork, invert
from lbinv.regularizers import TotalVariation
from lbinv.solvers.coordinate_descent import CoordinateDescent
from lbinv.solvers.loop import Problem
from tests.helpers import F64, adjoint_error, init_module

BLOCKS = ("conv", "residual", "maxpool", "cat", "avgpool")


class RandomGraph(nn.Module):
    """A stem, then the given blocks on 2-channel images, then a linear code."""

    def __init__(self, blocks: tuple[str, ...], size: int = 8) -> None:
        super().__init__()
        self.blocks = blocks
        self.stem = nn.Conv2d(1, 2, 3, padding=1)
        self.convs = nn.ModuleList(nn.Conv2d(2, 2, 3, padding=1) for _ in blocks)
        self.sides = nn.ModuleList(nn.Conv2d(2, 1, 1) for _ in blocks)
        self.mixes = nn.ModuleList(nn.Conv2d(3, 2, 1) for _ in blocks)
        for block in blocks:
            size = size // 2 if block in ("maxpool", "avgpool") else size
        self.fc = nn.Linear(2 * size * size, 5)

    def forward(self, x):
        h = F.relu(self.stem(x))
        for block, conv, side, mix in zip(self.blocks, self.convs, self.sides, self.mixes):
            if block == "conv":
                h = torch.tanh(conv(h))
            elif block == "residual":
                h = F.relu(h + conv(h))
            elif block == "maxpool":
                h = F.max_pool2d(h, 2)
            elif block == "avgpool":
                h = F.leaky_relu(conv(F.avg_pool2d(h, 2)), 0.1)
            else:
                h = F.relu(mix(torch.cat([h, torch.sigmoid(side(h))], dim=1)))
        return self.fc(h.flatten(1))


def _blocks(draw_blocks):
    pools = sum(b in ("maxpool", "avgpool") for b in draw_blocks)
    return pools <= 2


@settings(max_examples=25, deadline=None)
@given(blocks=st.lists(st.sampled_from(BLOCKS), min_size=1, max_size=4).filter(_blocks), seed=st.integers(0, 100))
def test_random_graphs_equal_their_modules_and_every_edge_is_adjoint(blocks, seed):
    module = init_module(RandomGraph(tuple(blocks)), seed=seed)
    net = LiftedNetwork.from_module(module, (1, 8, 8))
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=F64)
    torch.testing.assert_close(net(x), module(x), rtol=1e-12, atol=1e-12)
    for affine in net.affine_maps():
        assert adjoint_error(affine) <= 1e-10


GRAPH_BLOCKS = ("maxpool", "residual", "cat")


def _solver(seed: int = 0, tv: TotalVariation | None = None) -> tuple[CoordinateDescent, torch.Tensor]:
    module = init_module(RandomGraph(GRAPH_BLOCKS), seed=seed)
    net = LiftedNetwork.from_module(module, (1, 8, 8))
    g = torch.Generator().manual_seed(seed)
    y = module(torch.rand(2, 1, 8, 8, generator=g, dtype=F64)).detach()
    problem = Problem(y, torch.full((2,), 1e-3, dtype=F64), tv, None, 0.0, torch.rand(2, 1, 8, 8, generator=g, dtype=F64))
    return CoordinateDescent(net, problem, "balanced", 32.0, "forward"), y


def test_block_gradients_equal_autograd():
    # g_j = Σ_k A_kjᵀ(σ_k(a_k) − x_k) over the nodes k that read x_j: the gradient in x_j of their terms
    solver, _ = _solver()
    net = solver.net
    g = torch.Generator().manual_seed(1)
    # moved off the forward pass (up: ReLU values off 0, so that no pre-activation sits exactly on ReLU's
    # kink, where autograd takes the derivative 0), inside each activation's domain (else B_Ψ = ∞)
    solver.hidden = [
        node.activation.project_data(h + 0.05 + 0.1 * torch.rand(h.shape, generator=g, dtype=F64))
        for node, h in zip(net.nodes, solver.hidden)
    ]
    solver.stale = [True] * len(net.nodes)
    for j in range(len(net.nodes)):
        values = [v.detach().clone().requires_grad_(v is solver._values()[j]) for v in solver._values()]
        targets = [*values[1:], solver.y]
        readers = {k for k, _ in net.edges_from(j)}
        terms = sum(net.nodes[k].activation.bregman(targets[k], net.nodes[k].pre_activation(values)).sum() for k in readers)
        (expected,) = torch.autograd.grad(terms, values[j])
        torch.testing.assert_close(solver._gradient(j), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sweeps_without_tv_never_increase_the_lifted_objective(seed):
    # every block update is a proximal-gradient step with a valid step 1/L_j: the objective cannot rise
    solver, _ = _solver(seed)
    previous = solver.objective()
    for _ in range(60):
        with torch.no_grad():
            solver.step(None, False)
        current = solver.objective()
        assert bool((current <= previous + 1e-12 * previous.abs().clamp(min=1.0)).all())
        previous = current


def test_the_true_input_is_a_fixed_point():
    module = init_module(RandomGraph(GRAPH_BLOCKS))
    net = LiftedNetwork.from_module(module, (1, 8, 8))
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(4), dtype=F64)
    with torch.no_grad():
        y = module(x)
        hidden = net.forward_all(x)[:-1]
        values, targets = [x, *hidden], [*hidden, y]  # Σ_k B_k(x_k, a_k): 0 at the truth
        bregman = sum(node.activation.bregman(t, node.pre_activation(values)) for node, t in zip(net.nodes, targets))
        assert float(bregman.abs().max()) < 1e-14
    res = invert(module, y, input_shape=(1, 8, 8), regularizer=None, x_init=x, max_iter=5, tol=0.0)
    torch.testing.assert_close(res.x, x, rtol=0, atol=1e-12)


def test_a_residual_encoder_inverts_and_explains_its_code(monkeypatch):
    # zero noise, small α: the lifted inversion explains the code, better than Adam through the network
    # (the encoder and images of benchmarks/graphs.py, whose README figures run longer)
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    graphs = importlib.import_module("graphs")
    torch.manual_seed(0)
    encoder, x = graphs.ResidualEncoder().double().eval(), graphs.squares()
    with torch.no_grad():
        y = encoder(x)

    def residual(method: str) -> float:
        res = invert(encoder, y, alpha=1e-5, input_shape=(1, 12, 12), bounds=(0.0, 1.0), method=method, max_iter=3000)
        with torch.no_grad():
            return float(((encoder(res.x) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)).max())

    lifted, adam = residual("lifted"), residual("gradient")
    assert lifted < 2e-2 and lifted <= 2 * adam + 2e-3


def test_graphs_refuse_the_chain_only_methods():
    module = init_module(RandomGraph(("residual",)))
    y = module(torch.rand(1, 1, 8, 8, dtype=F64)).detach()
    with pytest.raises(ValueError, match=r"method='sequential'.*a graph.*method='lifted'"):
        invert(module, y, alpha=1e-2, input_shape=(1, 8, 8), method="sequential")
    with pytest.raises(ValueError, match=r"method='landweber': supports one-layer networks"):
        invert(module, y, input_shape=(1, 8, 8), method="landweber")
    with pytest.raises(ValueError, match=r"is a graph.*use net\.nodes"):
        _ = LiftedNetwork.from_module(module, (1, 8, 8)).layers


def test_a_node_that_nothing_reads_takes_no_gradient():
    # built by hand: x_1 = ReLU(A x_0) is read by no node, the output x_2 = ReLU(B x_0) is
    from lbinv.lifted import LiftedEdge, LiftedNode
    from lbinv.operators import AffineMap
    from lbinv.proximal import ReLUProx

    a, b = init_module(nn.Linear(3, 2)), init_module(nn.Linear(3, 2))
    net = LiftedNetwork([LiftedNode([LiftedEdge(0, AffineMap(a, (3,)))], ReLUProx()),
                         LiftedNode([LiftedEdge(0, AffineMap(b, (3,)))], ReLUProx())])
    x = torch.rand(2, 3, dtype=F64)
    res = invert(net, net(x), regularizer=None, x_init=x, max_iter=5, tol=0.0)
    torch.testing.assert_close(res.x, x, rtol=0, atol=1e-12)


def test_max_pooling_built_under_inference_mode_still_differentiates():
    # Lightning validates under torch.inference_mode(); method="gradient" needs autograd through the pooling
    module = init_module(RandomGraph(("maxpool",)))
    with torch.inference_mode():
        net = LiftedNetwork.from_module(module, (1, 8, 8))
    x = torch.rand(1, 1, 8, 8, dtype=F64, requires_grad=True)
    net(x).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


def test_the_stacked_norms_are_computed_once_per_weights(monkeypatch):
    # the callback rebuilds the network at every inversion: blocks read by several edges take their
    # Lipschitz constant from the cache until the weights change
    import lbinv.solvers.blocks as blocks

    calls = []
    original = blocks.operator_norm
    monkeypatch.setattr(blocks, "operator_norm", lambda *a, **k: calls.append(1) or original(*a, **k))
    module = init_module(RandomGraph(GRAPH_BLOCKS))
    y = module(torch.rand(1, 1, 8, 8, dtype=F64)).detach()

    def build() -> int:
        calls.clear()
        invert(module, y, alpha=1e-2, input_shape=(1, 8, 8), max_iter=1)
        return len(calls)

    first = build()
    assert first > 0 and build() == 0
    with torch.no_grad():
        module.convs[1].weight.mul_(2.0)  # the residual block's conv: its node's stacked norm changes
    assert 0 < build() <= first
