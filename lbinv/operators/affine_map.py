"""Affine maps ``x ↦ Wx + b`` of lifted layers (MATH.md §1).

An :class:`AffineMap` is a run of consecutive affine modules with ``forward`` (Wx + b),
``linear`` (Wx), ``adjoint`` (Wᵀy, one explicit operator per module, see
:mod:`lbinv.operators.module_ops`), ``bias`` (b = forward(0)) and ``opnorm`` (‖W‖₂ by power
iteration, cached while the parameters are unchanged). All methods are batched: tensors are
``(B, *shape)``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from itertools import chain
from typing import Any

import torch
from torch import Tensor, nn

from lbinv._checks import Shape, check_shape
from lbinv.operators.cache import cached, warm_state
from lbinv.operators.diagnostics import operator_norm
from lbinv.operators.module_ops import AffineOp
from lbinv.operators.registry import affine_op, supported_affine_layers
from lbinv.operators.sequential import flatten_modules, is_plain_sequential, where_in_sequential

__all__ = ["AffineMap"]


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
        if isinstance(modules, nn.Module) and not is_plain_sequential(modules):
            modules = [modules]
        ops = []
        for i, (path, m) in enumerate(flatten_modules(modules)):
            where = where_in_sequential(i, path, m)
            op = affine_op(m, where)
            if op is None:
                raise ValueError(f"{where} is not an affine module; AffineMap takes only: {supported_affine_layers()}")
            ops.append(op)
        self._init_ops(ops, in_shape, context)

    @classmethod
    def from_ops(cls, ops: Sequence[AffineOp], in_shape: Sequence[int], context: Sequence[nn.Module] = ()) -> AffineMap:
        """The map of ``ops`` applied in order (ops made by :func:`~lbinv.operators.affine_op`, or the operators
        lifting adds, :mod:`lbinv.operators.graph_ops`), on inputs of shape ``in_shape``; ``context`` as above."""
        self = cls.__new__(cls)
        self._init_ops(ops, in_shape, context)
        return self

    def _init_ops(self, ops: Sequence[AffineOp], in_shape: Sequence[int], context: Sequence[nn.Module]) -> None:
        self._ops = list(ops)
        self.modules: list[nn.Module] = [op.module for op in ops]
        self._context = list(context)
        self.in_shape: Shape = check_shape("input_shape", in_shape)
        # the cached values (‖W‖, b) are kept with the first module that has tensors (shared by every
        # map on it), else with this map; besides the tensors they depend on the shape and on every
        # module's type and configuration and every op's type (parameter-free ones by these alone: from_module may
        # insert a fresh Flatten at each call)
        self._cache_owner = next((op.module for op in ops if op.tensors()), self)
        modules = tuple((type(op).__name__, id(op.module) if op.tensors() else None, _configuration(op.module)) for op in ops)
        self._structure = (self.in_shape, modules)
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
    def _tensors(self) -> Iterator[Tensor]:
        return (t for op in self._ops for t in op.tensors())

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
            raise ValueError(f"AffineMap.{name} expects a batched tensor of shape (B, *{shape}), got {tuple(x.shape)}")
        ref = self._ref_tensor()
        if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
            x = x.to(dtype=ref.dtype, device=ref.device)
        return x

    # -- the operators ----------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """W x + b, exactly as the modules compute it (eval semantics). x: ``(B, *in_shape)``."""
        x = self._cast(x, self.in_shape, "forward")
        for op in self._ops:
            x = op.forward(x)
        return x

    __call__ = forward

    def linear(self, x: Tensor) -> Tensor:
        """W x (no bias), by the modules' ops without their bias terms. x: ``(B, *in_shape)``."""
        x = self._cast(x, self.in_shape, "linear")
        for op in self._ops:
            x = op.linear(x)
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        """Wᵀ y: explicit transposed ops composed in reverse order. y: ``(B, *out_shape)``."""
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
        """compute(), kept while no parameter or buffer involved changes (in-place updates such as
        optimiser steps, or edits through ``.data``, make it stale), and shared with every AffineMap
        on the same modules (:func:`~lbinv.operators.cache.cached`)."""
        return cached(self._cache_owner, (name, self._structure), list(self._tensors()), compute)

    def cached_with(self, others: Sequence[AffineMap], name: Hashable, compute: Callable[[dict], Any]) -> Any:
        """``compute(warm)`` of a value that depends on this map and on ``others`` (e.g. the norm of
        their stacked operator), kept like ‖W‖ while none of their parameters or buffers changes;
        ``name`` says everything else it depends on; ``warm`` is the :func:`~lbinv.operators.cache.warm_state`
        of the same key, kept across changes."""
        maps = (self, *others)
        key = (name, tuple(m._structure for m in maps), self.dtype, self.device)
        # kept with the first module holding tensors; maps without any (max pooling's window entries, traced
        # anew at every call) share one owner, their key saying all they compute
        owner = next((m._cache_owner for m in maps if isinstance(m._cache_owner, nn.Module)), _PARAMETER_FREE)
        return cached(owner, key, [t for m in maps for t in m._tensors()], lambda: compute(warm_state(owner, key)))

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
            warm = warm_state(self._cache_owner, ("opnorm", self._structure))  # the last vectors, across steps
            return operator_norm(self.linear, self.adjoint, self.in_shape, dtype=self.dtype, device=self.device, warm=warm)

        return self._cached("opnorm", compute)

    def __repr__(self) -> str:
        names = ", ".join(type(m).__name__ for m in self.modules)
        return f"AffineMap([{names}], in_shape={self.in_shape}, out_shape={self.out_shape})"


class _ParameterFree:
    """The owner of cached values that depend on parameter-free maps only."""


_PARAMETER_FREE = _ParameterFree()


def _configuration(module: nn.Module) -> tuple:
    """What a module computes besides its tensors: its type and its public plain attributes
    (kernel size, stride, padding, divisor, …)."""
    attributes = sorted((k, repr(v)) for k, v in vars(module).items() if not k.startswith("_") and k != "training")
    return type(module).__qualname__, tuple(attributes)
