"""The checks of :func:`~lbinv.solvers.inversion.invert`'s data arguments: the model, the outputs ``y``,
per-sample values (``alpha``, ``noise_level``) and the starting points (``x_init``, ``dual_init``). Each
bad input gets an error that names the argument, what was expected and what came."""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from lbinv._checks import HALF_PRECISION
from lbinv.lifted import LiftedNetwork
from lbinv.regularizers import TotalVariation


def as_network(model: Any, input_shape: Sequence[int] | None, output: int | str | None) -> LiftedNetwork:
    if isinstance(model, LiftedNetwork):
        if input_shape is not None and tuple(input_shape) != tuple(model.input_shape):
            raise ValueError(f"input_shape: the LiftedNetwork takes inputs of shape {tuple(model.input_shape)}, got {tuple(input_shape)}")
        if output is not None:
            raise ValueError(f"output: a LiftedNetwork has one output, got output={output!r}")
        return model
    if not isinstance(model, nn.Module) and not isinstance(getattr(model, "__self__", None), nn.Module):
        raise TypeError(f"model: expected an nn.Module, a method of one (e.g. vae.encode) or a LiftedNetwork, got {type(model).__name__}")
    shape = None if input_shape is None else tuple(input_shape)
    return LiftedNetwork.from_module(model, input_shape=shape, output=output)


def check_data(y: Any, net: LiftedNetwork) -> Tensor:
    """Validate shape, dtype, device and finiteness; reshape (B, m) to (B, *output_shape); clip
    into the last activation's domain with a warning."""
    if not isinstance(y, Tensor):
        raise TypeError(f"y: expected a torch.Tensor of shape (B, *{tuple(net.output_shape)}), got {type(y).__name__}")
    out_shape = tuple(net.output_shape)
    size = math.prod(out_shape)
    if y.dim() >= 1 and tuple(y.shape[1:]) == out_shape:
        pass
    elif y.dim() == 2 and y.shape[1] == size:
        y = y.reshape(y.shape[0], *out_shape)
    else:
        dims = ", ".join(map(str, out_shape))
        expected = f"(B, {dims})" if len(out_shape) == 1 else f"(B, {dims}) or (B, {size})"
        raise ValueError(f"y: expected shape {expected} for this network's output, with the batch dimension first, got {tuple(y.shape)}")
    if y.shape[0] == 0:
        raise ValueError("y: expected a batch of at least one sample, got an empty batch")
    if not y.is_floating_point():
        raise ValueError(f"y: expected a floating-point tensor, got dtype {y.dtype}")
    if y.dtype in HALF_PRECISION:
        raise ValueError(
            f"y: expected float32 or float64, got {y.dtype}: half precision is too coarse for the solvers' step "
            "sizes and stopping tests; invert a float32 copy (copy.deepcopy(model).float(), y.float())"
        )
    if net.dtype is not None and (y.dtype != net.dtype or y.device != net.device):  # None: no parameters
        raise ValueError(
            f"y: expected dtype {net.dtype} on {net.device} like the network's parameters, got {y.dtype} on {y.device}; "
            "convert one to the other (e.g. y.to(model_parameter))"
        )
    if not bool(torch.isfinite(y).all()):
        raise ValueError(f"y: expected finite values, got {int((~torch.isfinite(y)).sum())} NaN/inf entries")
    activation = net.nodes[-1].activation
    clipped = activation.project_data(y)
    if not torch.equal(clipped, y):
        warnings.warn(
            f"y: {int((clipped != y).sum())} entries lie outside the domain {activation.domain} of the last activation "
            f"({activation!r}); clipped into it",
            stacklevel=3,
        )
    return clipped


def check_per_sample(name: str, value: Any, batch: int, like: Tensor, positive: bool) -> Tensor | None:
    """A float or (B,) tensor as a (B,) tensor on ``like``'s device and dtype, validated (None: None)."""
    if value is None:
        return None
    try:
        t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name}: expected a float or a tensor of shape ({batch},), got {value!r}") from None
    if t.dim() == 0:
        t = t.expand(batch).clone()
    elif tuple(t.shape) != (batch,):
        raise ValueError(f"{name}: expected a float or a tensor of shape ({batch},), got shape {tuple(t.shape)}")
    bad = ~torch.isfinite(t) | ((t <= 0) if positive else (t < 0))
    if bool(bad.any()):
        rule = "> 0" if positive else ">= 0"
        raise ValueError(f"{name}: expected finite values {rule}, got {t[bad][:5].tolist()}")
    return t


def check_init(x_init: Any, batch: int, net: LiftedNetwork, like: Tensor) -> Tensor:
    shape = (batch, *net.input_shape)
    if x_init is None:
        return like.new_zeros(shape)
    return check_start("x_init", x_init, shape, like)


def check_dual_init(dual_init: Any, tv: TotalVariation | None, x_init: Tensor) -> Tensor | None:
    """``dual_init`` checked (shape of ``∇x``, real, finite) and projected onto the dual ball ``‖z_ij‖ ≤ 1``
    (a solver's own dual is there already); None stays None."""
    if dual_init is None:
        return None
    if tv is None:
        raise ValueError("dual_init: the TV dual needs a TV regularizer, got regularizer=None: drop dual_init")
    shape = tuple(tv.zero_dual(x_init).shape)
    return tv.project_dual(check_start("dual_init", dual_init, shape, x_init, " (the shape of the TV gradient of x)"))


def check_start(name: str, value: Any, shape: tuple[int, ...], like: Tensor, what: str = "") -> Tensor:
    """A starting point: a real, finite tensor of ``shape`` (``what`` it is, for the message), moved to
    ``like``'s dtype and device."""
    if not isinstance(value, Tensor) or tuple(value.shape) != shape:
        got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"{name}: expected a tensor of shape {shape}{what}, got {got}")
    if value.is_complex():
        raise ValueError(f"{name}: expected a real tensor, got dtype {value.dtype}")
    value = value.to(dtype=like.dtype, device=like.device)
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name}: expected finite values, got {int((~torch.isfinite(value)).sum())} NaN/inf entries")
    return value
