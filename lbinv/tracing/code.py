"""The code of an encoder: a method of a module (``vae.encode``) and the item of its output that is
the code (``output=0``), as one module; and running a user's module in eval mode without changing
its modes. Import from :mod:`lbinv.tracing`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any, Union

import torch
from torch import Tensor, nn

__all__ = ["CodeModule", "Output", "OutputError", "code_module", "eval_mode", "zeros_like_module"]

#: How an encoder's code is picked from a tuple, list or dict output: an index or a key.
Output = Union[int, str, None]


class CodeModule(nn.Module):
    """``owner.<method>(x)``, and of its output the item ``output`` (an index or a key), as a module.

    The owner is a submodule, so parameters, ``eval()``, ``.to()`` and ``deepcopy`` act on it.
    """

    def __init__(self, owner: nn.Module, method: str = "forward", output: Output = None) -> None:
        super().__init__()
        self.owner, self.method, self.output = owner, method, output

    def forward(self, x: Tensor) -> Tensor:
        out = getattr(self.owner, self.method)(x)
        if self.output is None:
            if isinstance(out, (tuple, list, dict)):
                raise OutputError(several_outputs(self.describe(), out))
            return out
        try:
            return out[self.output]
        except (IndexError, KeyError, TypeError) as err:
            raise OutputError(
                f"{{arg}}: {self.describe()} returns {type(out).__name__}, which has no item {self.output!r} ({err})"
            ) from None

    def describe(self) -> str:
        return f"{type(self.owner).__name__}.{self.method}"


class OutputError(ValueError):
    """The code cannot be picked from a module's output. Its message names the argument ``output``;
    :meth:`named` gives it with another name (the callback's ``encoder_output``)."""

    def __init__(self, template: str) -> None:
        self.template = template  # "{arg}" where the argument is named
        super().__init__(self.named("output"))

    def named(self, argument: str) -> str:
        return self.template.replace("{arg}", argument)


def several_outputs(what: str, out: tuple | list | dict) -> str:
    """An :class:`OutputError` template: ``what`` returned several items."""
    return (
        f"{{arg}}: {what} returns a {'dict' if isinstance(out, dict) else 'tuple or list'} of {len(out)} items, not "
        "one tensor; pass {arg}= the index or key of the code (e.g. {arg}=0 for a VAE's (mu, logvar))"
    )


def code_module(model: Any, output: Output = None) -> nn.Module:
    """``model`` as a module returning the code: an ``nn.Module`` itself (wrapped only to pick an
    ``output``), or a bound method of one (``vae.encode``) as a :class:`CodeModule`.

    Raises ValueError naming what came, for anything else and for an ``output`` that is neither an
    int nor a str.
    """
    if output is not None and (isinstance(output, bool) or not isinstance(output, (int, str))):
        raise ValueError(f"output: expected None, an index (int) or a key (str), got {output!r}")
    owner = getattr(model, "__self__", None)
    if isinstance(owner, nn.Module) and callable(model) and not isinstance(model, nn.Module):
        return CodeModule(owner, model.__name__, output)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model: expected an nn.Module or a method of one (e.g. vae.encode), got {type(model).__name__}")
    return model if output is None else CodeModule(model, "forward", output)


@contextmanager
def eval_mode(*modules: Any) -> Iterator[None]:
    """Put the given modules (and their children) in eval mode; restore each one's mode after."""
    saved = [(m, m.training) for module in modules if isinstance(module, nn.Module) for m in module.modules()]
    try:
        for module in modules:
            if isinstance(module, nn.Module):
                module.eval()
        yield
    finally:
        for m, training in saved:
            m.training = training


def zeros_like_module(module: nn.Module, *shape: int) -> Tensor:
    """Zeros of ``shape`` in the dtype and on the device of ``module``'s first floating-point parameter or
    buffer (the defaults when it has none): an input the module can take."""
    reference = next((t for t in chain(module.parameters(), module.buffers()) if t.is_floating_point()), None)
    if reference is None:
        return torch.zeros(shape)
    return torch.zeros(shape, dtype=reference.dtype, device=reference.device)
