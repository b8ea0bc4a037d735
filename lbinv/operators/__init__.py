"""Affine operators with exact adjoints (MATH.md §1).

- :mod:`~lbinv.operators.module_ops`: one torch module seen as ``x ↦ Wx + b`` (:class:`AffineOp`),
  with an explicit adjoint.
- :mod:`~lbinv.operators.registry`: the one table of affine layers (and refused ones) that tracing,
  lifting and every refusal text read; :func:`affine_op` maps a module to its op and
  :func:`register_affine` adds a layer of the user's.
- :mod:`~lbinv.operators.conv_polyphase`: the strided Conv2d adjoint as one stride-1 convolution.
- :mod:`~lbinv.operators.affine_map`: :class:`AffineMap`, a run of such modules.
- :mod:`~lbinv.operators.diagnostics`: :func:`operator_norm` (power iteration) and
  :func:`adjointness_test`.
- :mod:`~lbinv.operators.sequential`: walking nested ``nn.Sequential`` containers;
- :mod:`~lbinv.operators.cache`: ‖W‖ and b kept per module weights, shared by every map on them.
"""

from lbinv.operators.affine_map import AffineMap
from lbinv.operators.conv_polyphase import conv_adjoint
from lbinv.operators.diagnostics import adjointness_test, operator_norm
from lbinv.operators.module_ops import AffineOp
from lbinv.operators.registry import affine_op, register_affine, supported_affine_layers

__all__ = [
    "AffineMap",
    "AffineOp",
    "affine_op",
    "adjointness_test",
    "operator_norm",
    "conv_adjoint",
    "register_affine",
    "supported_affine_layers",
]
