"""Both Lightning namespaces: ``lightning.pytorch`` (package ``lightning``) and ``pytorch_lightning``
(package ``pytorch-lightning``) ship the same Trainer under two names, and a Trainer accepts only
callbacks and recognises only loggers of its own namespace. The callback derives from the Callback
class of every namespace installed and recognises every one's TensorBoardLogger, so it plugs into a
project of either kind; nothing here needs a namespace the user does not have.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec

__all__ = ["NAMESPACES", "CALLBACK_BASES", "TENSORBOARD_LOGGERS"]

#: The namespaces looked for, in order.
NAMESPACES = ("lightning.pytorch", "pytorch_lightning")


def _classes(module_name: str, class_name: str) -> tuple[type, ...]:
    """``class_name`` of every namespace that imports (a broken or mismatched one is left out)."""
    found = []
    for ns in NAMESPACES:
        if find_spec(ns.split(".")[0]) is None:
            continue
        try:
            found.append(getattr(import_module(f"{ns}.{module_name}"), class_name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


#: ``Callback`` of every installed namespace: the bases of :class:`InversionCallback`.
CALLBACK_BASES: tuple[type, ...] = _classes("callbacks", "Callback")
#: ``TensorBoardLogger`` of every installed namespace.
TENSORBOARD_LOGGERS: tuple[type, ...] = _classes("loggers", "TensorBoardLogger")
if not CALLBACK_BASES:
    raise ImportError(
        "lbinv's InversionCallback needs PyTorch Lightning: pip install lightning (or pytorch-lightning), "
        'and "lbinv[callback]" for its TensorBoard images and figure'
    )
