"""A module with its own ``forward()`` (or any method of one) read as a chain of layers, by torch.fx.

Users write encoders as classes: ``F.relu`` in ``forward``, ``x.view(x.size(0), -1)`` before a
linear layer, a VAE's ``encode`` returning ``(mu, logvar)``. :func:`traced_layers` traces such a
module with :mod:`torch.fx` and reads the graph as the sequence of layers that an equivalent
``nn.Sequential`` would hold (MATH.md §1): modules are kept as they are (parameters shared, so the
lifted view stays live), functional forms become their modules (``F.relu`` → ``nn.ReLU``,
``F.linear(x, w, b)`` → an ``nn.Linear`` holding the same ``w`` and ``b``), reshapes become
``Flatten``/``Unflatten`` and scalar arithmetic (``x * 2 - 1``) a :class:`ScaleShift`.

The graph must be a chain: every operation takes the previous one's result and constants. A skip
connection (``h + f(h)``), ``torch.cat`` of two branches, max pooling and data-dependent control
flow are refused with the construct and the line of source that holds it.

:func:`code_module` turns a method of a module (``vae.encode``) or a tuple output (``output=0``)
into a module whose forward returns the code, so that everything downstream sees an ``nn.Module``.
"""

from lbinv.tracing.chain import traced_layers
from lbinv.tracing.code import CodeModule, Output, OutputError, code_module

__all__ = ["CodeModule", "Output", "OutputError", "code_module", "traced_layers"]
