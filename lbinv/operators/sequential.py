"""Walking nested plain ``nn.Sequential`` containers: their leaf modules with dotted paths, and
the locations that error messages name. Shared by :class:`~lbinv.operators.AffineMap` and
:class:`~lbinv.lifted.LiftedNetwork`.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from lbinv._checks import is_plain

__all__ = ["flatten_modules", "is_plain_sequential", "uncompiled", "where_in_sequential"]


def is_plain_sequential(module: nn.Module) -> bool:
    """An ``nn.Sequential`` that runs its children in order (no overridden forward)."""
    return is_plain(module, nn.Sequential)


def uncompiled(module: nn.Module) -> nn.Module:
    """The module that a ``torch.compile`` wrapper (``OptimizedModule``) runs, sharing its
    parameters; any other module itself."""
    original = getattr(module, "_orig_mod", None)
    return original if isinstance(original, nn.Module) else module


def flatten_modules(module: nn.Module | Iterable[nn.Module], prefix: str = "") -> list[tuple[str, nn.Module]]:
    """(dotted path, module) for every leaf of nested plain nn.Sequentials, in the order they run: a
    module that appears twice (``nn.Sequential(conv1, relu, pool, conv2, relu, pool)``) is listed
    twice, which ``named_children`` would not do."""
    items = (
        ((name, m) for name, m in module._modules.items() if m is not None)
        if isinstance(module, nn.Module)
        else ((str(i), m) for i, m in enumerate(module))
    )
    out: list[tuple[str, nn.Module]] = []
    for name, child in items:
        path, child = f"{prefix}{name}", uncompiled(child)
        if is_plain_sequential(child):
            out.extend(flatten_modules(child, prefix=path + "."))
        else:
            out.append((path, child))
    return out


def where_in_sequential(index: int, path: str, module: nn.Module) -> str:
    """Human-readable location of a module in the flattened Sequential."""
    name = type(module).__name__
    if not path or path == str(index):
        return f"module {index} ({name})"
    return f"module {index} ({name}, at '{path}' of the nested nn.Sequential)"
