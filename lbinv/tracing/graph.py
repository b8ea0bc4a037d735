"""Tracing a module with torch.fx and reading its graph as :class:`Step` s: layers applied to earlier
values, and joins of values (sums, concatenations). Import :func:`traced_steps` from
:mod:`lbinv.tracing`."""

from __future__ import annotations

import builtins
import math
import operator
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from lbinv._checks import Shape, check_shape
from lbinv.operators.registry import functional_affine_forms, is_registered
from lbinv.proximal.torch_modules import is_activation
from lbinv.tracing.code import CodeModule, OutputError, eval_mode, several_outputs
from lbinv.tracing.functions import (
    ARITHMETIC,
    IDENTITIES,
    METADATA,
    RESHAPES,
    Refusal,
    callable_name,
    module_builder,
    reshape,
    scale_shift,
)


class _Tracer(fx.Tracer):
    """fx's tracer, recording source lines, that reads a ``torch.compile``d submodule as the module it wraps and
    keeps the layers of :mod:`lbinv.operators.registry` whole (torch.nn layers always are)."""

    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_registered(m) or super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        original = getattr(m, "_orig_mod", None)
        if isinstance(original, nn.Module):
            return self.call_module(original, original.forward, args, kwargs)
        return super().call_module(m, forward, args, kwargs)


@dataclass(frozen=True)
class Step:
    """One operation of a traced network. Value 0 is the network's input and step ``i`` makes value
    ``i + 1``: ``module`` (an affine layer, an activation or max pooling) applied to value ``inputs[0]``,
    or, without a module, a join of the values ``inputs``: their sum with ``coefficients``, or their
    concatenation along the sample dimension ``dim`` (the batch dimension not counted). A construct
    that cannot be lifted is a step with its refusal as ``problem`` (``where`` included), so that
    :func:`~lbinv.lifting.lift_steps` reports every one of a network in one error."""

    where: str
    inputs: tuple[int, ...]
    module: nn.Module | None = None
    coefficients: tuple[float, ...] = ()
    dim: int | None = None
    problem: str = ""


def traced_steps(module: nn.Module, input_shape: Shape | None) -> tuple[list[Step], Shape]:
    """The operations of ``module``'s traced forward as :class:`Step` s in order (the last one's value is
    the output), and the input shape to read them with (``input_shape``, or ``(in_features,)`` of a
    first linear layer; a first linear layer given an image with ``in_features`` elements reads it
    flattened, like :meth:`~lbinv.lifted.LiftedNetwork.from_module`).

    A construct that is not affine, an activation or a max pooling becomes a step with a ``problem``
    naming it and its source line. Raises ValueError for a module fx cannot trace.
    """
    with eval_mode(module):  # eval semantics, as the lifted network (and no BatchNorm statistics updated)
        graph_module = _trace(module)
        nodes = [n for n in graph_module.graph.nodes if n.op not in ("placeholder", "output", "get_attr")]
        placeholders = [n for n in graph_module.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ValueError(
                f"{_name(module)} takes {len(placeholders)} inputs; lbinv inverts a map of one tensor: "
                "pass a module or method of one input"
            )
        result = next(n for n in graph_module.graph.nodes if n.op == "output").args[0]
        if isinstance(result, (tuple, list, dict)):
            raise OutputError(several_outputs(_name(module), result))
        shape = _propagation_shape(graph_module, nodes, input_shape)
        _propagate(graph_module, shape, module)
    return _steps(graph_module, placeholders[0]), shape


def _name(module: nn.Module) -> str:
    """``Class.method`` of what is traced."""
    return module.describe() if isinstance(module, CodeModule) else f"{type(module).__name__}.forward"


def _trace(module: nn.Module) -> fx.GraphModule:
    """fx-trace ``module`` (torch.nn layers stay leaves), its unused branches removed."""
    if type(module).forward is nn.Module.forward:
        raise ValueError(
            f"{type(module).__name__} has no forward(), so it is not a network to invert; pass an nn.Sequential "
            "of its layers, or the module (or method, e.g. vae.encode) that computes the code"
        )
    try:
        graph = _Tracer().trace(module)
    except OutputError:
        raise
    except Exception as err:  # fx raises TraceError, TypeError, RuntimeError, ... from the user's code
        shape_hint = (
            " Here a loop or `if` reads the input's shape (x.size(), x.shape): compute sizes with x.flatten(1) or "
            "x.view(x.size(0), -1) instead, which tracing reads."
            if "iterated" in str(err) or "control flow" in str(err) else ""
        )
        raise ValueError(
            f"cannot trace {_name(module)} with torch.fx ({type(err).__name__}: {err}). lbinv reads a module with "
            "its own forward() by tracing it, which fails for example on `if` or loops that depend on the input; "
            f"pass an nn.Sequential of its layers, or a module whose forward has no such branch.{shape_hint}"
        ) from None
    graph_module = fx.GraphModule(module, graph)
    for node in graph_module.graph.nodes:
        if not node.users and node.op != "output" and _is_in_place(node):
            raise ValueError(
                f"{_where(graph_module, node)} changes a value in place and its result is not used: torch.fx cannot "
                "follow in-place changes, so lbinv would read the value before it; write `out = out + h` (or assign "
                "the result) instead"
            )
    graph_module.graph.eliminate_dead_code()  # e.g. a VAE's log-variance head once the mean is picked
    return graph_module


def _is_in_place(node: fx.Node) -> bool:
    """``x.add_(h)``, ``F.relu(x, inplace=True)``, ``x += h`` (``operator.iadd``)."""
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return node.op in ("call_method", "call_function") and (
        name.endswith("_") and not name.startswith("_") or node.kwargs.get("inplace") is True
        or name in ("iadd", "isub", "imul", "itruediv")
    )


#: Modules that keep their input's shape element by element (besides activations): a first ``nn.Linear``
#: after them still fixes the network's input shape.
ELEMENTWISE_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)


def is_elementwise(module: nn.Module) -> bool:
    """An activation, identity or dropout module: it maps its input element by element."""
    return isinstance(module, ELEMENTWISE_MODULES) or is_activation(module)


def _propagation_shape(graph_module: fx.GraphModule, nodes: list[fx.Node], input_shape: Shape | None) -> Shape:
    """The shape to run the graph on: :func:`linear_input_shape` for a first ``nn.Linear`` or ``F.linear``
    node (after elementwise modules that read only what comes before them), flattened when it reads an image."""
    first = nodes[0] if nodes else None
    while (first is not None and first.op == "call_module" and is_elementwise(graph_module.get_submodule(first.target))
           and len(first.users) == 1):
        first = next(iter(first.users))
    in_features = None
    if first is not None and first.op == "call_module" and type(graph_module.get_submodule(first.target)) is nn.Linear:
        in_features = graph_module.get_submodule(first.target).in_features
    elif first is not None and first.op == "call_function" and first.target is F.linear:
        weight = first.args[1] if len(first.args) > 1 else first.kwargs.get("weight")
        if isinstance(weight, fx.Node) and weight.op == "get_attr":
            in_features = _attribute(graph_module, weight.target).shape[1]
    where = _where(graph_module, first) if first is not None else "none"
    shape = linear_input_shape(input_shape, None if in_features is None else (where, in_features), where)
    return shape if in_features is None or shape[-1] == in_features else (in_features,)


def linear_input_shape(input_shape: Shape | None, first_linear: tuple[str, int] | None, where: str) -> Shape:
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


def _propagate(graph_module: fx.GraphModule, shape: Shape, module: nn.Module) -> None:
    """Run the graph once on zeros of ``shape`` (batch of 2), recording every node's output shape."""
    reference = next((t for t in list(module.parameters()) + list(module.buffers()) if t.is_floating_point()), None)
    like = {} if reference is None else {"dtype": reference.dtype, "device": reference.device}
    try:
        with torch.no_grad():
            ShapeProp(graph_module).propagate(torch.zeros(2, *shape, **like))
    except Exception as err:
        raise ValueError(
            f"{_name(module)} cannot take inputs of shape {shape} (no batch dimension), the shape that input_shape "
            f"gives ({type(err).__name__}: {err})"
        ) from None


def _attribute(graph_module: fx.GraphModule, target: str) -> Any:
    owner, _, name = target.rpartition(".")
    return getattr(graph_module.get_submodule(owner) if owner else graph_module, name)


def _steps(graph_module: fx.GraphModule, placeholder: fx.Node) -> list[Step]:
    """Walk the graph in order; every computing node becomes a step on the values it takes."""
    metadata: set[fx.Node] = set()
    for node in graph_module.graph.nodes:  # in order, so that a node's arguments are classified before it
        if node.op not in ("placeholder", "get_attr", "output") and _is_metadata(node, metadata):
            metadata.add(node)
    steps: list[Step] = []
    value = {placeholder: 0}  # fx node -> the id of the value it computes
    for node in graph_module.graph.nodes:
        if node.op in ("placeholder", "get_attr") or node in metadata:
            continue
        where = _where(graph_module, node)
        if node.op == "output":
            if not isinstance(node.args[0], fx.Node) or node.args[0] not in value:
                raise ValueError(f"the output of {where} is not one tensor computed from the input")
            if value[node.args[0]] == 0:
                raise ValueError(f"{where} returns its input unchanged: there is no layer to invert")
            break
        inputs = _inputs(node, metadata)
        try:
            if len(inputs) > 1:
                steps.append(_join(node, tuple(value[a] for a in inputs), where))
                value[node] = len(steps)
                continue
            if not inputs:
                raise Refusal("it computes a value that does not depend on the input; lbinv needs every operation to act on it")
            value[node] = value[inputs[0]]  # an operation that changes nothing leaves it there
            for module in _layers(graph_module, node):
                steps.append(Step(where, (value[node],), module))
                value[node] = len(steps)
        except Refusal as err:  # kept as a step: every refusal of the network is reported at once
            steps.append(Step(where, tuple(value[a] for a in inputs), problem=f"{where}: {err}"))
            value[node] = len(steps)
    return steps


_SUMS = {operator.add: 1.0, operator.iadd: 1.0, torch.add: 1.0, "add": 1.0, "add_": 1.0,
         operator.sub: -1.0, operator.isub: -1.0, torch.sub: -1.0, "sub": -1.0, "sub_": -1.0}


def _join(node: fx.Node, inputs: tuple[int, ...], where: str) -> Step:
    """A sum ``a ± c·b`` (a residual connection) or a ``torch.cat`` of values computed from the input."""
    target = node.target
    if target in _SUMS:
        scale = node.kwargs.get("alpha", 1)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            raise Refusal(f"the sum with alpha={scale!r} needs a number as alpha")
        return Step(where, inputs, coefficients=(1.0, _SUMS[target] * float(scale)))
    if target is torch.cat or target is torch.concat:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        rank = len(node.meta["tensor_meta"].shape)
        if not isinstance(dim, int) or dim % rank == 0:
            raise Refusal(f"the concatenation along dim={dim!r} joins samples of the batch; concatenate along dim >= 1")
        return Step(where, inputs, dim=dim % rank - 1)
    if node.op == "call_module":
        raise Refusal(f"`{node.target}` takes {len(inputs)} values computed from the input; lbinv lifts modules of one input")
    raise Refusal(
        f"{callable_name(node)} of {len(inputs)} values computed from the input is not affine in them "
        "(lbinv reads sums, differences and torch.cat of such values, e.g. residual connections)"
    )


def _inputs(node: fx.Node, metadata: set[fx.Node]) -> list[fx.Node]:
    """The values computed from the input that ``node`` takes (not shapes, not parameters)."""
    return [a for a in _node_args(node) if isinstance(a, fx.Node) and a not in metadata and a.op != "get_attr"]


def _is_metadata(node: fx.Node, metadata: set[fx.Node]) -> bool:
    """``x.size(0)``, ``x.shape[0]``, ``x.dim()`` and arithmetic on them: read from the shapes."""
    if node.op == "call_method" and node.target in METADATA:
        return True
    if node.op == "call_function" and node.target is builtins.getattr and node.args[1] in ("shape", "ndim"):
        return True
    args = [a for a in _node_args(node) if isinstance(a, fx.Node)]
    return bool(args) and all(a in metadata for a in args)


def _node_args(node: fx.Node) -> list[Any]:
    """Every argument, nested lists and tuples flattened (``view(b, -1)``, ``torch.cat([a, b])``)."""
    out: list[Any] = []
    fx.node.map_aggregate((node.args, node.kwargs), out.append)
    return out


def _layers(graph_module: fx.GraphModule, node: fx.Node) -> list[nn.Module]:
    """The modules that ``node`` applies to its input, in order; none for an operation that changes nothing."""
    target = node.target
    if node.op == "call_module":
        if len(node.args) != 1 or node.kwargs:
            raise Refusal("the module is called with more than its input; lbinv supports modules of one tensor")
        return [graph_module.get_submodule(target)]
    if target in RESHAPES:
        return reshape(node)
    if target in (torch.cat, torch.concat):
        if len(node.args[0]) != 1:
            raise Refusal("it concatenates a value computed from the input with a constant tensor, which is not supported")
        return []  # a cat of one value is that value
    if target in IDENTITIES:
        return []
    if target in ARITHMETIC:
        return [scale_shift(node)]
    builder = module_builder(target)
    if builder is None:
        raise Refusal(
            f"{callable_name(node)} is not supported; lbinv reads torch.nn layers, their functional forms "
            f"(F.relu, F.leaky_relu, torch.sigmoid, torch.tanh, clamp, F.softshrink, {functional_affine_forms()}, ...), "
            "reshapes (view, reshape, flatten, unflatten) and arithmetic with numbers"
        )
    args = [_value(graph_module, a) for a in node.args[1:]]
    kwargs = {k: _value(graph_module, v) for k, v in node.kwargs.items() if k != "input"}
    return [builder(*args, **kwargs)]


def _value(graph_module: fx.GraphModule, arg: Any) -> Any:
    if isinstance(arg, fx.Node):
        if arg.op != "get_attr":
            raise Refusal("an argument other than the input is computed in forward; lbinv needs it constant")
        return _attribute(graph_module, arg.target)
    return arg


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')
_LIBRARIES = tuple(os.path.dirname(m.__file__) + os.sep for m in (torch, sys.modules["lbinv"]))


def _is_library(file: str) -> bool:
    """A frame of torch or lbinv, not of the user's code."""
    return os.path.abspath(file).startswith(_LIBRARIES)


def _where(graph_module: fx.GraphModule, node: fx.Node) -> str:
    """The node as error messages name it: the module path or the function, and the source line."""
    if node.op == "call_module":
        path = str(node.target).removeprefix("owner.")
        what = f"`{path}` ({type(graph_module.get_submodule(node.target)).__name__})"
    elif node.op == "output":
        what = "the traced forward"
    else:
        what = callable_name(node)
    frames = [f for f in _FRAME.findall(node.stack_trace or "") if not _is_library(f[0])]
    if frames:
        file, line, function = frames[-1]
        what += f" in {function}() at {file.rsplit('/', 1)[-1]}:{line}"
    return what
