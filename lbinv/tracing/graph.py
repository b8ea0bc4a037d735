"""Tracing a module with torch.fx and reading its graph as :class:`Step` s: layers applied to earlier
values, and joins of values (sums, concatenations). :mod:`lbinv.tracing.network` decides when a module is
traced and with which input shape."""

from __future__ import annotations

import operator
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from lbinv.operators.registry import functional_affine_forms, functional_form, is_registered
from lbinv.tracing.code import CodeModule, OutputError, several_outputs, zeros_like_module
from lbinv.tracing.functions import (
    ARITHMETIC,
    IDENTITIES,
    RESHAPES,
    Refusal,
    callable_name,
    module_builder,
    reshape,
    scale_shift,
)

__all__ = ["Step", "leading_modules", "read_steps", "trace"]


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


def trace(module: nn.Module) -> fx.GraphModule:
    """``module``'s forward as an fx graph of one input and one output (torch.nn layers and the layers of
    :mod:`lbinv.operators.registry` kept whole, unused branches removed). Call it in eval mode.

    Raises ValueError for a module without forward, one fx cannot trace, an in-place change whose result is
    unused, several inputs; OutputError for several outputs.
    """
    graph_module = _trace(module)
    placeholders = [n for n in graph_module.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ValueError(
            f"{_name(module)} takes {len(placeholders)} inputs; lbinv inverts a map of one tensor: pass a module or method of one input"
        )
    result = next(n for n in graph_module.graph.nodes if n.op == "output").args[0]
    if isinstance(result, (tuple, list, dict)):
        raise OutputError(several_outputs(_name(module), result))
    return graph_module


def leading_modules(graph_module: fx.GraphModule) -> Iterator[tuple[str, nn.Module | None]]:
    """``(where, module)`` of the first operation of the traced forward, then of the one after it while each has
    one user: the modules it applies first (``F.linear`` of a weight attribute read as its ``nn.Linear``); None for
    an operation that is not a module, where the walk ends."""
    node = next((n for n in graph_module.graph.nodes if n.op not in ("placeholder", "get_attr", "output")), None)
    while node is not None:
        where = _where(graph_module, node)
        weight = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        if node.op == "call_module":
            yield where, graph_module.get_submodule(str(node.target))
        elif node.op == "call_function" and node.target is F.linear and isinstance(weight, fx.Node) and weight.op == "get_attr":
            build = functional_form(F.linear)
            yield where, None if build is None else build(operator.attrgetter(str(weight.target))(graph_module))
        else:
            yield where, None
            return
        node = next(iter(node.users)) if len(node.users) == 1 else None


def read_steps(graph_module: fx.GraphModule, shape: tuple[int, ...], module: nn.Module) -> list[Step]:
    """The operations of a traced forward (:func:`trace`) as :class:`Step` s in order, the last one's value the
    output, read in one run of the graph on zeros of ``shape`` (batch of 2; in ``module``'s dtype and device).

    A construct that is not affine, an activation or a max pooling becomes a step with a ``problem`` naming it
    and its source line. Raises ValueError when the graph cannot run on that shape or its output is not computed
    from the input.
    """
    reader = _StepReader(graph_module)
    try:
        with torch.no_grad():
            reader.run(zeros_like_module(module, 2, *shape))
    except Exception as err:
        raise ValueError(
            f"{_name(module)} cannot take inputs of shape {shape} (no batch dimension), the shape that input_shape "
            f"gives ({type(err).__name__}: {err})"
        ) from None
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    where, result = _where(graph_module, output), output.args[0]
    if not isinstance(result, fx.Node) or result not in reader.ids:
        raise ValueError(f"the output of {where} is not one tensor computed from the input")
    if reader.ids[result] == 0:
        raise ValueError(f"{where} returns its input unchanged: there is no layer to invert")
    return reader.steps


class _StepReader(fx.Interpreter):
    """Runs the graph (as fx's ``ShapeProp`` does) and reads every operation on values computed from the input
    as steps. Anything else just evaluates: shape reads such as ``x.size(0)`` give numbers, parameters stay
    constants."""

    def __init__(self, graph_module: fx.GraphModule) -> None:
        super().__init__(graph_module)
        self.graph_module = graph_module
        self.steps: list[Step] = []
        self.ids: dict[fx.Node, int] = {}  # node -> the id of the value it computes from the input (0: the input)

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if n.op == "placeholder":
            self.ids[n] = 0
        elif n.op in ("call_module", "call_function", "call_method"):
            inputs = [a for a in _node_args(n) if isinstance(a, fx.Node) and a in self.ids]
            if inputs and (isinstance(result, Tensor) or _holds_tensor(result)):  # not a shape read
                self._read(n, inputs, result)
        return result

    def _read(self, node: fx.Node, inputs: list[fx.Node], result: Any) -> None:
        ids = tuple(self.ids[a] for a in inputs)
        refused = next((i for i in ids if i and self.steps[i - 1].problem), None)
        if refused is not None:  # computed from a refused value: that refusal says it
            self.ids[node] = refused
            return
        where = _where(self.graph_module, node)
        try:
            if len(inputs) > 1:
                self.steps.append(_join(node, ids, where, result.dim() if isinstance(result, Tensor) else 0))
                self.ids[node] = len(self.steps)
                return
            self.ids[node] = ids[0]  # an operation that changes nothing leaves it there
            for module in self._layers(node, result):
                self.steps.append(Step(where, (self.ids[node],), module))
                self.ids[node] = len(self.steps)
        except Refusal as err:  # kept as a step: every refusal of the network is reported at once
            self.steps.append(Step(where, ids, problem=f"{where}: {err}"))
            self.ids[node] = len(self.steps)

    def _layers(self, node: fx.Node, result: Any) -> list[nn.Module]:
        """The modules that ``node`` applies to its input, in order; none for an operation that changes nothing."""
        target = node.target
        args, kwargs = self.fetch_args_kwargs_from_env(node)
        if node.op == "call_module":
            if len(node.args) != 1 or node.kwargs:
                raise Refusal("the module is called with more than its input; lbinv supports modules of one tensor")
            layers = [self.graph_module.get_submodule(str(target))]
        elif target in RESHAPES:
            layers = reshape(args[0].shape, result.shape)
        elif target in (torch.cat, torch.concat):
            if len(node.args[0]) != 1:  # type: ignore[arg-type]  # torch.cat's first argument is a sequence
                raise Refusal("it concatenates a value computed from the input with a constant tensor, which is not supported")
            layers = []  # a cat of one value is that value
        elif target in IDENTITIES:
            layers = []
        elif target in ARITHMETIC:
            x_first = isinstance(node.args[0], fx.Node) and node.args[0] in self.ids
            layers = [scale_shift(target, args, kwargs, x_first)]
        else:
            layers = [self._built(node, args, kwargs)]
        if not isinstance(result, Tensor):
            raise Refusal(f"it returns a {type(result).__name__} of tensors; lbinv reads operations that return one tensor")
        return layers

    def _built(self, node: fx.Node, args: tuple[Any, ...], kwargs: dict[str, Any]) -> nn.Module:
        """The module that a function or method applies, built from its arguments after the input."""
        builder = module_builder(node.target)
        if builder is None:
            raise Refusal(
                f"{callable_name(node)} is not supported; lbinv reads torch.nn layers, their functional forms "
                f"(F.relu, F.leaky_relu, torch.sigmoid, torch.tanh, clamp, F.softshrink, {functional_affine_forms()}, ...), "
                "reshapes (view, reshape, flatten, unflatten) and arithmetic with numbers"
            )
        pairs = list(zip(node.args[1:], args[1:])) + [(node.kwargs[k], v) for k, v in kwargs.items() if k != "input"]
        if any(isinstance(a, fx.Node) and a.op != "get_attr" and isinstance(v, Tensor) for a, v in pairs):
            raise Refusal("an argument other than the input is computed in forward; lbinv needs it constant")
        return builder(*args[1:], **{k: v for k, v in kwargs.items() if k != "input"})


def _holds_tensor(value: Any) -> bool:
    """A tuple, list or dict with a tensor in it (``torch.split``, max pooling with indices)."""
    found: list[Any] = []
    fx.node.map_aggregate(value, found.append)
    return any(isinstance(v, Tensor) for v in found)


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
            if "iterated" in str(err) or "control flow" in str(err)
            else ""
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
        name.endswith("_")
        and not name.startswith("_")
        or node.kwargs.get("inplace") is True
        or name in ("iadd", "isub", "imul", "itruediv")
    )


_SUMS = {
    operator.add: 1.0,
    operator.iadd: 1.0,
    torch.add: 1.0,
    "add": 1.0,
    "add_": 1.0,
    operator.sub: -1.0,
    operator.isub: -1.0,
    torch.sub: -1.0,
    "sub": -1.0,
    "sub_": -1.0,
}


def _join(node: fx.Node, inputs: tuple[int, ...], where: str, rank: int) -> Step:
    """A sum ``a ± c·b`` (a residual connection) or a ``torch.cat`` of values computed from the input."""
    target = node.target
    if target in _SUMS:
        scale = node.kwargs.get("alpha", 1)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            raise Refusal(f"the sum with alpha={scale!r} needs a number as alpha")
        return Step(where, inputs, coefficients=(1.0, _SUMS[target] * float(scale)))
    if target is torch.cat or target is torch.concat:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if not isinstance(dim, int) or dim % rank == 0:
            raise Refusal(f"the concatenation along dim={dim!r} joins samples of the batch; concatenate along dim >= 1")
        return Step(where, inputs, dim=dim % rank - 1)
    if node.op == "call_module":
        raise Refusal(f"`{node.target}` takes {len(inputs)} values computed from the input; lbinv lifts modules of one input")
    raise Refusal(
        f"{callable_name(node)} of {len(inputs)} values computed from the input is not affine in them "
        "(lbinv reads sums, differences and torch.cat of such values, e.g. residual connections)"
    )


def _node_args(node: fx.Node) -> list[Any]:
    """Every argument, nested lists and tuples flattened (``view(b, -1)``, ``torch.cat([a, b])``)."""
    out: list[Any] = []
    fx.node.map_aggregate((node.args, node.kwargs), out.append)
    return out


_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\w+)')
_LIBRARIES = tuple(os.path.dirname(str(m.__file__)) + os.sep for m in (torch, sys.modules["lbinv"]))


def _is_library(file: str) -> bool:
    """A frame of torch or lbinv, not of the user's code."""
    return os.path.abspath(file).startswith(_LIBRARIES)


def _where(graph_module: fx.GraphModule, node: fx.Node) -> str:
    """The node as error messages name it: the module path or the function, and the source line."""
    if node.op == "call_module":
        path = str(node.target).removeprefix("owner.")
        what = f"`{path}` ({type(graph_module.get_submodule(str(node.target))).__name__})"
    elif node.op == "output":
        what = "the traced forward"
    else:
        what = callable_name(node)
    frames = [f for f in _FRAME.findall(node.stack_trace or "") if not _is_library(f[0])]
    if frames:
        file, line, function = frames[-1]
        what += f" in {function}() at {file.rsplit('/', 1)[-1]}:{line}"
    return what
