"""A torch module seen as lifted layers (MATH.md §1).

A feed-forward network is read as

    N(x) = σ_L(W_L σ_{L-1}( ... σ_1(W_1 x + b_1) ... ) + b_L),   σ_l = prox_{Ψ_l},

where each ``x ↦ W_l x + b_l`` is an :class:`AffineMap` (a run of consecutive affine
modules: Linear, convolutions, average pooling, reshapes, BatchNorm in eval mode, ...) and
each σ_l a :class:`~lbinv.proximal.ProxActivation`. :class:`LiftedNetwork.from_module`
splits an ``nn.Sequential`` into such :class:`LiftedLayer` s.

Every affine map offers ``forward`` (W x + b), ``linear`` (W x), ``adjoint`` (Wᵀ y, explicit
transposed operators, ``torch.func.vjp`` only where no clean closed form exists), ``bias``
(b = forward(0)) and ``opnorm`` (‖W‖₂ by power iteration, cached while the parameters are
unchanged). All methods are batched: tensors are ``(B, *shape)``.

The lifted view reads the modules *live* (an optimiser step is seen at once) and always uses
eval semantics: BatchNorm with its running statistics, Dropout as the identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lbinv import proximal as _proximal
from lbinv.proximal import IDENTITY, ProxActivation, is_activation, proximal_activation

__all__ = ["AffineMap", "LiftedLayer", "LiftedNetwork", "operator_norm"]

Shape = tuple[int, ...]

_CONV = {1: F.conv1d, 2: F.conv2d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d}

_SUPPORTED_LAYERS = (
    "Linear, Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d, AvgPool1d, AvgPool2d, "
    "AdaptiveAvgPool1d, AdaptiveAvgPool2d, Flatten, Unflatten, BatchNorm1d/BatchNorm2d "
    "(eval mode), Dropout, Identity, nested nn.Sequential, and proximal activations ("
    + getattr(_proximal, "SUPPORTED_ACTIVATIONS", "see lbinv.proximal.proximal_activation")
    + ")"
)
_SEQUENTIAL_MSG = "the encoder must be an nn.Sequential of supported layers: " + _SUPPORTED_LAYERS

_IDENTITY_TYPES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_MAXPOOL_ALTERNATIVE = {
    nn.MaxPool1d: "nn.AvgPool1d",
    nn.MaxPool2d: "nn.AvgPool2d",
    nn.AdaptiveMaxPool1d: "nn.AdaptiveAvgPool1d",
    nn.AdaptiveMaxPool2d: "nn.AdaptiveAvgPool2d",
    nn.FractionalMaxPool2d: "nn.AvgPool2d",
    nn.LPPool1d: "nn.AvgPool1d",
    nn.LPPool2d: "nn.AvgPool2d",
}


def _where(index: int | None, path: str | None, module: nn.Module) -> str:
    """Human-readable location of a module in the flattened Sequential."""
    name = type(module).__name__
    if index is None:
        return name
    if not path or path == str(index):
        return f"module {index} ({name})"
    return f"module {index} ({name}, at '{path}' of the nested nn.Sequential)"


def _tuple(v: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (int(v),) * n


# --------------------------------------------------------------------------------------
# Elementary operators. Each knows its in/out shapes (no batch dim) and offers
# forward (exact module semantics), linear (no bias), adjoint and the tensors it reads.
# --------------------------------------------------------------------------------------


class _Op:
    module: nn.Module | None = None
    in_shape: Shape
    out_shape: Shape

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)

    def linear(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_shapes(self, in_shape: Shape, out_shape: Shape) -> None:
        """Called once after the dry forward; ops that need the shapes precompute here."""
        self.in_shape, self.out_shape = in_shape, out_shape

    def check_input(self, in_shape: Shape, where: str) -> None:
        """Raise a ValueError if ``in_shape`` cannot be this op's input (before the dry run)."""

    def tensors(self) -> list[Tensor]:
        if self.module is None:
            return []
        return list(self.module.parameters(recurse=True)) + list(self.module.buffers(recurse=True))


class _IdentityOp(_Op):
    """nn.Identity and Dropout (eval semantics): W = I."""

    def __init__(self, module: nn.Module | None = None) -> None:
        self.module = module

    def linear(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        return y


class _ReshapeOp(_Op):
    """Flatten / Unflatten: a permutation-free reshape, adjoint = reshape back."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def linear(self, x: Tensor) -> Tensor:
        return self.module(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], *self.in_shape)


class _LinearOp(_Op):
    """nn.Linear on the last dim: W x + b; adjoint y ↦ y W."""

    def __init__(self, module: nn.Linear) -> None:
        self.module = module

    def check_input(self, in_shape: Shape, where: str) -> None:
        n = self.module.in_features
        if len(in_shape) == 0 or in_shape[-1] != n:
            raise ValueError(
                f"{where} expects inputs whose last dimension is in_features={n} "
                f"(e.g. input_shape ({n},)), but got shape {tuple(in_shape)}"
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.module.weight, self.module.bias)

    def linear(self, x: Tensor) -> Tensor:
        return F.linear(x, self.module.weight)

    def adjoint(self, y: Tensor) -> Tensor:
        return torch.matmul(y, self.module.weight)


def _check_channels(in_shape: Shape, dim: int, channels: int, where: str, what: str) -> None:
    if len(in_shape) != dim + 1 or in_shape[0] != channels:
        spatial = ", ".join("HW"[i] if dim == 2 else "L" for i in range(dim))
        raise ValueError(
            f"{where} expects input_shape ({what}={channels}, {spatial}) (no batch dimension), "
            f"but got shape {tuple(in_shape)}"
        )


class _ConvOp(_Op):
    """ConvNd (zeros padding). Adjoint: conv_transposeNd with the output_padding that restores
    the input size (asymmetric 'same' padding: transpose without padding, then crop)."""

    def __init__(self, module: nn.modules.conv._ConvNd, dim: int) -> None:
        self.module, self.dim = module, dim

    def check_input(self, in_shape: Shape, where: str) -> None:
        _check_channels(in_shape, self.dim, self.module.in_channels, where, "in_channels")

    def _conv(self, x: Tensor, bias: Tensor | None) -> Tensor:
        m = self.module
        return _CONV[self.dim](x, m.weight, bias, m.stride, m.padding, m.dilation, m.groups)

    def forward(self, x: Tensor) -> Tensor:
        return self._conv(x, self.module.bias)

    def linear(self, x: Tensor) -> Tensor:
        return self._conv(x, None)

    def set_shapes(self, in_shape: Shape, out_shape: Shape) -> None:
        super().set_shapes(in_shape, out_shape)
        m, d = self.module, self.dim
        k, s, dil = _tuple(m.kernel_size, d), _tuple(m.stride, d), _tuple(m.dilation, d)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                left = right = (0,) * d
            else:  # 'same': total dil*(k-1), the extra one on the right (as ATen does)
                total = [dl * (kk - 1) for dl, kk in zip(dil, k)]
                left = tuple(t // 2 for t in total)
                right = tuple(t - t // 2 for t in total)
        else:
            left = right = _tuple(m.padding, d)
        self.symmetric = left == right
        self.left = left
        n_in, n_out = in_shape[1:], out_shape[1:]
        pad = left if self.symmetric else (0,) * d
        full = [n_in[i] + (0 if self.symmetric else left[i] + right[i]) for i in range(d)]
        self.t_padding = pad
        self.t_output_padding = tuple(
            full[i] - ((n_out[i] - 1) * s[i] - 2 * pad[i] + dil[i] * (k[i] - 1) + 1) for i in range(d)
        )

    def adjoint(self, y: Tensor) -> Tensor:
        m = self.module
        x = _CONV_T[self.dim](
            y, m.weight, None, m.stride, self.t_padding, self.t_output_padding, m.groups, m.dilation
        )
        if not self.symmetric:
            idx = (Ellipsis,) + tuple(
                slice(lf, lf + n) for lf, n in zip(self.left, self.in_shape[1:])
            )
            x = x[idx]
        return x


class _ConvTransposeOp(_Op):
    """ConvTransposeNd. Adjoint: convNd with the same stride/padding/dilation/groups,
    cropped to the input size (needed only when output_padding ≥ stride)."""

    def __init__(self, module: nn.modules.conv._ConvTransposeNd, dim: int) -> None:
        self.module, self.dim = module, dim

    def check_input(self, in_shape: Shape, where: str) -> None:
        _check_channels(in_shape, self.dim, self.module.in_channels, where, "in_channels")

    def _convt(self, x: Tensor, bias: Tensor | None) -> Tensor:
        m = self.module
        return _CONV_T[self.dim](
            x, m.weight, bias, m.stride, m.padding, m.output_padding, m.groups, m.dilation
        )

    def forward(self, x: Tensor) -> Tensor:
        return self._convt(x, self.module.bias)

    def linear(self, x: Tensor) -> Tensor:
        return self._convt(x, None)

    def adjoint(self, y: Tensor) -> Tensor:
        m = self.module
        x = _CONV[self.dim](y, m.weight, None, m.stride, m.padding, m.dilation, m.groups)
        idx = (Ellipsis,) + tuple(slice(0, n) for n in self.in_shape[1:])
        return x[idx]


class _AvgPoolOp(_Op):
    """AvgPoolNd without ceil_mode and without excluded padding: a per-channel convolution
    with the constant kernel 1/divisor. Adjoint: conv_transposeNd with that kernel."""

    def __init__(self, module: nn.Module, dim: int) -> None:
        self.module, self.dim = module, dim

    def linear(self, x: Tensor) -> Tensor:
        return self.module(x)

    def set_shapes(self, in_shape: Shape, out_shape: Shape) -> None:
        super().set_shapes(in_shape, out_shape)
        m, d = self.module, self.dim
        self.k = _tuple(m.kernel_size, d)
        self.s = _tuple(m.stride if m.stride is not None else m.kernel_size, d)
        self.p = _tuple(m.padding, d)
        div = getattr(m, "divisor_override", None) or math.prod(self.k)
        self.scale = 1.0 / div
        n_in, n_out = in_shape[-d:], out_shape[-d:]
        self.op = tuple(
            n_in[i] - ((n_out[i] - 1) * self.s[i] - 2 * self.p[i] + self.k[i]) for i in range(d)
        )

    def adjoint(self, y: Tensor) -> Tensor:
        d = self.dim
        kernel = torch.full((1, 1, *self.k), self.scale, dtype=y.dtype, device=y.device)
        yy = y.reshape(-1, 1, *y.shape[-d:])
        x = _CONV_T[d](yy, kernel, None, self.s, self.p, self.op)
        return x.reshape(y.shape[0], *self.in_shape)


class _VjpOp(_Op):
    """A parameter-free linear module without a clean closed-form adjoint (AvgPool with
    ceil_mode or count_include_pad=False, adaptive average pooling): Wᵀ y by torch.func.vjp.
    Works under torch.no_grad() and torch.inference_mode() callers."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def linear(self, x: Tensor) -> Tensor:
        return self.module(x)

    def adjoint(self, y: Tensor) -> Tensor:
        with torch.inference_mode(False), torch.enable_grad():
            if y.is_inference():
                y = y.clone()  # a normal tensor, usable by autograd
            x0 = torch.zeros((y.shape[0], *self.in_shape), dtype=y.dtype, device=y.device)
            _, pullback = torch.func.vjp(self.module, x0)
            (x,) = pullback(y)
        return x


class _BatchNormOp(_Op):
    """BatchNorm in eval mode: per-channel x ↦ s·x + (β − s·μ), s = γ / sqrt(σ² + ε).
    Self-adjoint linear part (a diagonal scaling)."""

    def __init__(self, module: nn.modules.batchnorm._BatchNorm, where: str) -> None:
        if module.training:
            raise ValueError(
                f"{where} is in training mode, where it normalises with batch statistics and "
                "is not a fixed affine map; call .eval() on the module (or the whole encoder) "
                "first so its running statistics are used"
            )
        if module.running_mean is None or module.running_var is None:
            raise ValueError(
                f"{where} has track_running_stats=False, so it always uses batch statistics and "
                "is not an affine map; use a BatchNorm with track_running_stats=True, in eval mode"
            )
        self.module = module

    def check_input(self, in_shape: Shape, where: str) -> None:
        m = self.module
        dims, want = ((1, 2), "(C,) or (C, L)") if isinstance(m, nn.BatchNorm1d) else ((3,), "(C, H, W)")
        if len(in_shape) not in dims or in_shape[0] != m.num_features:
            raise ValueError(
                f"{where} expects input_shape {want} with C = num_features = {m.num_features} "
                f"(no batch dimension), but got shape {tuple(in_shape)}"
            )

    def _scale(self) -> Tensor:
        m = self.module
        s = torch.rsqrt(m.running_var + m.eps)
        if m.weight is not None:
            s = m.weight * s
        return s.reshape(-1, *([1] * (len(self.in_shape) - 1)))

    def forward(self, x: Tensor) -> Tensor:
        m = self.module
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    def linear(self, x: Tensor) -> Tensor:
        return x * self._scale()

    def adjoint(self, y: Tensor) -> Tensor:
        return y * self._scale()


class _FlattenInputOp(_ReshapeOp):
    """Synthetic Flatten put in front of a Linear first layer fed with images."""

    def __init__(self) -> None:
        super().__init__(nn.Flatten())

    def tensors(self) -> list[Tensor]:
        return []


def _is_plain_sequential(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


_AFFINE_BASES = (
    nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Linear, nn.Flatten,
    nn.Unflatten, nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.AvgPool1d,
    nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d,
)


def _affine_op(module: nn.Module, where: str) -> _Op | None:
    """The elementary op for an affine module, None if the module is not affine (or is a
    subclass of an affine type that overrides forward()). Raises ValueError for refused
    configurations of affine types."""
    base = next((t for t in _AFFINE_BASES if isinstance(module, t)), None)
    if base is None or type(module).forward is not base.forward:
        return None
    if isinstance(module, _IDENTITY_TYPES):
        return _IdentityOp(module)
    if isinstance(module, nn.Linear):
        return _LinearOp(module)
    if isinstance(module, (nn.Flatten, nn.Unflatten)):
        return _ReshapeOp(module)
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        if module.padding_mode != "zeros":
            raise ValueError(
                f"{where} has padding_mode='{module.padding_mode}'; only padding_mode='zeros' "
                "is supported (it keeps the layer affine with an exact transposed adjoint), "
                "use padding_mode='zeros'"
            )
        return _ConvOp(module, 1 if isinstance(module, nn.Conv1d) else 2)
    if isinstance(module, (nn.ConvTranspose1d, nn.ConvTranspose2d)):
        if module.padding_mode != "zeros":
            raise ValueError(f"{where} has padding_mode='{module.padding_mode}'; use 'zeros'")
        return _ConvTransposeOp(module, 1 if isinstance(module, nn.ConvTranspose1d) else 2)
    if isinstance(module, (nn.AvgPool1d, nn.AvgPool2d)):
        dim = 1 if isinstance(module, nn.AvgPool1d) else 2
        pad = _tuple(module.padding, dim)
        if module.ceil_mode or (not module.count_include_pad and any(pad)):
            return _VjpOp(module)
        return _AvgPoolOp(module, dim)
    if isinstance(module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return _VjpOp(module)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _BatchNormOp(module, where)
    return None


def _flatten_modules(
    module: nn.Module | Iterable[nn.Module], prefix: str = ""
) -> list[tuple[str, nn.Module]]:
    """(dotted path, module) for every leaf of nested plain nn.Sequentials."""
    items = module.named_children() if isinstance(module, nn.Module) else (
        (str(i), m) for i, m in enumerate(module))
    out: list[tuple[str, nn.Module]] = []
    for name, child in items:
        path = f"{prefix}{name}"
        if _is_plain_sequential(child):
            out.extend(_flatten_modules(child, prefix=path + "."))
        else:
            out.append((path, child))
    return out


def _first_floating(tensors: Iterable[Tensor]) -> Tensor | None:
    for t in tensors:
        if t.is_floating_point():
            return t
    return None


def _version_key(tensors: Iterable[Tensor]) -> tuple | None:
    """(id, version, data_ptr, dtype, device) of every tensor; None if one has no version
    counter (inference tensors), meaning "do not cache"."""
    key = []
    for t in tensors:
        try:
            v = t._version
        except RuntimeError:
            return None
        key.append((id(t), v, t.data_ptr(), t.dtype, t.device))
    return tuple(key)


# --------------------------------------------------------------------------------------
# Power iteration
# --------------------------------------------------------------------------------------


def operator_norm(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    in_shape: Sequence[int],
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    n_vectors: int = 4,
    max_iter: int = 500,
    rtol: float = 1e-5,
    check_every: int = 10,
    seed: int = 0,
) -> float:
    """‖A‖₂ of a linear map (not squared) by block power iteration on AᵀA.

    ``n_vectors`` seeded random vectors are iterated in one batch, V ← orth(AᵀA V); every
    ``check_every`` iterations the Rayleigh–Ritz estimate λ = max eig((AV)(AV)ᵀ) is taken,
    and the loop stops once it changes by less than ``rtol`` (relative) or after
    ``max_iter`` iterations. Returns sqrt(λ).

    The estimate errs on the LOW side: λ is a Ritz value of AᵀA on an orthonormal subspace,
    hence ≤ ‖A‖₂² (up to rounding); callers multiply by a safety factor (e.g. 1.01).
    """
    dtype = dtype or torch.float64
    in_shape = tuple(in_shape)
    n = math.prod(in_shape)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    k = max(1, min(n_vectors, n))
    with torch.no_grad():
        v = torch.randn(k, n, generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)
        v = torch.linalg.qr(v.T).Q.T
        est_prev, est = -1.0, 0.0
        for it in range(1, max_iter + 1):
            av = forward(v.reshape(k, *in_shape))
            avf = av.reshape(k, -1)
            if it % check_every == 0 or it == max_iter:
                gram = avf @ avf.T
                est = float(torch.linalg.eigvalsh(0.5 * (gram + gram.T)).max().clamp_min(0.0))
                if not math.isfinite(est):
                    raise ValueError("power iteration produced non-finite values: check the weights")
                if est == 0.0 or abs(est - est_prev) <= rtol * est:
                    break
                est_prev = est
            w = adjoint(av).reshape(k, -1)
            v = torch.linalg.qr(w.T).Q.T
    return math.sqrt(est)


# --------------------------------------------------------------------------------------
# AffineMap
# --------------------------------------------------------------------------------------


class AffineMap:
    """x ↦ W x + b for a run of consecutive affine modules (MATH.md §1).

    Parameters
    ----------
    modules : an affine module or a sequence of them (nested plain ``nn.Sequential`` are
        flattened); an empty sequence is the identity.
    in_shape : input shape without the batch dimension.
    context : optional further modules whose parameters give ``dtype``/``device`` when these
        modules have none (used by :class:`LiftedNetwork` for parameter-free runs).

    ``out_shape`` is found once by a dry forward of zeros. Computation happens in the
    parameters' dtype and on their device (inputs are cast); a map without any parameters
    (pooling, reshapes) computes in the input's dtype and reports ``dtype``/``device`` None.
    """

    def __init__(
        self,
        modules: nn.Module | Sequence[nn.Module],
        in_shape: Sequence[int],
        *,
        context: Sequence[nn.Module] = (),
    ) -> None:
        self._ops: list[_Op] = []
        if isinstance(modules, nn.Module):
            modules = [modules] if not _is_plain_sequential(modules) else list(modules)
        items = _flatten_modules(list(modules))
        ops: list[_Op] = []
        for i, (path, m) in enumerate(items):
            where = _where(i, path, m)
            op = _affine_op(m, where)
            if op is None:
                raise ValueError(f"{where} is not an affine module; AffineMap takes only: "
                                 + _SUPPORTED_LAYERS.split(", nested")[0])
            op.where = where  # type: ignore[attr-defined]
            ops.append(op)
        self._init_ops(ops, in_shape, context)

    @classmethod
    def _from_ops(cls, ops: list[_Op], in_shape: Sequence[int], context: Sequence[nn.Module]) -> AffineMap:
        self = cls.__new__(cls)
        self._init_ops(ops, in_shape, context)
        return self

    def _init_ops(self, ops: list[_Op], in_shape: Sequence[int], context: Sequence[nn.Module]) -> None:
        self._ops = ops
        self.modules: list[nn.Module] = [op.module for op in ops if op.module is not None]
        self._context = list(context)
        self.in_shape: Shape = _as_shape(in_shape)
        self._opnorm_cache: tuple[tuple, float] | None = None
        self._bias_cache: tuple[tuple, Tensor] | None = None
        # dry forward of zeros (batch of 2: catches modules that would mix the batch dim)
        ref = self._ref_tensor()
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        shape = self.in_shape
        with torch.no_grad():
            x = torch.zeros((2, *shape), dtype=dtype, device=device)
            for op in ops:
                where = getattr(op, "where", type(op.module).__name__ if op.module else "Flatten")
                op.check_input(shape, where)
                try:
                    y = op.forward(x)
                except (RuntimeError, ValueError, IndexError) as err:
                    raise ValueError(
                        f"{where} cannot take inputs of shape {shape} (no batch dimension): {err}"
                    ) from err
                if y.dim() == 0 or y.shape[0] != 2:
                    raise ValueError(
                        f"{where} changes the batch dimension (input (B, *{shape}) gave "
                        f"{tuple(y.shape)} for B = 2); it must act on dims 1.. only"
                    )
                op.set_shapes(shape, tuple(y.shape[1:]))
                shape, x = tuple(y.shape[1:]), y
        self.out_shape: Shape = shape

    # -- dtype / device ---------------------------------------------------------------
    def _tensors(self) -> list[Tensor]:
        return [t for op in self._ops for t in op.tensors()]

    def _ref_tensor(self) -> Tensor | None:
        ref = _first_floating(self._tensors())
        if ref is None:
            ctx = (t for m in self._context for t in list(m.parameters()) + list(m.buffers()))
            ref = _first_floating(ctx)
        return ref

    @property
    def dtype(self) -> torch.dtype | None:
        """Dtype of the parameters (computations happen in it); None if there are none."""
        ref = self._ref_tensor()
        return None if ref is None else ref.dtype

    @property
    def device(self) -> torch.device | None:
        """Device of the parameters; None if there are none."""
        ref = self._ref_tensor()
        return None if ref is None else ref.device

    def _cast(self, x: Tensor, shape: Shape, name: str) -> Tensor:
        if tuple(x.shape[1:]) != shape or x.dim() != len(shape) + 1:
            raise ValueError(
                f"AffineMap.{name} expects a batched tensor of shape (B, *{shape}), "
                f"got {tuple(x.shape)}"
            )
        ref = self._ref_tensor()
        if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
            x = x.to(dtype=ref.dtype, device=ref.device)
        return x

    # -- the operators ----------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """W x + b, exactly as the modules compute it (eval semantics). x: (B, *in_shape)."""
        x = self._cast(x, self.in_shape, "forward")
        for op in self._ops:
            x = op.forward(x)
        return x

    __call__ = forward

    def linear(self, x: Tensor) -> Tensor:
        """W x (no bias), by the modules' ops without their bias terms. x: (B, *in_shape)."""
        x = self._cast(x, self.in_shape, "linear")
        for op in self._ops:
            x = op.linear(x)
        return x

    def adjoint(self, y: Tensor) -> Tensor:
        """Wᵀ y: explicit transposed ops composed in reverse order. y: (B, *out_shape)."""
        y = self._cast(y, self.out_shape, "adjoint")
        for op in reversed(self._ops):
            y = op.adjoint(y)
        return y

    @property
    def bias(self) -> Tensor:
        """b = forward(0), shape ``out_shape`` (detached; cached while parameters are unchanged)."""
        key = _version_key(self._tensors())
        if key is not None and self._bias_cache is not None and self._bias_cache[0] == key:
            return self._bias_cache[1]
        ref = self._ref_tensor()
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        with torch.inference_mode(False), torch.no_grad():  # a normal tensor, no graph
            b = self.forward(torch.zeros((1, *self.in_shape), dtype=dtype, device=device))[0]
        if key is not None:
            self._bias_cache = (key, b)
        return b

    def opnorm(self) -> float:
        """‖W‖₂ (spectral norm, NOT squared) by power iteration on WᵀW (see
        :func:`operator_norm`): accurate to well within 1%, and errs on the LOW side, so
        step sizes should use a safety factor. Cached; the cache key is (id, version) of
        every parameter and buffer involved, so in-place updates (optimiser steps)
        invalidate it."""
        key = _version_key(self._tensors())
        if key is not None and self._opnorm_cache is not None and self._opnorm_cache[0] == key:
            return self._opnorm_cache[1]
        if not self._ops or all(isinstance(op, (_IdentityOp, _ReshapeOp)) for op in self._ops):
            value = 1.0  # a reshape / identity: W is a permutation-free reshape, ‖W‖ = 1
        else:
            ref = self._ref_tensor()
            value = operator_norm(
                self.linear,
                self.adjoint,
                self.in_shape,
                dtype=ref.dtype if ref is not None else torch.float64,
                device=ref.device if ref is not None else None,
            )
        if key is not None:
            self._opnorm_cache = (key, value)
        return value

    def __repr__(self) -> str:
        names = ", ".join(type(op.module).__name__ for op in self._ops if op.module is not None)
        return f"AffineMap([{names}], in_shape={self.in_shape}, out_shape={self.out_shape})"


# --------------------------------------------------------------------------------------
# Lifted layers and networks
# --------------------------------------------------------------------------------------


@dataclass
class LiftedLayer:
    """One lifted layer x_l = σ_l(W_l x_{l-1} + b_l), σ_l = prox_{Ψ_l} (MATH.md §1)."""

    affine: AffineMap
    activation: ProxActivation

    def __call__(self, x: Tensor) -> Tensor:
        return self.activation(self.affine.forward(x))


class LiftedNetwork:
    """An ``nn.Sequential`` read as L lifted layers (MATH.md §1):

        N(x) = σ_L(W_L σ_{L-1}( ... σ_1(W_1 x + b_1) ... ) + b_L).

    Build it with :meth:`from_module`. ``net(x)`` equals ``module(x)`` (eval semantics);
    ``net.layers[l].affine`` is an :class:`AffineMap`, ``net.layers[l].activation`` a
    :class:`~lbinv.proximal.ProxActivation`. The network views the module live: parameter
    updates are seen at once, shapes are fixed at construction.
    """

    def __init__(self, layers: Sequence[LiftedLayer], module: nn.Module | None = None) -> None:
        if not layers:
            raise ValueError("a LiftedNetwork needs at least one layer")
        self.layers: list[LiftedLayer] = list(layers)
        self.module = module

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_module(
        cls, module: nn.Module | LiftedNetwork, input_shape: Sequence[int] | int | None = None
    ) -> LiftedNetwork:
        """Split ``module`` into lifted layers.

        ``module``: an ``nn.Sequential`` (nested ones are flattened) of supported layers, or a
        single supported layer (e.g. the paper's perceptron ``nn.Linear(4096, 512)``).
        Consecutive affine modules compose into one :class:`AffineMap`; each activation
        closes a layer; a trailing affine run gets the identity activation; an activation
        with no preceding affine module gets the identity map.

        ``input_shape`` (no batch dimension) may be omitted when the first layer is
        ``nn.Linear`` (it is then ``(in_features,)``). If the first layer is ``nn.Linear``
        and ``input_shape`` is an image with ``in_features`` elements (e.g. (64, 64) for
        ``nn.Linear(4096, 512)``), the input is read as flattened: Flatten → module.

        Raises ValueError (naming the module, its index in the flattened Sequential and
        what to use instead) for max pooling, non-proximal activations, two activations in
        a row, BatchNorm in training mode, other modules, and inconsistent ``input_shape``.
        """
        if isinstance(module, LiftedNetwork):
            if input_shape is not None and _as_shape(input_shape) != module.input_shape:
                raise ValueError(
                    f"input_shape {tuple(_as_shape(input_shape))} does not match the "
                    f"LiftedNetwork's input_shape {module.input_shape}"
                )
            return module
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be an nn.Module, got {type(module).__name__}")
        if _is_plain_sequential(module):
            items = _flatten_modules(module)
            if not items:
                raise ValueError("the nn.Sequential is empty: nothing to invert")
        elif _is_leaf_layer(module):
            items = [("", module)]
        else:
            raise ValueError(
                f"{type(module).__name__} is not a plain nn.Sequential (a container, or a module with "
                "its own forward(), cannot be split into layers); "
                + _SEQUENTIAL_MSG + ". Pass e.g. model.encoder if it is such a Sequential."
            )

        # 1. classify: segments of (affine ops, activation)
        segments: list[tuple[list[_Op], ProxActivation]] = []
        run: list[_Op] = []
        first_structural: tuple[_Op, str] | None = None
        prev_act: str | None = None  # where of the activation that closed the last layer
        for i, (path, m) in enumerate(items):
            where = _where(i, path, m)
            alt = next((a for t, a in _MAXPOOL_ALTERNATIVE.items() if isinstance(m, t)), None)
            if alt is not None:
                raise ValueError(
                    f"{where} is not supported: max/Lp pooling is not affine and has no lifted "
                    f"Bregman form; use {alt} instead (average pooling is linear)"
                )
            op = _affine_op(m, where)
            if op is not None:
                op.where = where  # type: ignore[attr-defined]
                run.append(op)
                if first_structural is None and not isinstance(op, _IdentityOp):
                    first_structural = (op, where)
                prev_act = None
                continue
            if is_activation(m):
                try:
                    act = proximal_activation(m)
                except ValueError as err:
                    raise ValueError(f"{where}: {err}") from err
                if not run and prev_act is not None:
                    raise ValueError(
                        f"{where}: two activations in a row ({prev_act} then "
                        f"{type(m).__name__}); each activation must follow an affine layer. "
                        "Remove one of them or put an affine layer (e.g. Linear, Conv2d) between them"
                    )
                segments.append((run, act))
                run, prev_act = [], where
                continue
            raise ValueError(f"{where} is not supported; " + _SEQUENTIAL_MSG)
        if run or not segments:
            segments.append((run, IDENTITY))

        # 2. input shape
        first_op = first_structural[0] if first_structural else None
        flatten_input = False
        if input_shape is None:
            if isinstance(first_op, _LinearOp):
                shape: Shape = (first_op.module.in_features,)
            else:
                what = first_structural[1] if first_structural else "the first module"
                raise ValueError(
                    f"input_shape is required: it can only be inferred when the first layer is "
                    f"nn.Linear, but the first layer is {what}; pass input_shape without the "
                    "batch dimension, e.g. input_shape=(1, 28, 28)"
                )
        else:
            shape = _as_shape(input_shape)
            if isinstance(first_op, _LinearOp):
                n = first_op.module.in_features
                if len(shape) > 1 and shape[-1] != n and math.prod(shape) == n:
                    flatten_input = True  # the perceptron reads vectorised images
                elif shape[-1] != n:
                    raise ValueError(
                        f"{first_structural[1]} expects input_shape ({n},) (in_features={n}), "
                        f"or an image with {n} elements in all (read as flattened), but got "
                        f"input_shape {shape}"
                    )
        if flatten_input:
            segments[0][0].insert(0, _FlattenInputOp())

        # 3. affine maps, shapes chained through the (elementwise) activations
        context = [m for _, m in items]
        layers = []
        for ops, act in segments:
            affine = AffineMap._from_ops(ops, shape, context)
            layers.append(LiftedLayer(affine, act))
            shape = affine.out_shape
        return cls(layers, module)

    # -- evaluation -------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        """N(x) for x of shape (B, *input_shape); equals module(x)."""
        for layer in self.layers:
            x = layer.activation(layer.affine.forward(x))
        return x

    __call__ = forward

    def forward_all(self, x: Tensor) -> list[Tensor]:
        """[x_1, ..., x_L]: the output of every layer, x_l = σ_l(W_l x_{l-1} + b_l)."""
        outs = []
        for layer in self.layers:
            x = layer.activation(layer.affine.forward(x))
            outs.append(x)
        return outs

    # -- description ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i: int) -> LiftedLayer:
        return self.layers[i]

    @property
    def input_shape(self) -> Shape:
        return self.layers[0].affine.in_shape

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].affine.out_shape

    @property
    def dtype(self) -> torch.dtype | None:
        """Dtype of the parameters; None for a network without parameters."""
        return next((ly.affine.dtype for ly in self.layers if ly.affine.dtype is not None), None)

    @property
    def device(self) -> torch.device | None:
        """Device of the parameters; None for a network without parameters."""
        return next((ly.affine.device for ly in self.layers if ly.affine.device is not None), None)

    def __repr__(self) -> str:
        lines = [f"LiftedNetwork(input_shape={self.input_shape}, output_shape={self.output_shape}, ["]
        for ly in self.layers:
            lines.append(f"  {ly.affine!r} -> {type(ly.activation).__name__},")
        return "\n".join(lines + ["])"])


def _as_shape(input_shape: Sequence[int] | int) -> Shape:
    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    try:
        shape = tuple(int(s) for s in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shape must be a tuple of positive ints (no batch dimension), got {input_shape!r}"
        ) from None
    if not shape or any(s <= 0 for s in shape):
        raise ValueError(
            f"input_shape must be a non-empty tuple of positive ints (no batch dimension), got {shape}"
        )
    return shape


def _is_leaf_layer(module: nn.Module) -> bool:
    """A single supported (or knowingly refused) layer, accepted as a one-module network."""
    if any(isinstance(module, t) for t in _MAXPOOL_ALTERNATIVE):
        return True
    try:
        if _affine_op(module, type(module).__name__) is not None:
            return True
    except ValueError:
        return True  # a known affine type with a refused configuration: report it later
    return is_activation(module)
