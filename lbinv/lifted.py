"""A torch module seen as lifted layers (MATH.md §1).

A feed-forward network is read as

    N(x) = σ_L(W_L σ_{L-1}( ... σ_1(W_1 x + b_1) ... ) + b_L),   σ_l = prox_{Ψ_l},

where each ``x ↦ W_l x + b_l`` is an :class:`AffineMap` (a run of consecutive affine
modules: Linear, convolutions, average pooling, reshapes, BatchNorm in eval mode, ...) and
each σ_l a :class:`~lbinv.proximal.ProxActivation`. :class:`LiftedNetwork.from_module`
splits an ``nn.Sequential`` into such :class:`LiftedLayer` s, and a module with its own
``forward()`` after tracing it into a chain of layers (:mod:`lbinv.tracing`).

The affine maps themselves (forward, linear, adjoint, bias, opnorm) live in
:mod:`lbinv.operators`.

The lifted view reads the modules *live* (an optimiser step is seen at once) and always uses
eval semantics: BatchNorm with its running statistics, Dropout as the identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lbinv._checks import Shape, check_shape
from lbinv.operators import SUPPORTED_AFFINE_LAYERS, AffineMap, AffineOp, affine_op
from lbinv.operators.module_ops import IdentityOp, LinearOp, ReshapeOp
from lbinv.operators.sequential import flatten_modules, is_plain_sequential, uncompiled, where_in_sequential
from lbinv.tracing import Output, code_module, traced_layers
from lbinv.proximal import IDENTITY, SUPPORTED_ACTIVATIONS, ProxActivation, is_activation, proximal_activation

__all__ = ["LiftedLayer", "LiftedNetwork"]

_SEQUENTIAL_MSG = (
    "lbinv lifts chains of supported layers: " + SUPPORTED_AFFINE_LAYERS
    + ", nested nn.Sequential, and proximal activations (" + SUPPORTED_ACTIVATIONS + ")"
)

_MAXPOOL_ALTERNATIVE = {
    nn.MaxPool1d: "nn.AvgPool1d",
    nn.MaxPool2d: "nn.AvgPool2d",
    nn.AdaptiveMaxPool1d: "nn.AdaptiveAvgPool1d",
    nn.AdaptiveMaxPool2d: "nn.AdaptiveAvgPool2d",
    nn.FractionalMaxPool2d: "nn.AvgPool2d",
    nn.LPPool1d: "nn.AvgPool1d",
    nn.LPPool2d: "nn.AvgPool2d",
}


@dataclass
class LiftedLayer:
    """One lifted layer x_l = σ_l(W_l x_{l-1} + b_l), σ_l = prox_{Ψ_l} (MATH.md §1)."""

    affine: AffineMap
    activation: ProxActivation

    def __call__(self, x: Tensor) -> Tensor:
        return self.activation(self.affine.forward(x))


class LiftedNetwork:
    """An ``nn.Sequential`` read as L lifted layers (MATH.md §1):

        N(x) = σ_L(W_L σ_{L-1}( ... σ_1(W_1 x + b_1) ... ) + b_L).

    Build it with :meth:`from_module`. ``net(x)`` equals ``module(x)`` (eval semantics);
    ``net.layers[l].affine`` is an :class:`AffineMap`, ``net.layers[l].activation`` a
    :class:`~lbinv.proximal.ProxActivation`. The network views the module live: parameter
    updates are seen at once, shapes are fixed at construction. One exception: an edit through
    ``.data`` (which bumps no version counter) is not seen by the cached kernel of a strided
    Conv2d's polyphase adjoint; build a new network after one (``invert(module, …)`` and the
    callback build one at every call).
    """

    def __init__(self, layers: Sequence[LiftedLayer]) -> None:
        if not layers:
            raise ValueError("a LiftedNetwork needs at least one layer")
        self.layers: list[LiftedLayer] = list(layers)

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_module(
        cls,
        module: nn.Module | Callable[[Tensor], Any] | LiftedNetwork,
        input_shape: Sequence[int] | int | None = None,
        *,
        output: Output = None,
    ) -> LiftedNetwork:
        """Split ``module`` into lifted layers.

        ``module``: an ``nn.Sequential`` (nested ones are flattened) of supported layers, a
        single supported layer (e.g. the paper's perceptron ``nn.Linear(4096, 512)``), or any
        module with its own ``forward()`` (or a method of one, e.g. ``vae.encode``) that torch.fx
        traces into a chain of such layers, their functional forms, reshapes and arithmetic with
        numbers (:mod:`lbinv.tracing`); its ``net(x)`` is then checked against the module once.
        ``output``: the index or key of the code when the module returns a tuple, list or dict
        (``output=0`` for a VAE's ``(mu, logvar)``).
        Consecutive affine modules compose into one :class:`AffineMap`; each activation
        closes a layer; a trailing affine run gets the identity activation; an activation
        with no preceding affine module gets the identity map.

        ``input_shape`` (no batch dimension) may be omitted when the first layer is
        ``nn.Linear`` (it is then ``(in_features,)``). If the first layer is ``nn.Linear``
        and ``input_shape`` is an image with ``in_features`` elements (e.g. (64, 64) for
        ``nn.Linear(4096, 512)``), the input is read as flattened: Flatten → module.

        Raises ValueError (naming the module and where it is — its index in the flattened
        Sequential, or its path and source line in a traced forward — and what to use instead)
        for max pooling, skip connections, non-proximal activations, two activations in a row,
        BatchNorm in training mode, other modules, and inconsistent ``input_shape``.
        """
        if isinstance(module, LiftedNetwork):
            if input_shape is not None and check_shape("input_shape", input_shape) != module.input_shape:
                raise ValueError(
                    f"input_shape: {check_shape('input_shape', input_shape)} does not match the "
                    f"LiftedNetwork's input_shape {module.input_shape}"
                )
            return module
        module = uncompiled(code_module(module, output))
        if input_shape is not None:
            input_shape = check_shape("input_shape", input_shape)
        items, traced_shape = _layers(module, input_shape)
        segments = _segments(items)
        first = next((op for ops, _ in segments for op in ops if not isinstance(op, IdentityOp)), None)
        shape = _input_shape(input_shape or traced_shape, first)
        if isinstance(first, LinearOp) and shape[-1] != first.module.in_features:
            # an image of in_features elements: the perceptron reads it vectorised
            segments[0][0].insert(0, ReshapeOp(nn.Flatten(), "Flatten"))
        # affine maps, shapes chained through the (elementwise) activations
        context = [m for _, m in items]
        layers = []
        for ops, act in segments:
            affine = AffineMap._from_ops(ops, shape, context)
            layers.append(LiftedLayer(affine, act))
            shape = affine.out_shape
        net = cls(layers)
        if traced_shape is not None:
            _check_same(net, module, traced_shape)
        return net

    # -- evaluation -------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """N(x) for x of shape (B, *input_shape); equals module(x)."""
        for layer in self.layers:
            x = layer(x)
        return x

    __call__ = forward

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """[x_1, ..., x_L]: the output of every layer, x_l = σ_l(W_l x_{l-1} + b_l)."""
        outs = []
        for layer in self.layers:
            x = layer(x)
            outs.append(x)
        return outs

    # -- description ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i: int) -> LiftedLayer:
        return self.layers[i]

    @property
    def input_shape(self) -> Shape:
        return self.layers[0].affine.in_shape

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].affine.out_shape

    @property
    def dtype(self) -> torch.dtype | None:
        """Dtype of the parameters; None for a network without parameters."""
        return next((ly.affine.dtype for ly in self.layers if ly.affine.dtype is not None), None)

    @property
    def device(self) -> torch.device | None:
        """Device of the parameters; None for a network without parameters."""
        return next((ly.affine.device for ly in self.layers if ly.affine.device is not None), None)

    def __repr__(self) -> str:
        lines = [f"LiftedNetwork(input_shape={self.input_shape}, output_shape={self.output_shape}, ["]
        for ly in self.layers:
            lines.append(f"  {ly.affine!r} -> {type(ly.activation).__name__},")
        return "\n".join(lines + ["])"])


# --------------------------------------------------------------------------------------
# from_module parsing
# --------------------------------------------------------------------------------------


def _layers(module: nn.Module, input_shape: Shape | None) -> tuple[list[tuple[str, nn.Module]], Shape | None]:
    """(where, module) for each layer: of a plain nn.Sequential, a single layer, or a traced forward;
    and, for a traced one, the shape its graph was read with (None otherwise)."""
    if is_plain_sequential(module):
        items = flatten_modules(module)
        if not items:
            raise ValueError("the nn.Sequential is empty: nothing to invert")
        if all(_is_torch_layer(m) for _, m in items):
            return [(where_in_sequential(i, path, m), m) for i, (path, m) in enumerate(items)], None
    if _is_leaf_layer(module):
        return [(where_in_sequential(0, "", module), module)], None
    return traced_layers(module, input_shape)


def _is_torch_layer(module: nn.Module) -> bool:
    """A layer of torch.nn itself (read as it is), not a user's class (traced through)."""
    return type(module).__module__.startswith("torch.nn.")


def _check_same(net: LiftedNetwork, module: nn.Module, traced_shape: Shape) -> None:
    """``net(x) == module(x)`` on one random input: what tracing read is what the module computes."""
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    like = {} if param is None else {"dtype": param.dtype, "device": param.device}
    x = torch.rand(2, *net.input_shape, **like)
    with torch.no_grad():
        want, got = module(x.reshape(2, *traced_shape)), net(x)
    if not isinstance(want, Tensor) or want.shape != got.shape or not torch.allclose(
        got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max().clamp(min=1.0))
    ):
        shape = tuple(want.shape) if isinstance(want, Tensor) else type(want).__name__
        raise ValueError(
            f"{type(module).__name__}: lbinv read its traced forward as {net!r}, but that network's output "
            f"(shape {tuple(got.shape)}) differs from the module's (shape {shape}) on a random input; "
            "please report this, and pass an nn.Sequential of the encoder's layers meanwhile"
        )


def _segments(items: list[tuple[str, nn.Module]]) -> list[tuple[list[AffineOp], ProxActivation]]:
    """Split the layers into (affine ops, activation) pairs: each activation closes one, a
    trailing affine run (or a network without activations) gets the identity activation."""
    segments: list[tuple[list[AffineOp], ProxActivation]] = []
    run: list[AffineOp] = []
    prev_act = ""  # where of the activation that closed the last segment
    for where, m in items:
        alt = next((a for t, a in _MAXPOOL_ALTERNATIVE.items() if isinstance(m, t)), None)
        if alt is not None:
            raise ValueError(
                f"{where} is not supported: max/Lp pooling is not affine and has no lifted "
                f"Bregman form; use {alt} instead (average pooling is linear)"
            )
        op = affine_op(m, where)
        if op is not None:
            run.append(op)
            continue
        if not is_activation(m):
            raise ValueError(f"{where} is not supported; " + _SEQUENTIAL_MSG)
        try:
            act = proximal_activation(m)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from err
        if not run and segments:
            raise ValueError(
                f"{where}: two activations in a row ({prev_act} then "
                f"{type(m).__name__}); each activation must follow an affine layer. "
                "Remove one of them or put an affine layer (e.g. Linear, Conv2d) between them"
            )
        segments.append((run, act))
        run, prev_act = [], where
    if run or not segments:
        segments.append((run, IDENTITY))
    return segments


def _input_shape(input_shape: Sequence[int] | int | None, first: AffineOp | None) -> Shape:
    """The network's input shape: the given one, checked against a first nn.Linear (which
    also accepts an image with in_features elements), or else that Linear's (in_features,)."""
    if input_shape is None:
        if isinstance(first, LinearOp):
            return (first.module.in_features,)
        what = first.where if first is not None else "the first module"
        raise ValueError(
            f"input_shape is required: it can only be inferred when the first layer is "
            f"nn.Linear, but the first layer is {what}; pass input_shape without the "
            "batch dimension, e.g. input_shape=(1, 28, 28)"
        )
    shape = check_shape("input_shape", input_shape)
    if isinstance(first, LinearOp):
        n = first.module.in_features
        if shape[-1] != n and (len(shape) == 1 or math.prod(shape) != n):
            raise ValueError(
                f"{first.where} expects input_shape ({n},) (in_features={n}), "
                f"or an image with {n} elements in all (read as flattened), but got "
                f"input_shape {shape}"
            )
    return shape


def _is_leaf_layer(module: nn.Module) -> bool:
    """A single supported (or knowingly refused) layer, accepted as a one-module network."""
    if any(isinstance(module, t) for t in _MAXPOOL_ALTERNATIVE):
        return True
    try:
        if affine_op(module, type(module).__name__) is not None:
            return True
    except ValueError:
        return True  # a known affine type with a refused configuration: report it later
    return is_activation(module)
