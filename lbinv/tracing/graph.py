"""Tracing a module with torch.fx and reading its graph as a chain of layers. Import
:func:`traced_layers` from :mod:`lbinv.tracing`."""

from __future__ import annotations

import builtins
import math
import os
import re
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from lbinv._checks import Shape
from lbinv.tracing.code import CodeModule, OutputError, several_outputs
from lbinv.tracing.functions import (
    ARITHMETIC,
    BRANCHES,
    FUNCTIONS,
    IDENTITIES,
    METADATA,
    RESHAPES,
    Refusal,
    callable_name,
    reshape,
    scale_shift,
)


class _Tracer(fx.Tracer):
    def __init__(self) -> None:
        super().__init__()
        self.record_stack_traces = True


def traced_layers(
    module: nn.Module, input_shape: Shape | None
) -> tuple[list[tuple[str, nn.Module]], Shape | None]:
    """The layers of ``module``'s traced forward, as ``(where, module)`` in order, and the input
    shape to read them with (``input_shape``, or ``(in_features,)`` of a first linear layer; a first
    linear layer given an image with ``in_features`` elements reads it flattened, like
    :meth:`~lbinv.lifted.LiftedNetwork.from_module`).

    Raises ValueError naming the construct and the source line for what is not a chain of
    supported layers, and for a module fx cannot trace.
    """
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
    layers = _chain(graph_module, placeholders[0])
    return layers, shape


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
        raise ValueError(
            f"cannot trace {_name(module)} with torch.fx ({type(err).__name__}: {err}). lbinv reads a module with "
            "its own forward() by tracing it, which fails for example on `if` or loops that depend on the input's "
            "values; pass an nn.Sequential of its layers, or a module whose forward has no such branch"
        ) from None
    graph_module = fx.GraphModule(module, graph)
    graph_module.graph.eliminate_dead_code()  # e.g. a VAE's log-variance head once the mean is picked
    return graph_module


def _propagation_shape(graph_module: fx.GraphModule, nodes: list[fx.Node], input_shape: Shape | None) -> Shape:
    """The shape to run the graph on: ``input_shape``, flattened before a first linear layer with as many
    inputs, or that layer's ``(in_features,)`` when no shape is given."""
    first = nodes[0] if nodes else None
    in_features = None
    if first is not None and first.op == "call_module" and type(graph_module.get_submodule(first.target)) is nn.Linear:
        in_features = graph_module.get_submodule(first.target).in_features
    elif first is not None and first.op == "call_function" and first.target is F.linear:
        weight = first.args[1] if len(first.args) > 1 else first.kwargs.get("weight")
        if isinstance(weight, fx.Node) and weight.op == "get_attr":
            in_features = _attribute(graph_module, weight.target).shape[1]
    if input_shape is None:
        if in_features is None:
            raise ValueError(
                "input_shape is required: it can only be inferred when the first layer is nn.Linear or F.linear; "
                "pass input_shape without the batch dimension, e.g. input_shape=(1, 28, 28)"
            )
        return (in_features,)
    if in_features is not None and input_shape[-1] != in_features and math.prod(input_shape) == in_features:
        return (in_features,)
    return tuple(input_shape)


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


def _chain(graph_module: fx.GraphModule, placeholder: fx.Node) -> list[tuple[str, nn.Module]]:
    """Walk the graph from its input: each computing node must take the previous one's result."""
    layers: list[tuple[str, nn.Module]] = []
    metadata: set[fx.Node] = set()
    for node in graph_module.graph.nodes:  # in order, so that a node's arguments are classified before it
        if node.op not in ("placeholder", "get_attr", "output") and _is_metadata(node, metadata):
            metadata.add(node)
    current = placeholder
    for node in graph_module.graph.nodes:
        if node.op in ("placeholder", "get_attr"):
            continue
        where = _where(graph_module, node)
        if node.op == "output":
            result = node.args[0]
            if result is not current:
                raise ValueError(f"the output of {where} is not one tensor computed from the input; "
                                 "pass output= the index or key of the code")
            break
        if node in metadata:
            continue
        inputs = _inputs(node, metadata)
        if len(inputs) != 1 or inputs[0] is not current:
            # a graph, not a chain: name the operation that joins two branches, if there is one
            join = next((n for n in _from(node) if len(_inputs(n, metadata)) > 1), None)
            if join is None:
                raise ValueError(
                    f"{where} takes {inputs[0].name if inputs else 'no value computed from the input'}, not the "
                    f"result of the operation before it ({current.name}): a branch. lbinv lifts chains of layers "
                    "only; invert a module whose forward is one chain"
                )
            what = BRANCHES.get(join.target, f"an operation on {len(_inputs(join, metadata))} values computed from the input")
            raise ValueError(
                f"{_where(graph_module, join)}: {what}. lbinv lifts chains of layers (each operation takes the previous "
                "one's result), not graphs; residual blocks and concatenations are not supported yet: invert a module "
                "without them"
            )
        try:
            layer = _layer(graph_module, node)
        except Refusal as err:
            raise ValueError(f"{where}: {err}") from None
        if layer is not None:
            layers.append((where, layer))
        current = node
    return layers


def _inputs(node: fx.Node, metadata: set[fx.Node]) -> list[fx.Node]:
    """The values computed from the input that ``node`` takes (not shapes, not parameters)."""
    return [a for a in _node_args(node) if isinstance(a, fx.Node) and a not in metadata and a.op != "get_attr"]


def _from(node: fx.Node):
    """``node`` and the nodes after it, in order."""
    while node.op != "root":
        yield node
        node = node.next


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


def _layer(graph_module: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The module that ``node`` applies to its input; None for an operation that changes nothing."""
    target = node.target
    if node.op == "call_module":
        if len(node.args) != 1 or node.kwargs:
            raise Refusal("the module is called with more than its input; lbinv supports modules of one tensor")
        return graph_module.get_submodule(target)
    if target in RESHAPES:
        return reshape(node)
    if target in IDENTITIES:
        return None
    if target in ARITHMETIC:
        return scale_shift(node)
    builder = FUNCTIONS.get(target)
    if builder is None:
        raise Refusal(
            f"{callable_name(node)} is not supported; lbinv reads torch.nn layers, their functional forms "
            "(F.relu, F.leaky_relu, torch.sigmoid, torch.tanh, clamp, F.softshrink, F.linear, F.conv1d/2d, "
            "F.avg_pool1d/2d, ...), reshapes (view, reshape, flatten, unflatten) and arithmetic with numbers"
        )
    args = [_value(graph_module, a) for a in node.args[1:]]
    kwargs = {k: _value(graph_module, v) for k, v in node.kwargs.items() if k != "input"}
    return builder(*args, **kwargs)


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
