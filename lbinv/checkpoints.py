"""Safe loading of checkpoints and result files: tensors and plain data only, never pickled code.

A ``.ckpt``/``.pt`` file is a pickle, and unpickling can run arbitrary code. Every file lbinv
loads goes through :func:`load_checkpoint`, i.e. ``torch.load(..., weights_only=True)``, which
only rebuilds tensors, numbers, strings, and lists/tuples/dicts of them (Lightning checkpoints
of lbinv's models, their hyperparameters and callback states included). A file that needs
anything else is refused with :class:`UnsafeCheckpointError`.

Lightning equivalents, for scripts: ``AutoencoderModule.load_from_checkpoint(path,
weights_only=True)`` and ``trainer.fit(..., ckpt_path=path, weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import torch

__all__ = ["load_checkpoint", "UnsafeCheckpointError"]


class UnsafeCheckpointError(pickle.UnpicklingError, ValueError):
    """The file holds pickled objects or code beyond plain weights and was not loaded.

    Subclasses both :class:`pickle.UnpicklingError` (what ``torch.load`` raises) and
    :class:`ValueError` (lbinv's error for bad input), so either ``except`` catches it.
    """


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint or results file with ``torch.load(path, map_location=map_location, weights_only=True)``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to load (a Lightning ``.ckpt``, a state dict, a results file saved with
        ``torch.save``).
    map_location : Any
        Where to put the tensors, as in :func:`torch.load` (default the CPU).

    Returns
    -------
    Any
        The loaded object (tensors, numbers, strings, and lists and dicts of them).

    Raises
    ------
    UnsafeCheckpointError
        If the file holds objects other than tensors and plain data (a class instance, a function
        reference, a pickle payload that would run code): nothing from it is executed. The message
        says how to load a file whose source you trust.
    FileNotFoundError, RuntimeError, pickle.UnpicklingError
        As ``torch.load`` raises them for a missing or corrupt file.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "weights only load failed" not in str(err).lower():
            raise  # a corrupt or truncated file, not a refused object
        reason = _reason(str(err))
        raise UnsafeCheckpointError(
            f"{os.fspath(path)!r} holds pickled objects or code that are not plain weights (tensors, numbers, "
            "strings, lists and dicts of them), so it was refused: unpickling it could run arbitrary code. "
            + (f"(torch: {reason}) " if reason else "")
            + "If you trust the file's source, load it yourself at your own risk with "
            "torch.load(path, weights_only=False) (for a Lightning checkpoint: "
            "YourModule.load_from_checkpoint(path, weights_only=False)), or allow the classes it needs with "
            "torch.serialization.add_safe_globals([...]) and load it again."
        ) from None


def _reason(message: str) -> str:
    """The first sentence of what torch's weights-only unpickler refused, e.g. "Unsupported global:
    GLOBAL io.open was not an allowed global by default"."""
    _, found, rest = message.partition("WeightsUnpickler error:")
    line = next((ln.strip() for ln in rest.splitlines() if ln.strip()), "") if found else ""
    return line.split(". ")[0].rstrip(".")
