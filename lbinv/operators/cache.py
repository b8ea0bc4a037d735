"""A key that changes whenever one of a set of tensors is replaced or modified in place: what lbinv's
caches of derived quantities (‖W‖, the bias, the polyphase kernel) are keyed on.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

__all__ = ["version_key"]


def version_key(tensors: Iterable[Tensor]) -> tuple | None:
    """(id, version, data_ptr, dtype, device) of every tensor; None if one has no version counter
    (an inference tensor), meaning "do not cache"."""
    key = []
    for t in tensors:
        try:
            v = t._version
        except RuntimeError:
            return None
        key.append((id(t), v, t.data_ptr(), t.dtype, t.device))
    return tuple(key)
