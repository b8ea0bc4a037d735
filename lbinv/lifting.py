"""From traced steps to lifted nodes: MATH.md §1's chain extended to graphs (derived here; MATH.md has
no graph section).

A network's operations (:class:`~lbinv.tracing.Step`: layers and joins) are read as *nodes*
``x_k = σ_k(a_k)``, one per activation, each with a pre-activation that is affine in the input ``x_0``
and in earlier nodes,

    a_k = Σ_j A_kj x_j + b_k.

Every value between activations is kept as such an affine expression, a list of :class:`Term` s
``A x_j`` (a run of :class:`~lbinv.operators.AffineOp` s applied to the variable ``x_j``): an affine
layer extends each term (its bias counted once: the other terms take its linear part), a sum or a
``torch.cat`` joins the terms of two values, and an activation turns the expression into the edges of
a new node. A residual block ``σ(h + W f(h) + b)`` is then one node with an edge from ``h`` and one
from ``f(h)``.

Max pooling is not affine, but ``max(a, b) = a + ReLU(b − a)``: the maximum of a window's n entries,
taken over its two halves recursively, is n − 1 ReLU nodes, equal to the pooling up to round-off. Its
cost: n − 1 hidden variables of the pooled size (3 for a 2×2 window, 8 for 3×3), and the layer after
it reads 1 + ⌈log₂ n⌉ terms (one application of its linear part per term).

A network that ends in an affine map gets an identity node, whose value is the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from lbinv._checks import Shape, is_plain
from lbinv.operators import AffineMap, AffineOp, affine_op, supported_affine_layers
from lbinv.operators.graph_ops import Embed, EmbedOp, GatherOp, LinearPartOp, pooling_windows
from lbinv.operators.module_ops import ScaleShift, ScaleShiftOp
from lbinv.operators.registry import refusal
from lbinv.proximal import IDENTITY, SUPPORTED_ACTIVATIONS, ProxActivation, ReLUProx, is_activation, proximal_activation
from lbinv.tracing import Step

__all__ = ["LiftedEdge", "LiftedNode", "lift_steps", "supported_layers"]

_MAX_POOLS = (nn.MaxPool1d, nn.MaxPool2d)


def supported_layers() -> str:
    """What lbinv lifts, in words, for error messages (the affine layers from :mod:`lbinv.operators.registry`)."""
    return (
        f"lbinv lifts networks of supported layers: {supported_affine_layers()}, MaxPool1d/MaxPool2d, nested "
        f"nn.Sequential, and proximal activations ({SUPPORTED_ACTIVATIONS}), joined by sums and torch.cat"
    )


@dataclass(frozen=True)
class Term:
    """``A x_source``: the ops of ``A`` in order, applied to the lifted variable ``x_source``."""

    source: int
    ops: tuple[AffineOp, ...] = ()


@dataclass(frozen=True)
class LiftedEdge:
    """``A x_source`` (with its share of the bias) in a node's pre-activation; ``source`` 0 is the
    network's input, ``source`` k ≥ 1 the value of node k − 1."""

    source: int
    affine: AffineMap


@dataclass
class LiftedNode:
    """One lifted node ``x = σ(Σ_e A_e x_{source_e} + b)`` (MATH.md §1)."""

    edges: list[LiftedEdge]
    activation: ProxActivation
    where: str = ""

    def pre_activation(self, values: Sequence[Tensor]) -> Tensor:
        """``a = Σ_e A_e values[source_e] + b``; ``values[0]`` is the input, ``values[k]`` node k − 1's value."""
        first, *rest = self.edges
        a = first.affine.forward(values[first.source])
        for edge in rest:
            a = a + edge.affine.forward(values[edge.source])
        return a

    @property
    def shape(self) -> Shape:
        return self.edges[0].affine.out_shape


class _Lifting:
    """The state of :func:`lift_steps`: the nodes so far and the shape of every lifted variable."""

    def __init__(self, input_shape: Shape, context: Sequence[nn.Module]) -> None:
        self.nodes: list[LiftedNode] = []
        self.shapes: list[Shape] = [input_shape]  # of x_0 (the input), x_1, …
        self.context = list(context)

    def node(self, terms: list[Term], shape: Shape, activation: ProxActivation, where: str) -> list[Term]:
        """A new node on the expression ``terms``; returns the expression of its value."""
        edges = [LiftedEdge(t.source, AffineMap.from_ops(list(t.ops), self.shapes[t.source], self.context)) for t in terms]
        self.nodes.append(LiftedNode(edges, activation, where))
        self.shapes.append(shape)
        return [Term(len(self.nodes))]

    def apply(self, terms: list[Term], shape: Shape, op: AffineOp) -> tuple[list[Term], Shape]:
        """``op`` applied to an expression: its bias goes to the first term, its linear part to the others."""
        check = AffineMap.from_ops([op], shape, self.context)  # the shape check and the output shape
        first, *rest = terms
        return [Term(first.source, (*first.ops, op))] + [Term(t.source, (*t.ops, LinearPartOp(op))) for t in rest], check.out_shape

    def scaled(self, terms: list[Term], shape: Shape, factor: float, where: str) -> list[Term]:
        if factor == 1.0:
            return terms
        return self.apply(terms, shape, ScaleShiftOp(ScaleShift(factor, 0.0), where))[0]

    def max_pool(self, terms: list[Term], shape: Shape, pool: nn.Module, where: str) -> tuple[list[Term], Shape]:
        """Max pooling as ReLU nodes: m ← m + ReLU(e − m) over the entries e of every window."""
        entries = []
        for gather in pooling_windows(pool, shape):
            entry, out_shape = self.apply(terms, shape, GatherOp(gather, where))
            entries.append(entry)
        return self._maximum(entries, out_shape, where), out_shape

    def _maximum(self, entries: list[list[Term]], shape: Shape, where: str) -> list[Term]:
        """max(left, right) = left + ReLU(right − left) over the two halves, recursively: n − 1 ReLU nodes,
        and 1 + ⌈log₂ n⌉ terms in the result (each read by the layer after the pooling)."""
        if len(entries) == 1:
            return entries[0]
        half = len(entries) // 2
        left, right = self._maximum(entries[:half], shape, where), self._maximum(entries[half:], shape, where)
        gap = right + self.scaled(left, shape, -1.0, where)
        return left + self.node(gap, shape, ReLUProx(), f"{where} (as ReLUs)")


def lift_steps(steps: Sequence[Step], input_shape: Shape) -> list[LiftedNode]:
    """The lifted nodes of a network given as steps on inputs of shape ``input_shape``; the last node's
    value is the network's output.

    Raises one ValueError for every construct that cannot be lifted (the steps' problems, unsupported
    modules, non-proximal activations, BatchNorm in training mode: each named by its ``where``, with what to
    use instead), else for shapes that do not fit and sums of values of different shapes.
    """
    readings = [_read(step) for step in steps]
    problems = [r for r in readings if isinstance(r, str)]
    if problems:
        raise ValueError(
            problems[0]
            if len(problems) == 1
            else (f"{len(problems)} constructs of the network cannot be lifted:\n" + "\n".join(f"- {p}" for p in problems))
        )
    context = [s.module for s in steps if s.module is not None]
    lifting = _Lifting(tuple(input_shape), context)
    values: list[tuple[list[Term], Shape]] = [([Term(0)], tuple(input_shape))]
    for step, reading in zip(steps, readings):
        if step.module is None:
            values.append(_join(lifting, step, [values[i] for i in step.inputs]))
            continue
        terms, shape = values[step.inputs[0]]
        if isinstance(reading, AffineOp):
            values.append(lifting.apply(terms, shape, reading))
        elif isinstance(reading, ProxActivation):
            try:
                reading.check_shape(shape)
            except ValueError as err:
                raise ValueError(f"{step.where}: {err}") from err
            values.append((lifting.node(terms, shape, reading, step.where), shape))
        else:  # max pooling
            values.append(lifting.max_pool(terms, shape, step.module, step.where))
    terms, shape = values[-1]
    if terms != [Term(len(lifting.nodes))] or not lifting.nodes:  # ends in an affine map: an identity node
        lifting.node(terms, shape, IDENTITY, "the output")
    return lifting.nodes


def _read(step: Step) -> AffineOp | ProxActivation | str | None:
    """What ``step``'s module is read as: its affine op, its proximal activation, None for max pooling and
    joins; or, for a construct that cannot be lifted, the refusal (where, why, what to use instead)."""
    module, where = step.module, step.where
    if step.problem or module is None:
        return step.problem or None
    if any(is_plain(module, kind) for kind in _MAX_POOLS):
        return None
    advice = refusal(module)
    if advice is not None:
        return f"{where} is not supported: {advice}"
    try:
        op = affine_op(module, where)
    except ValueError as err:  # a refused configuration (BatchNorm in training mode): its message names where
        return str(err)
    if op is not None:
        return op
    if not is_activation(module):
        return f"{where} is not supported; {supported_layers()}"
    try:
        return proximal_activation(module)
    except ValueError as err:
        return f"{where}: {err}"


def _join(lifting: _Lifting, step: Step, values: list[tuple[list[Term], Shape]]) -> tuple[list[Term], Shape]:
    """The expression of a sum ``a + c·b`` or of a ``torch.cat``."""
    shapes = [shape for _, shape in values]
    dim = step.dim
    if dim is None:  # a sum
        if shapes[0] != shapes[1]:
            raise ValueError(
                f"{step.where}: adds values of shapes {shapes[0]} and {shapes[1]}; lbinv reads sums of values of one "
                "shape (no broadcasting)"
            )
        (first, shape), (second, _) = values
        return first + lifting.scaled(second, shape, step.coefficients[1], step.where), shape
    if any(len(s) != len(shapes[0]) or s[:dim] + s[dim + 1 :] != shapes[0][:dim] + shapes[0][dim + 1 :] for s in shapes):
        raise ValueError(f"{step.where}: concatenates values of shapes {shapes} along dimension {dim + 1}, which do not fit")
    total, offset, terms = sum(s[dim] for s in shapes), 0, []
    for part, shape in values:
        terms += lifting.apply(part, shape, EmbedOp(Embed(dim, offset, total), step.where))[0]
        offset += shape[dim]
    out_shape = (*shapes[0][:dim], total, *shapes[0][dim + 1 :])
    return terms, out_shape
