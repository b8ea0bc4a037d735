"""Affine operators with exact adjoints (MATH.md §1).

- :mod:`~lbinv.operators.module_ops`: one torch module seen as ``x ↦ Wx + b`` (:class:`AffineOp`),
  with an explicit adjoint; :func:`affine_op` maps a module to its op.
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
from lbinv.operators.module_ops import SUPPORTED_AFFINE_LAYERS, AffineOp, affine_op

__all__ = ["AffineMap", "AffineOp", "affine_op", "adjointness_test", "operator_norm", "conv_adjoint", "SUPPORTED_AFFINE_LAYERS"]
