"""Values derived from tensors (‖W‖, the bias b, the polyphase kernel), kept while those tensors are
unchanged.

A :class:`Snapshot` records what a value was computed from: each tensor, held weakly (a cached value
never keeps a module alive), with its version counter, storage address, dtype and device. In-place
updates (optimiser steps) bump the version, assignments replace the tensor: either makes the value
stale. :func:`cached` keeps values per torch module, in a store shared by every
:class:`~lbinv.operators.AffineMap` built on that module: ``invert(module, …)`` called in a loop
computes ‖W‖ once per weights, not once per call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from torch import Tensor, nn

__all__ = ["Snapshot", "cached"]


class Snapshot:
    """The identity and state of a sequence of tensors at one moment."""

    def __init__(self, tensors: Sequence[Tensor]) -> None:
        self._refs = tuple(weakref.ref(t) for t in tensors)
        self._state = self.state(tensors)

    @staticmethod
    def state(tensors: Sequence[Tensor]) -> tuple:
        return tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)

    @classmethod
    def take(cls, tensors: Sequence[Tensor]) -> Snapshot | None:
        """A snapshot, or None when a tensor has no version counter (an inference tensor):
        values derived from it cannot be kept."""
        if any(t.is_inference() for t in tensors):
            return None
        return cls(tensors)

    def matches(self, tensors: Sequence[Tensor]) -> bool:
        """The same tensor objects as then, none modified since."""
        return (
            len(tensors) == len(self._refs)
            and all(ref() is t for ref, t in zip(self._refs, tensors))
            and self.state(tensors) == self._state
        )


#: owner module -> {name: (snapshot, value)}; an entry goes with its module.
_STORE: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, tuple[Snapshot, Any]]] = weakref.WeakKeyDictionary()


def cached(owner: nn.Module | None, name: Hashable, tensors: Sequence[Tensor], compute: Callable[[], Any]) -> Any:
    """``compute()``, kept under ``(owner, name)`` while ``tensors`` are unchanged.

    ``name`` must say everything else the value depends on (e.g. the shapes and the parameter-free
    modules involved). Without an owner, or with an inference tensor, nothing is kept.
    """
    tensors = list(tensors)
    snapshot = None if owner is None else Snapshot.take(tensors)
    if snapshot is None:
        return compute()
    entries = _STORE.setdefault(owner, {})
    hit = entries.get(name)
    if hit is not None and hit[0].matches(tensors):
        return hit[1]
    value = compute()
    entries[name] = (snapshot, value)
    return value
