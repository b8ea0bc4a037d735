"""A torch module seen as lifted nodes (MATH.md §1).

A feed-forward network is read as nodes ``x_k = σ_k(a_k)``, one per activation, each with a
pre-activation affine in the input ``x_0`` and in earlier nodes,

    a_k = Σ_j A_kj x_j + b_k,   σ_k = prox_{Ψ_k},

where each ``A_kj`` (with its share of ``b_k``) is an :class:`AffineMap` (a run of affine modules:
Linear, convolutions, average pooling, reshapes, BatchNorm in eval mode, ...) and each σ_k a
:class:`~lbinv.proximal.ProxActivation`. For a chain (an ``nn.Sequential``) every node reads the one
before it and the network is the paper's

    N(x) = σ_L(W_L σ_{L-1}( ... σ_1(W_1 x + b_1) ... ) + b_L),

whose :class:`LiftedLayer` s ``net.layers`` give. Residual connections, ``torch.cat`` and max pooling
(as ReLU nodes) make graphs (:mod:`lbinv.lifting`); modules with their own ``forward()`` are traced
first (:mod:`lbinv.tracing`). The affine maps themselves (forward, linear, adjoint, bias, opnorm) live
in :mod:`lbinv.operators`.

The lifted view reads the modules *live* (an optimiser step is seen at once) and always uses
eval semantics: BatchNorm with its running statistics, Dropout as the identity.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lbinv._checks import Shape, check_shape
from lbinv.lifting import LiftedEdge, LiftedNode, lift_steps
from lbinv.operators import AffineMap
from lbinv.operators.sequential import uncompiled
from lbinv.proximal import ProxActivation
from lbinv.tracing import Output, code_module, eval_mode, network_steps
from lbinv.tracing.code import zeros_like_module

__all__ = ["LiftedEdge", "LiftedLayer", "LiftedNetwork", "LiftedNode"]


@dataclass
class LiftedLayer:
    """One lifted layer x_l = σ_l(W_l x_{l-1} + b_l), σ_l = prox_{Ψ_l} (MATH.md §1)."""

    affine: AffineMap
    activation: ProxActivation

    def __call__(self, x: Tensor) -> Tensor:
        return self.activation(self.affine.forward(x))


class LiftedNetwork:
    """A network read as lifted nodes (MATH.md §1); build it with :meth:`from_module`.

    ``net(x)`` equals ``module(x)`` (eval semantics). ``net.nodes[k]`` is a :class:`LiftedNode`
    (edges from earlier values, activation); the last node's value is the output. For a chain,
    ``net.layers[l].affine`` is an :class:`AffineMap` and ``net.layers[l].activation`` a
    :class:`~lbinv.proximal.ProxActivation`. The network views the module live: parameter
    updates are seen at once, shapes are fixed at construction. One exception: an edit through
    ``.data`` (which bumps no version counter) is not seen by the cached kernel of a strided
    Conv2d's polyphase adjoint; build a new network after one (``invert(module, …)`` and the
    callback build one at every call).
    """

    def __init__(self, layers: Sequence[LiftedLayer | LiftedNode]) -> None:
        """From layers of a chain (layer l reads layer l − 1) or from nodes in topological order."""
        if not layers:
            raise ValueError("a LiftedNetwork needs at least one layer")
        self.nodes: list[LiftedNode] = [
            LiftedNode([LiftedEdge(k, item.affine)], item.activation) if isinstance(item, LiftedLayer) else item
            for k, item in enumerate(layers)
        ]
        for k, node in enumerate(self.nodes):
            if not node.edges or any(not 0 <= e.source <= k for e in node.edges):
                raise ValueError(f"node {k}: expected edges from the input or earlier nodes (sources 0..{k})")
        chain = all(len(n.edges) == 1 and n.edges[0].source == k for k, n in enumerate(self.nodes))
        self._layers = [LiftedLayer(n.edges[0].affine, n.activation) for n in self.nodes] if chain else None

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_module(
        cls,
        module: nn.Module | Callable[[Tensor], Any] | LiftedNetwork,
        input_shape: Sequence[int] | int | None = None,
        *,
        output: Output = None,
    ) -> LiftedNetwork:
        """Read ``module`` as lifted nodes.

        ``module``: an ``nn.Sequential`` (nested ones are flattened) of supported layers, a
        single supported layer (e.g. the paper's perceptron ``nn.Linear(4096, 512)``), or any
        module with its own ``forward()`` (or a method of one, e.g. ``vae.encode``) that torch.fx
        traces into supported layers, their functional forms, reshapes, arithmetic with numbers,
        sums (residual connections), ``torch.cat`` and max pooling (:mod:`lbinv.tracing`); its
        ``net(x)`` is then checked against the module once.
        ``output``: the index or key of the code when the module returns a tuple, list or dict
        (``output=0`` for a VAE's ``(mu, logvar)``).
        Consecutive affine modules compose into one :class:`AffineMap`; each activation makes a
        node; a trailing affine run gets the identity activation; an activation with no preceding
        affine module gets the identity map (:mod:`lbinv.lifting`).

        ``input_shape`` (no batch dimension) may be omitted when the first layer is
        ``nn.Linear`` (it is then ``(in_features,)``). If the first layer is ``nn.Linear``
        and ``input_shape`` is an image with ``in_features`` elements (e.g. (64, 64) for
        ``nn.Linear(4096, 512)``), the input is read as flattened: Flatten → module.

        Raises ValueError (naming the module and where it is — its index in the flattened
        Sequential, or its path and source line in a traced forward — and what to use instead)
        for adaptive max or Lp pooling, non-proximal activations, BatchNorm in training mode,
        operations that are not affine (a product of two values) and other modules, all of a
        network's in one error; and for an inconsistent ``input_shape``. A layer of your own
        becomes supported with :func:`~lbinv.operators.register_affine`.
        """
        if isinstance(module, LiftedNetwork):
            if input_shape is not None and check_shape("input_shape", input_shape) != module.input_shape:
                raise ValueError(
                    f"input_shape: {check_shape('input_shape', input_shape)} does not match the "
                    f"LiftedNetwork's input_shape {module.input_shape}"
                )
            if output is not None:
                raise ValueError(f"output: a LiftedNetwork has one output, got output={output!r}")
            return module
        module = uncompiled(code_module(module, output))
        network = network_steps(module, None if input_shape is None else check_shape("input_shape", input_shape))
        net = cls(lift_steps(network.steps, network.input_shape))
        if network.traced_shape is not None:
            _check_same(net, module, network.traced_shape)
        return net

    # -- evaluation -------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """N(x) for x of shape ``(B, *input_shape)``; equals ``module(x)``."""
        return self.forward_all(x)[-1]

    __call__ = forward

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """[x_1, ..., x_K]: the value of every node, x_k = σ_k(a_k); the last is N(x)."""
        values = [x]
        for node in self.nodes:
            values.append(node.activation(node.pre_activation(values)))
        return values[1:]

    # -- description ------------------------------------------------------------------
    @property
    def is_chain(self) -> bool:
        """Every node reads the one before it only (an ``nn.Sequential``): ``layers`` describe it."""
        return self._layers is not None

    @property
    def layers(self) -> list[LiftedLayer]:
        """The chain's layers ``x_l = σ_l(W_l x_{l-1} + b_l)``; a graph (residual connections, max
        pooling) has none: use :attr:`nodes`."""
        if self._layers is None:
            raise ValueError(
                "this LiftedNetwork is a graph (residual connections, concatenations or max pooling), not a chain of layers: use net.nodes"
            )
        return self._layers

    def edges_from(self, source: int) -> list[tuple[int, LiftedEdge]]:
        """``(k, edge)`` for every edge of every node k that reads value ``source`` (0: the input)."""
        return [(k, e) for k, node in enumerate(self.nodes) for e in node.edges if e.source == source]

    def affine_maps(self) -> list[AffineMap]:
        """Every edge's affine map, node by node."""
        return [e.affine for node in self.nodes for e in node.edges]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i: int) -> LiftedLayer:
        return self.layers[i]

    @property
    def input_shape(self) -> Shape:
        return next(e.affine.in_shape for node in self.nodes for e in node.edges if e.source == 0)

    @property
    def output_shape(self) -> Shape:
        return self.nodes[-1].shape

    @property
    def dtype(self) -> torch.dtype | None:
        """Dtype of the parameters; None for a network without parameters."""
        return next((a.dtype for a in self.affine_maps() if a.dtype is not None), None)

    @property
    def device(self) -> torch.device | None:
        """Device of the parameters; None for a network without parameters."""
        return next((a.device for a in self.affine_maps() if a.device is not None), None)

    def __repr__(self) -> str:
        lines = [f"LiftedNetwork(input_shape={self.input_shape}, output_shape={self.output_shape}, ["]
        for k, node in enumerate(self.nodes):
            if self.is_chain:
                lines.append(f"  {node.edges[0].affine!r} -> {type(node.activation).__name__},")
            else:
                edges = " + ".join(f"{e.affine!r} x_{e.source}" for e in node.edges)
                lines.append(f"  x_{k + 1} = {type(node.activation).__name__}({edges}),")
        return "\n".join(lines + ["])"])


# --------------------------------------------------------------------------------------
# from_module: checking a traced forward
# --------------------------------------------------------------------------------------


def _check_same(net: LiftedNetwork, module: nn.Module, traced_shape: Shape) -> None:
    """``net(x) == module(x)`` (eval semantics) on a few random inputs, in [0, 1] and signed: what
    tracing read is what the module computes."""
    like = zeros_like_module(module, 0)
    g = torch.Generator().manual_seed(0)  # not the global generator: a training run's stream stays as it was
    x = torch.cat([torch.rand(2, *net.input_shape, generator=g), torch.randn(4, *net.input_shape, generator=g)])
    x = x.to(dtype=like.dtype, device=like.device)
    with torch.no_grad(), eval_mode(module):
        want, got = module(x.reshape(len(x), *traced_shape)), net(x)
    if (
        not isinstance(want, Tensor)
        or want.shape != got.shape
        or not torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max().clamp(min=1.0)))
    ):
        shape = tuple(want.shape) if isinstance(want, Tensor) else type(want).__name__
        raise ValueError(
            f"{type(module).__name__}: lbinv read its traced forward as {net!r}, but that network's output "
            f"(shape {tuple(got.shape)}) differs from the module's (shape {shape}) on a random input; "
            "please report this, and pass an nn.Sequential of the encoder's layers meanwhile"
        )
