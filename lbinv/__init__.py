"""lbinv: invert trained neural networks with the lifted Bregman formulation (Wang & Benning 2023).

The numerical core (``proximal``, ``operators``, ``lifted``, ``regularizers``, ``solvers``,
``metrics``, ``probe``) is plain PyTorch. The Lightning shell (``lbinv.lightning``: the data and
models of the paper's experiments, :class:`InversionCallback`) is imported lazily, on first use of
one of its names, so that ``import lbinv`` never pulls in Lightning. :func:`register_affine` makes a
layer of the user's liftable (:mod:`lbinv.operators.registry`).
"""

from importlib import import_module
from typing import Any

from lbinv.lifted import LiftedNetwork
from lbinv.operators import register_affine
from lbinv.solvers import InversionResult, invert

#: The public names that need Lightning, and the module each lives in.
_LIGHTNING_NAMES = {
    "InversionCallback": "lbinv.lightning.callback",
    "InversionWarning": "lbinv.lightning.callback",
    "AutoencoderModule": "lbinv.lightning.models",
    "DenseAutoencoder": "lbinv.lightning.models",
    "ConvAutoencoder": "lbinv.lightning.models",
    "MNISTDataModule": "lbinv.lightning.data",
}

__all__ = ["LiftedNetwork", "invert", "InversionResult", "register_affine", *_LIGHTNING_NAMES]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _LIGHTNING_NAMES:
        return getattr(import_module(_LIGHTNING_NAMES[name]), name)
    raise AttributeError(f"module 'lbinv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LIGHTNING_NAMES])
