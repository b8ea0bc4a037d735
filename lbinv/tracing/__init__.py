"""A module with its own ``forward()`` (or any method of one) read as steps, by torch.fx.

Users write encoders as classes: ``F.relu`` in ``forward``, ``x.view(x.size(0), -1)`` before a
linear layer, residual blocks, max pooling, a VAE's ``encode`` returning ``(mu, logvar)``.
:func:`network_steps` (:mod:`~lbinv.tracing.network`) reads a plain ``nn.Sequential`` of layers as it is
and traces any other module with :mod:`torch.fx`, reading the graph in one run as :class:`Step` s
(:mod:`~lbinv.tracing.graph`), and fixes the input shape for both: modules are kept as they are (parameters
shared, so the lifted view stays live), functional forms become their modules (``F.relu`` → ``nn.ReLU``,
``F.linear(x, w, b)`` → an ``nn.Linear`` holding the same ``w`` and ``b``, :mod:`~lbinv.tracing.functions`
and :mod:`lbinv.operators.registry`),
reshapes become ``Flatten``/``Unflatten``, arithmetic with numbers (``x * 2 - 1``) a ``ScaleShift``,
and sums and ``torch.cat`` of two values joins. :mod:`lbinv.lifting` makes lifted nodes of them.

What is not affine, an activation or max pooling (a product of two values, data-dependent control
flow, GELU) is refused with the construct and the line of source that holds it, every one at once.

:func:`code_module` (:mod:`~lbinv.tracing.code`) turns a method of a module (``vae.encode``) or a tuple
output (``output=0``) into a module whose forward returns the code, so that everything downstream
sees an ``nn.Module``.
"""

from lbinv.tracing.code import CodeModule, Output, OutputError, code_module, eval_mode
from lbinv.tracing.graph import Step
from lbinv.tracing.network import Network, network_steps

__all__ = ["CodeModule", "Network", "Output", "OutputError", "Step", "code_module", "eval_mode", "network_steps"]
