"""Batched solvers of the lifted-Bregman inversion and its baselines (MATH.md §3–8).

- :mod:`~lbinv.solvers.inversion`: :func:`invert`, the entry point, and :class:`InversionResult`;
- :mod:`~lbinv.solvers.arguments`: the checks of its data arguments (model, ``y``, ``alpha``, starting points);
- :mod:`~lbinv.solvers.loop`: the problem, the masked iteration loop and what every solver shares;
- :mod:`~lbinv.solvers.data_term`: the lifted data term (value, gradient, prox, dual) the lifted solvers share;
- :mod:`~lbinv.solvers.blocks`: the PDHG step with its step rules, and the lifted variables of the sweeps;
- :mod:`~lbinv.solvers.pdhg`: one layer by PDHG (§5);
- :mod:`~lbinv.solvers.fista`: one layer by monotone FISTA with a warm-started inner TV prox and a
  duality-gap stopping test (``invert(..., solver="fista")``);
- :mod:`~lbinv.solvers.coordinate_descent`: several layers by block coordinate descent (§6);
- :mod:`~lbinv.solvers.sequential`: layer-wise inversion (§7, Remark 2);
- :mod:`~lbinv.solvers.landweber`: Landweber with the discrepancy principle (§8);
- :mod:`~lbinv.solvers.gradient`: Adam through the network, the usual alternative.
"""

from lbinv.solvers.blocks import DEFAULT_BALANCE, STEP_RULES
from lbinv.solvers.inversion import METHODS, OPTIONS, REGULARIZERS, InversionResult, invert

__all__ = ["invert", "InversionResult", "METHODS", "OPTIONS", "REGULARIZERS", "DEFAULT_BALANCE", "STEP_RULES"]
