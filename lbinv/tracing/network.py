"""What lbinv reads a module as, decided here once: a plain ``nn.Sequential`` of layers (or a single layer)
read as it is, anything else traced (:mod:`~lbinv.tracing.graph`); and the input shape, given or inferred
from a first ``nn.Linear``, for both."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from lbinv._checks import Shape, check_shape, is_plain
from lbinv.operators.registry import is_identity, is_registered
from lbinv.operators.sequential import flatten_modules, is_plain_sequential, where_in_sequential
from lbinv.proximal.torch_modules import is_activation
from lbinv.tracing.code import eval_mode
from lbinv.tracing.graph import Step, leading_modules, read_steps, trace

__all__ = ["Network", "network_steps"]


def _is_elementwise(module: nn.Module) -> bool:
    """An activation, identity or dropout module: it maps its input element by element, so that a first
    ``nn.Linear`` after it still fixes the network's input shape."""
    return is_identity(module) or is_activation(module)


@dataclass(frozen=True)
class Network:
    """A module read as :class:`~lbinv.tracing.Step` s on inputs of shape ``input_shape`` (an image read by a
    first ``nn.Linear`` starts with a Flatten step); ``traced_shape``: the shape a traced module takes (what its
    lifted network is checked against), None for a Sequential or a single layer, read as they are."""

    steps: list[Step]
    input_shape: Shape
    traced_shape: Shape | None


def network_steps(module: nn.Module, input_shape: Shape | None) -> Network:
    """``module`` as steps: the layers of a plain ``nn.Sequential`` (nested ones flattened) or a single layer
    as they are, any other module traced in eval mode (:func:`~lbinv.tracing.graph.trace`).

    The input shape is ``input_shape``, checked against a first ``nn.Linear`` (after elementwise modules), or
    that layer's ``(in_features,)`` (:func:`_linear_input_shape`); such a layer given an image with
    ``in_features`` elements reads it flattened. Raises ValueError for an empty Sequential, for a shape that
    does not fit, and as :func:`~lbinv.tracing.graph.trace` and :func:`~lbinv.tracing.graph.read_steps` do.
    """
    layers = _layers(module)
    if layers is not None:
        steps = [Step(where, (i,), m) for i, (where, m) in enumerate(layers)]
        shape, first = _input_shape(input_shape, layers)
        traced = None
    else:
        with eval_mode(module):  # eval semantics, as the lifted network (and no BatchNorm statistics updated)
            graph_module = trace(module)
            shape, first = _input_shape(input_shape, leading_modules(graph_module))
            traced = shape if first is None or shape[-1] == first else (first,)
            steps = read_steps(graph_module, traced, module)
    if first is not None and shape[-1] != first:  # an image of in_features elements: read flattened
        steps = [Step("Flatten", (0,), nn.Flatten()), *(_shifted(s) for s in steps)]
    return Network(steps, shape, traced)


def _layers(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """``(where, layer)`` of a plain nn.Sequential of layers or of a single layer; None for a module to trace."""
    if is_plain_sequential(module):
        items = flatten_modules(module)
        if not items:
            raise ValueError("the nn.Sequential is empty: nothing to invert")
        if all(_is_layer(m) for _, m in items):
            return [(where_in_sequential(i, path, m), m) for i, (path, m) in enumerate(items)]
    if _is_layer(module) and (is_activation(module) or not module._modules):
        return [(where_in_sequential(0, "", module), module)]
    return None


def _is_layer(module: nn.Module) -> bool:
    """A layer of torch.nn itself or of the table of operations (read as it is), not a user's class (traced)."""
    return type(module).__module__.startswith("torch.nn.") or is_registered(module)


def _input_shape(input_shape: Shape | None, leading: Iterable[tuple[str, nn.Module | None]]) -> tuple[Shape, int | None]:
    """The input shape (:func:`_linear_input_shape`) of a network whose first modules are ``leading``, and the
    ``in_features`` of a first nn.Linear among them (after elementwise modules), if any."""
    where, first = "none", None
    for where, module in leading:
        if module is None or not _is_elementwise(module):
            first = module
            break
    if first is not None and is_plain(first, nn.Linear):
        return _linear_input_shape(input_shape, (where, first.in_features), where), first.in_features
    return _linear_input_shape(input_shape, None, where), None


def _linear_input_shape(input_shape: Shape | None, first_linear: tuple[str, int] | None, where: str) -> Shape:
    """A network's input shape: ``input_shape``, checked against a first linear layer (``first_linear``:
    where it is and its ``in_features``; it also accepts an image with ``in_features`` elements, read
    flattened), or else that layer's ``(in_features,)``. ``where``: the first layer, named when
    ``input_shape`` is required."""
    if input_shape is None:
        if first_linear is not None:
            return (first_linear[1],)
        raise ValueError(
            f"input_shape is required: it can only be inferred when the first layer is nn.Linear (or F.linear), but "
            f"the first layer is {where}; pass input_shape without the batch dimension, e.g. input_shape=(1, 28, 28)"
        )
    shape = check_shape("input_shape", input_shape)
    if first_linear is not None:
        where, n = first_linear
        if shape[-1] != n and (len(shape) == 1 or math.prod(shape) != n):
            raise ValueError(
                f"{where} expects input_shape ({n},) (in_features={n}), or an image with {n} elements in all "
                f"(read as flattened), but got input_shape {shape}"
            )
    return shape


def _shifted(step: Step) -> Step:
    """``step`` after one more step before it."""
    return Step(step.where, tuple(i + 1 for i in step.inputs), step.module, step.coefficients, step.dim, step.problem)
