"""Values derived from tensors (‖W‖, the bias b, the polyphase kernel), kept while those tensors are
unchanged.

A :class:`Snapshot` records what a value was computed from: each tensor, held weakly (a cached value
never keeps a module alive), with its version counter, storage address, dtype and device, and
optionally a fingerprint of its contents. In-place updates through autograd-visible operations
(optimiser steps) bump the version and assignments replace the tensor; edits through ``.data``
(``p.data.mul_(2)``, hand-written SGD or EMA) bump nothing, and only the fingerprint sees them.

:func:`cached` keeps values per owner (a torch module, or the object asking) in a store shared by
every :class:`~lbinv.operators.AffineMap` built on that module, so ``invert(module, …)`` called in a
loop computes ‖W‖ once per weights, not once per call. Those entries carry the fingerprint: the
sum and the sum of squares of every tensor, in float64, checked with one host synchronisation per
lookup. An edit through ``.data`` that keeps both of every tensor (a permutation of its entries,
say) is not seen; call :func:`forget` after such an edit.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["Snapshot", "cached", "forget", "warm_state"]


class Snapshot:
    """The identity and state of a sequence of tensors at one moment (``content``: with a
    fingerprint of their values)."""

    def __init__(self, tensors: Sequence[Tensor], content: bool = False) -> None:
        self._refs = tuple(weakref.ref(t) for t in tensors)
        self._content = content
        self._state = self.state(tensors, content)

    @staticmethod
    def state(tensors: Sequence[Tensor], content: bool) -> tuple:
        versions = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in tensors)
        if not content or not tensors:
            return versions
        with torch.no_grad():
            floats = [t if t.is_floating_point() else t.double() for t in tensors]  # counters are ints
            sums = torch.stack(
                [torch.stack([t.sum(dtype=torch.float64), torch.linalg.vector_norm(t, dtype=torch.float64) ** 2]) for t in floats]
            ).cpu()  # one host synchronisation
        return versions, tuple(sums.flatten().tolist())

    @classmethod
    def take(cls, tensors: Sequence[Tensor], content: bool = False) -> Snapshot | None:
        """A snapshot, or None when a tensor has no version counter (an inference tensor):
        values derived from it cannot be kept."""
        if any(t.is_inference() for t in tensors):
            return None
        return cls(tensors, content)

    def matches(self, tensors: Sequence[Tensor]) -> bool:
        """The same tensor objects as then, none modified since."""
        return (
            len(tensors) == len(self._refs)
            and all(ref() is t for ref, t in zip(self._refs, tensors))
            and self.state(tensors, self._content) == self._state
        )


#: owner -> {name: (snapshot, value)}; an entry goes with its owner.
_STORE: weakref.WeakKeyDictionary[Any, dict[Hashable, tuple[Snapshot, Any]]] = weakref.WeakKeyDictionary()


def cached(owner: Any, name: Hashable, tensors: Sequence[Tensor], compute: Callable[[], Any]) -> Any:
    """``compute()``, kept under ``(owner, name)`` while ``tensors`` are unchanged (their contents
    fingerprinted, see the module's docstring).

    ``owner`` is any object that can be weakly referenced; ``name`` must say everything else the
    value depends on (e.g. the shapes and the parameter-free modules involved). With an inference
    tensor, nothing is kept.
    """
    tensors = list(tensors)
    snapshot = Snapshot.take(tensors, content=True)
    if snapshot is None:
        return compute()
    entries = _STORE.setdefault(owner, {})
    hit = entries.get(name)
    if hit is not None and hit[0].matches(tensors):
        return hit[1]
    value = compute()
    entries[name] = (snapshot, value)
    return value


#: owner -> {name: state}: what a computation may start from next time, kept when the tensors change.
_WARM: weakref.WeakKeyDictionary[Any, dict[Hashable, dict[str, Any]]] = weakref.WeakKeyDictionary()


def warm_state(owner: Any, name: Hashable) -> dict[str, Any]:
    """A dict kept under ``(owner, name)`` across changes of the owner's tensors, for a computation
    that starts better from its last result (power iteration from its last vectors: after an
    optimiser step the top singular vectors barely move). Any state is only a starting point."""
    return _WARM.setdefault(owner, {}).setdefault(name, {})


def forget(owner: Any) -> None:
    """Drop every value kept for ``owner`` (e.g. a module whose weights were edited in a way the
    fingerprint cannot see)."""
    _STORE.pop(owner, None)
    _WARM.pop(owner, None)
