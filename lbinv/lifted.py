"""A torch module seen as lifted layers (MATH.md §1).

A feed-forward network is read as

    N(x) = σ_L(W_L σ_{L-1}( ... σ_1(W_1 x + b_1) ... ) + b_L),   σ_l = prox_{Ψ_l},

where each ``x ↦ W_l x + b_l`` is an :class:`AffineMap` (a run of consecutive affine
modules: Linear, convolutions, average pooling, reshapes, BatchNorm in eval mode, ...) and
each σ_l a :class:`~lbinv.proximal.ProxActivation`. :class:`LiftedNetwork.from_module`
splits an ``nn.Sequential`` into such :class:`LiftedLayer` s.

Every affine map offers ``forward`` (W x + b), ``linear`` (W x), ``adjoint`` (Wᵀ y, explicit
transposed operators, ``torch.func.vjp`` only where no clean closed form exists; one op per
module, see :mod:`lbinv.affine_ops`), ``bias`` (b = forward(0)) and ``opnorm`` (‖W‖₂ by power
iteration, cached while the parameters are unchanged). All methods are batched: tensors are
``(B, *shape)``.

The lifted view reads the modules *live* (an optimiser step is seen at once) and always uses
eval semantics: BatchNorm with its running statistics, Dropout as the identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn

from lbinv.affine_ops import SUPPORTED_AFFINE_LAYERS, IdentityOp, LinearOp, Op, ReshapeOp, Shape, affine_op
from lbinv.proximal import (
    IDENTITY,
    SUPPORTED_ACTIVATIONS,
    ProxActivation,
    is_activation,
    proximal_activation,
)

__all__ = ["AffineMap", "LiftedLayer", "LiftedNetwork", "operator_norm"]

_SEQUENTIAL_MSG = (
    "the encoder must be an nn.Sequential of supported layers: " + SUPPORTED_AFFINE_LAYERS
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


# --------------------------------------------------------------------------------------
# Power iteration
# --------------------------------------------------------------------------------------


def operator_norm(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    in_shape: Sequence[int],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_vectors: int = 4,
    max_iter: int = 500,
    rtol: float = 1e-5,
    check_every: int = 10,
    seed: int = 0,
) -> float:
    """‖A‖₂ of a linear map (not squared) by block power iteration on AᵀA.

    ``n_vectors`` seeded random vectors are iterated in one batch, V ← orth(AᵀA V); every
    ``check_every`` iterations the Rayleigh–Ritz estimate λ = max eig((AV)(AV)ᵀ) is taken,
    and the loop stops once it changes by less than ``rtol`` (relative) or after
    ``max_iter`` iterations. Returns sqrt(λ).

    The estimate errs on the LOW side: λ is a Ritz value of AᵀA on an orthonormal subspace,
    hence ≤ ‖A‖₂² (up to rounding); callers multiply by a safety factor (e.g. 1.01).
    """
    dtype = dtype or torch.float64
    in_shape = tuple(in_shape)
    n = math.prod(in_shape)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    k = max(1, min(n_vectors, n))
    with torch.no_grad():
        v = torch.randn(k, n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        v = torch.linalg.qr(v.T).Q.T
        est_prev, est = -1.0, 0.0
        for it in range(1, max_iter + 1):
            av = forward(v.reshape(k, *in_shape))
            avf = av.reshape(k, -1)
            if it % check_every == 0 or it == max_iter:
                gram = avf @ avf.T
                est = float(torch.linalg.eigvalsh(0.5 * (gram + gram.T)).max().clamp_min(0.0))
                if not math.isfinite(est):
                    raise ValueError("power iteration produced non-finite values: check the weights")
                if est == 0.0 or abs(est - est_prev) <= rtol * est:
                    break
                est_prev = est
            w = adjoint(av).reshape(k, -1)
            v = torch.linalg.qr(w.T).Q.T
    return math.sqrt(est)


# --------------------------------------------------------------------------------------
# AffineMap
# --------------------------------------------------------------------------------------


class AffineMap:
    """x ↦ W x + b for a run of consecutive affine modules (MATH.md §1).

    Parameters
    ----------
    modules : an affine module or a sequence of them (nested plain ``nn.Sequential`` are
        flattened); an empty sequence is the identity.
    in_shape : input shape without the batch dimension.
    context : optional further modules whose parameters give ``dtype``/``device`` when these
        modules have none (used by :class:`LiftedNetwork` for parameter-free runs).

    ``out_shape`` is found once by a dry forward of zeros. Computation happens in the
    parameters' dtype and on their device (inputs are cast); a map without any parameters
    (pooling, reshapes) computes in the input's dtype and reports ``dtype``/``device`` None.
    """

    def __init__(
        self,
        modules: nn.Module | Sequence[nn.Module],
        in_shape: Sequence[int],
        *,
        context: Sequence[nn.Module] = (),
    ) -> None:
        if isinstance(modules, nn.Module):
            modules = list(modules) if _is_plain_sequential(modules) else [modules]
        ops = []
        for i, (path, m) in enumerate(_flatten_modules(list(modules))):
            where = _where(i, path, m)
            op = affine_op(m, where)
            if op is None:
                raise ValueError(
                    f"{where} is not an affine module; AffineMap takes only: {SUPPORTED_AFFINE_LAYERS}"
                )
            ops.append(op)
        self._init_ops(ops, in_shape, context)

    @classmethod
    def _from_ops(cls, ops: list[Op], in_shape: Sequence[int], context: Sequence[nn.Module]) -> AffineMap:
        self = cls.__new__(cls)
        self._init_ops(ops, in_shape, context)
        return self

    def _init_ops(self, ops: list[Op], in_shape: Sequence[int], context: Sequence[nn.Module]) -> None:
        self._ops = ops
        self.modules: list[nn.Module] = [op.module for op in ops]
        self._context = list(context)
        self.in_shape: Shape = _as_shape(in_shape)
        self._cache: dict[str, tuple[tuple, Any]] = {}
        # dry forward of zeros (batch of 2: catches modules that would mix the batch dim)
        shape, x = self.in_shape, self._zeros(2)
        with torch.no_grad():
            for op in ops:
                op.check_input(shape)
                try:
                    y = op.forward(x)
                except (RuntimeError, ValueError, IndexError) as err:
                    raise ValueError(
                        f"{op.where} cannot take inputs of shape {shape} (no batch dimension), the shape "
                        f"that input_shape and the layers before it give: {err}"
                    ) from err
                if y.dim() == 0 or y.shape[0] != 2:
                    raise ValueError(
                        f"{op.where} changes the batch dimension (input (B, *{shape}) gave "
                        f"{tuple(y.shape)} for B = 2); it must act on dims 1.. only"
                    )
                op.set_shapes(shape, tuple(y.shape[1:]))
                shape, x = tuple(y.shape[1:]), y
        self.out_shape: Shape = shape

    # -- dtype / device ---------------------------------------------------------------
    def _tensors(self) -> list[Tensor]:
        return [t for op in self._ops for t in op.tensors()]

    def _ref_tensor(self) -> Tensor | None:
        """The first floating-point parameter or buffer: of these modules, else of the context."""
        context = (t for m in self._context for t in chain(m.parameters(), m.buffers()))
        return next((t for t in chain(self._tensors(), context) if t.is_floating_point()), None)

    @property
    def dtype(self) -> torch.dtype | None:
        """Dtype of the parameters (computations happen in it); None if there are none."""
        ref = self._ref_tensor()
        return None if ref is None else ref.dtype

    @property
    def device(self) -> torch.device | None:
        """Device of the parameters; None if there are none."""
        ref = self._ref_tensor()
        return None if ref is None else ref.device

    def _zeros(self, batch: int) -> Tensor:
        """Zeros of shape (batch, *in_shape) in the parameters' dtype and device (else the defaults)."""
        return torch.zeros((batch, *self.in_shape), dtype=self.dtype, device=self.device)

    def _cast(self, x: Tensor, shape: Shape, name: str) -> Tensor:
        if tuple(x.shape[1:]) != shape or x.dim() != len(shape) + 1:
            raise ValueError(
                f"AffineMap.{name} expects a batched tensor of shape (B, *{shape}), "
                f"got {tuple(x.shape)}"
            )
        ref = self._ref_tensor()
        if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
            x = x.to(dtype=ref.dtype, device=ref.device)
        return x

    # -- the operators ----------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """W x + b, exactly as the modules compute it (eval semantics). x: (B, *in_shape)."""
        x = self._cast(x, self.in_shape, "forward")
        for op in self._ops:
            x = op.forward(x)
        return x

    __call__ = forward

    def linear(self, x: Tensor) -> Tensor:
        """W x (no bias), by the modules' ops without their bias terms. x: (B, *in_shape)."""
        x = self._cast(x, self.in_shape, "linear")
        for op in self._ops:
            x = op.linear(x)
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        """Wᵀ y: explicit transposed ops composed in reverse order. y: (B, *out_shape)."""
        y = self._cast(y, self.out_shape, "adjoint")
        for op in reversed(self._ops):
            y = op.adjoint(y)
        return y

    def nonfinite_modules(self) -> list[str]:
        """Where (index and type, as in error messages) each module with a NaN/inf parameter or
        buffer sits; ``[]`` when all are finite. One host synchronisation."""
        checks = [(op.where, t) for op in self._ops for t in op.tensors() if t.is_floating_point() and t.numel()]
        if not checks:
            return []
        finite = torch.stack([torch.isfinite(t).all() for _, t in checks]).tolist()
        return list(dict.fromkeys(where for (where, _), ok in zip(checks, finite) if not ok))

    # -- cached quantities ------------------------------------------------------------
    def _cached(self, name: str, compute: Callable[[], Any]) -> Any:
        """compute(), cached while no parameter or buffer involved changes. The key is the
        (id, version) of each of them, so in-place updates (optimiser steps) invalidate it."""
        key = _version_key(self._tensors())
        if key is not None and name in self._cache and self._cache[name][0] == key:
            return self._cache[name][1]
        value = compute()
        if key is not None:
            self._cache[name] = (key, value)
        return value

    @property
    def bias(self) -> Tensor:
        """b = forward(0), shape ``out_shape`` (detached; cached while parameters are unchanged)."""

        def compute() -> Tensor:
            with torch.inference_mode(False), torch.no_grad():  # a normal tensor, no graph
                return self.forward(self._zeros(1))[0]

        return self._cached("bias", compute)

    def opnorm(self) -> float:
        """‖W‖₂ (spectral norm, NOT squared) by power iteration on WᵀW (see
        :func:`operator_norm`): accurate to well within 1%, and errs on the LOW side, so
        step sizes should use a safety factor. Cached while the parameters are unchanged."""

        def compute() -> float:
            if all(op.isometry for op in self._ops):
                return 1.0  # identities and reshapes (or no op at all): ‖W‖ = 1
            return operator_norm(
                self.linear, self.adjoint, self.in_shape, dtype=self.dtype, device=self.device
            )

        return self._cached("opnorm", compute)

    def __repr__(self) -> str:
        names = ", ".join(type(m).__name__ for m in self.modules)
        return f"AffineMap([{names}], in_shape={self.in_shape}, out_shape={self.out_shape})"


# --------------------------------------------------------------------------------------
# Lifted layers and networks
# --------------------------------------------------------------------------------------


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
    updates are seen at once, shapes are fixed at construction.
    """

    def __init__(self, layers: Sequence[LiftedLayer], module: nn.Module | None = None) -> None:
        if not layers:
            raise ValueError("a LiftedNetwork needs at least one layer")
        self.layers: list[LiftedLayer] = list(layers)
        self.module = module

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_module(
        cls, module: nn.Module | LiftedNetwork, input_shape: Sequence[int] | int | None = None
    ) -> LiftedNetwork:
        """Split ``module`` into lifted layers.

        ``module``: an ``nn.Sequential`` (nested ones are flattened) of supported layers, or a
        single supported layer (e.g. the paper's perceptron ``nn.Linear(4096, 512)``).
        Consecutive affine modules compose into one :class:`AffineMap`; each activation
        closes a layer; a trailing affine run gets the identity activation; an activation
        with no preceding affine module gets the identity map.

        ``input_shape`` (no batch dimension) may be omitted when the first layer is
        ``nn.Linear`` (it is then ``(in_features,)``). If the first layer is ``nn.Linear``
        and ``input_shape`` is an image with ``in_features`` elements (e.g. (64, 64) for
        ``nn.Linear(4096, 512)``), the input is read as flattened: Flatten → module.

        Raises ValueError (naming the module, its index in the flattened Sequential and
        what to use instead) for max pooling, non-proximal activations, two activations in
        a row, BatchNorm in training mode, other modules, and inconsistent ``input_shape``.
        """
        if isinstance(module, LiftedNetwork):
            if input_shape is not None and _as_shape(input_shape) != module.input_shape:
                raise ValueError(
                    f"input_shape {tuple(_as_shape(input_shape))} does not match the "
                    f"LiftedNetwork's input_shape {module.input_shape}"
                )
            return module
        items = _leaf_modules(module)
        segments = _segments(items)
        first = next((op for ops, _ in segments for op in ops if not isinstance(op, IdentityOp)), None)
        shape = _input_shape(input_shape, first)
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
        return cls(layers, module)

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


def _leaf_modules(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(dotted path, module) of the layers of a plain nn.Sequential, or of a single layer."""
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be an nn.Module, got {type(module).__name__}")
    if _is_plain_sequential(module):
        items = _flatten_modules(module)
        if not items:
            raise ValueError("the nn.Sequential is empty: nothing to invert")
        return items
    if _is_leaf_layer(module):
        return [("", module)]
    raise ValueError(
        f"{type(module).__name__} is not a plain nn.Sequential (a container, or a module with "
        "its own forward(), cannot be split into layers); "
        + _SEQUENTIAL_MSG + ". Pass e.g. model.encoder if it is such a Sequential."
    )


def _segments(items: list[tuple[str, nn.Module]]) -> list[tuple[list[Op], ProxActivation]]:
    """Split the layers into (affine ops, activation) pairs: each activation closes one, a
    trailing affine run (or a network without activations) gets the identity activation."""
    segments: list[tuple[list[Op], ProxActivation]] = []
    run: list[Op] = []
    prev_act = ""  # where of the activation that closed the last segment
    for i, (path, m) in enumerate(items):
        where = _where(i, path, m)
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


def _input_shape(input_shape: Sequence[int] | int | None, first: Op | None) -> Shape:
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
    shape = _as_shape(input_shape)
    if isinstance(first, LinearOp):
        n = first.module.in_features
        if shape[-1] != n and (len(shape) == 1 or math.prod(shape) != n):
            raise ValueError(
                f"{first.where} expects input_shape ({n},) (in_features={n}), "
                f"or an image with {n} elements in all (read as flattened), but got "
                f"input_shape {shape}"
            )
    return shape


def _as_shape(input_shape: Sequence[int] | int) -> Shape:
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shape must be a tuple of positive ints (no batch dimension), got {input_shape!r}"
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints (no batch dimension), got {shape}"
        )
    return shape


def _is_plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


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


def _flatten_modules(
    module: nn.Module | Iterable[nn.Module], prefix: str = ""
) -> list[tuple[str, nn.Module]]:
    """(dotted path, module) for every leaf of nested plain nn.Sequentials."""
    items = module.named_children() if isinstance(module, nn.Module) else (
        (str(i), m) for i, m in enumerate(module))
    out: list[tuple[str, nn.Module]] = []
    for name, child in items:
        path = f"{prefix}{name}"
        if _is_plain_sequential(child):
            out.extend(_flatten_modules(child, prefix=path + "."))
        else:
            out.append((path, child))
    return out


def _where(index: int, path: str, module: nn.Module) -> str:
    """Human-readable location of a module in the flattened Sequential."""
    name = type(module).__name__
    if not path or path == str(index):
        return f"module {index} ({name})"
    return f"module {index} ({name}, at '{path}' of the nested nn.Sequential)"


def _version_key(tensors: Iterable[Tensor]) -> tuple | None:
    """(id, version, data_ptr, dtype, device) of every tensor; None if one has no version
    counter (inference tensors), meaning "do not cache"."""
    key = []
    for t in tensors:
        try:
            v = t._version
        except RuntimeError:
            return None
        key.append((id(t), v, t.data_ptr(), t.dtype, t.device))
    return tuple(key)
