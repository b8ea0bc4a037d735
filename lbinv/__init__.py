"""lbinv: invert trained neural networks with the lifted Bregman formulation (Wang & Benning 2023).

The numerical core (``proximal``, ``lifted``, ``regularizers``, ``solvers``, ``metrics``) is plain
PyTorch; :class:`InversionCallback` is imported lazily so that ``import lbinv`` never pulls in
Lightning.
"""

from lbinv.lifted import LiftedNetwork
from lbinv.solvers import InversionResult, invert

__all__ = ["LiftedNetwork", "invert", "InversionResult", "InversionCallback"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "InversionCallback":
        from lbinv.callbacks import InversionCallback

        return InversionCallback
    raise AttributeError(f"module 'lbinv' has no attribute {name!r}")
