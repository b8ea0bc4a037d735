"""How the inversion callback reaches into any LightningModule and its validation batches: the
encoder and decoder accessors, the encoder check, the dry run and the input checks of the first
validation batch, the input images of a batch, eval mode, the device and dtype to invert on, and
the float32 view of a half-precision encoder. Nothing here knows :mod:`lbinv.lightning.models`.
"""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch
from torch import Tensor, nn

from lbinv._checks import HALF_PRECISION
from lbinv.lifted import LiftedNetwork
from lbinv.lightning.callback.messages import Notices
from lbinv.operators.sequential import is_plain_sequential
from lbinv.probe import as_inputs
from lbinv.solvers.inversion import check_solver_depth
from lbinv.tracing import Output, OutputError, code_module, eval_mode

if TYPE_CHECKING:  # either namespace's classes
    from lightning.pytorch import LightningModule, Trainer

#: Keys under which a dict batch may hold the input images, in order of preference.
INPUT_KEYS = ("x", "image", "images", "input", "inputs")


def accessor_name(spec: Any) -> Optional[str]:
    """The attribute name of an encoder/decoder accessor, or the callable's name."""
    if spec is None or isinstance(spec, str):
        return spec
    return getattr(spec, "__qualname__", None) or repr(spec)


def _resolve(name: str, spec: Any, pl_module: LightningModule) -> Any:
    if isinstance(spec, str):
        try:
            return operator.attrgetter(spec)(pl_module)
        except AttributeError:
            raise ValueError(
                f"InversionCallback: `{name}={spec!r}` but {type(pl_module).__name__} has no attribute {spec!r}; pass "
                f"`{name}=` the attribute name of the {name} or a callable `pl_module -> {name}`."
            ) from None
    return spec(pl_module)


def resolve_encoder(
    spec: Any, pl_module: LightningModule, output: Output = None, input_shape: Optional[tuple[int, ...]] = None
) -> nn.Module:
    """The encoder as a module returning the code: the accessor's module, or method of a module
    (``"model.encode"``), with the item ``output`` of a tuple, list or dict output picked; with
    ``nn.Flatten()`` before it when it takes the inputs flattened (:func:`takes_flat_inputs`)."""
    encoder = _resolve("encoder", spec, pl_module)
    if not isinstance(encoder, nn.Module) and not isinstance(getattr(encoder, "__self__", None), nn.Module):
        raise ValueError(
            f"InversionCallback: `encoder` must resolve to a torch.nn.Module or a method of one (e.g. "
            f"'model.encode'), got {type(encoder).__name__} from {accessor_name(spec)!r} on {type(pl_module).__name__}."
        )
    encoder = code_module(encoder, output)
    if input_shape is not None and takes_flat_inputs(encoder, input_shape) is not None:
        return nn.Sequential(nn.Flatten(), encoder)
    return encoder


def takes_flat_inputs(encoder: nn.Module, input_shape: tuple[int, ...]) -> Optional[nn.Linear]:
    """The first layer of ``encoder`` when it is an ``nn.Linear`` that reads the inputs flattened
    (``in_features`` = the product of ``input_shape``, which has several dimensions), as in Lightning's
    LitAutoEncoder, whose ``training_step`` flattens the batch; else None."""
    first = encoder
    while isinstance(first, nn.Sequential) and is_plain_sequential(first) and len(first) > 0:
        first = first[0]
    if isinstance(first, nn.Linear) and len(input_shape) > 1 and first.in_features == math.prod(input_shape):
        return first
    return None


def resolve_decoder(spec: Any, pl_module: LightningModule) -> Optional[Callable[[Tensor], Tensor]]:
    if spec is None:
        return None
    decoder = _resolve("decoder", spec, pl_module)
    if not callable(decoder):
        raise ValueError(
            f"InversionCallback: `decoder` must resolve to an nn.Module or a callable, got "
            f"{type(decoder).__name__} from {accessor_name(spec)!r} on {type(pl_module).__name__}."
        )
    return decoder


def check_encoder(
    pl_module: LightningModule,
    encoder_spec: Any,
    decoder_spec: Any,
    input_shape: Optional[tuple[int, ...]],
    defer_if_shape_unknown: bool,
    encoder_output: Output = None,
    solver_options: Optional[dict[str, Any]] = None,
) -> bool:
    """Resolve encoder and decoder and build the lifted network: a missing attribute, an
    unsupported layer or (with ``solver_options`` of method "lifted") an option for another depth
    raises ``ValueError``. Returns ``False`` when the check has to wait: without
    a known input shape (and with ``defer_if_shape_unknown``) a network that needs one is checked
    again at the first validation batch, whose shape is then known; that batch comes before the
    first training epoch when a sanity check runs."""
    encoder = resolve_encoder(encoder_spec, pl_module, encoder_output, input_shape)
    resolve_decoder(decoder_spec, pl_module)
    with eval_mode(encoder):
        try:
            net = LiftedNetwork.from_module(encoder, input_shape)
            if solver_options is not None:
                check_solver_depth(solver_options, net)
        except ValueError as err:
            # without a shape only the "input_shape is required" failure can wait for a batch;
            # an unsupported layer or a missing attribute fails now
            if input_shape is None and defer_if_shape_unknown and "input_shape" in str(err):
                return False
            why = err.named("encoder_output") if isinstance(err, OutputError) else str(err)
            raise ValueError(
                f"InversionCallback: cannot invert the encoder {accessor_name(encoder_spec)!r} of {type(pl_module).__name__}: {why}"
            ) from err
    return True


def dry_run(pl_module: LightningModule, encoder_spec: Any, decoder_spec: Any, x: Tensor, encoder_output: Output = None) -> None:
    """Run the encoder and the decoder once on one validation input ``x`` (a batch of one), so that
    what would fail at the first inversion fails now, before training, saying what to do: an encoder
    that cannot take the validation inputs as they come, a decoder that fails on its codes or whose
    output cannot be compared with the inputs."""
    shape = tuple(x.shape[1:])
    encoder = resolve_encoder(encoder_spec, pl_module, encoder_output, shape)
    decoder = resolve_decoder(decoder_spec, pl_module)
    param = next((p for p in encoder.parameters() if p.is_floating_point()), None)
    if param is not None:  # the encoder's own device and dtype (half precision included)
        x = x.to(param.device, param.dtype)
    with torch.no_grad(), eval_mode(encoder, decoder):
        try:
            code = encoder(x)
        except Exception as err:
            raise ValueError(
                f"InversionCallback: the encoder {accessor_name(encoder_spec)!r} fails on a validation input of shape "
                f"{shape} ({type(err).__name__}: {err}); pass `encoder=` a callable returning a module that takes the "
                "inputs as the validation batches hold them (e.g. nn.Sequential(nn.Flatten(), model.encoder))."
            ) from err
        if decoder is None:
            return
        try:
            as_inputs(decoder(code), tuple(code.shape[1:]), shape)
        except Exception as err:
            expects = first_linear_input(decoder)
            if expects is not None and expects != code[0].numel():
                raise ValueError(
                    f"InversionCallback: the encoder {accessor_name(encoder_spec)!r} gives codes of shape "
                    f"{tuple(code.shape[1:])} ({code[0].numel()} numbers), but the decoder "
                    f"{accessor_name(decoder_spec)!r} starts with a Linear that takes {expects}. Either the encoder stops "
                    "too early (a model that maps the encoder's output further before decoding, as lightning-bolts' AE "
                    "does with fc(encoder(x)), needs that map in the encoder: encoder=lambda m: nn.Sequential(m.encoder, "
                    "m.fc)), or the decoder is not the one for these codes: pass `decoder=` the one that is, or None."
                ) from err
            raise ValueError(
                f"InversionCallback: the decoder {accessor_name(decoder_spec)!r} fails on the encoder's codes "
                f"({type(err).__name__}: {err}); pass `decoder=` a callable from codes to images of the inputs' size "
                "(it is reshaped to them), or decoder=None."
            ) from err


def first_linear_input(decoder: Any) -> Optional[int]:
    """``in_features`` of the first layer of ``decoder`` when that is an ``nn.Linear`` (through nested
    plain ``nn.Sequential``s and modules whose first registered child is one), else None."""
    first = decoder
    while isinstance(first, nn.Module) and not isinstance(first, nn.Linear) and len(first._modules) > 0:
        first = next(iter(first._modules.values()))
    return first.in_features if isinstance(first, nn.Linear) else None


def known_input_shape(
    input_shape: Optional[tuple[int, ...]], probe: Optional[Tensor], pl_module: LightningModule
) -> Optional[tuple[int, ...]]:
    """The input shape before any validation batch: the given one, the probe's (from a
    checkpoint), or the module's ``example_input_array``; None when none is known."""
    if input_shape is not None:
        return input_shape
    if probe is not None:
        return tuple(probe.shape[1:])
    example = getattr(pl_module, "example_input_array", None)
    if isinstance(example, Tensor) and example.dim() >= 2:
        return tuple(example.shape[1:])
    return None


def range_warning(data_range: Optional[tuple[float, float]], x: Tensor) -> Optional[str]:
    """What to tell a user whose validation images ``x`` leave ``data_range``; None when they don't
    (or when the range is taken from the probe)."""
    if data_range is None:
        return None
    x_lo, x_hi = float(x.min()), float(x.max())
    if data_range[0] <= x_lo and x_hi <= data_range[1]:
        return None
    return (
        f"InversionCallback: validation images take values in [{x_lo:.3g}, {x_hi:.3g}], outside data_range="
        f"{data_range}: PSNR and the image grids clamp them and the inversion is boxed into it. Pass "
        "data_range=(lo, hi) of your images (e.g. (-1, 1) for images scaled to [-1, 1]), or data_range=None to take "
        "the probe's own range."
    )


def has_validation_step(pl_module: LightningModule) -> bool:
    """Whether the module (of either namespace) defines ``validation_step`` beyond the stub that
    LightningModule carries."""
    stubs = [
        vars(cls)["validation_step"]
        for cls in type(pl_module).__mro__
        if cls.__name__ == "LightningModule" and "validation_step" in vars(cls)
    ]
    step = getattr(type(pl_module), "validation_step", None)
    return step is not None and all(step is not stub for stub in stubs)


def batch_inputs(batch: Any) -> Tensor:
    """The input images of a validation batch: a tensor, the first item of a tuple/list, or
    ``batch[key]`` for the first of :data:`INPUT_KEYS` in a mapping."""
    if isinstance(batch, Tensor):
        x = batch
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        x = batch[0]
    elif isinstance(batch, Mapping) and (key := next((k for k in INPUT_KEYS if k in batch), None)):
        x = batch[key]
    else:
        raise ValueError(
            "InversionCallback: cannot find the input images in the validation batch: expected a tensor, a tuple/list "
            "whose first item is a tensor, or a dict with key 'x', 'image', 'images', 'input' or 'inputs'; got "
            f"{type(batch).__name__}."
        )
    if not isinstance(x, Tensor) or x.dim() < 2:
        raise ValueError(f"InversionCallback: the validation inputs must be a batched tensor (B, ...), got {x!r:.80}.")
    return x


def inversion_target(encoder: nn.Module, pl_module: LightningModule) -> tuple[torch.device, torch.dtype]:
    """Where and in which dtype the callback inverts: the device and floating dtype of the encoder's
    first parameter (without one: the module's device and the default dtype), with half precision
    (Lightning's "16-true", "bf16-true") raised to float32, since :func:`lbinv.invert` refuses it."""
    param = next(iter(encoder.parameters()), None)
    if param is None:
        return pl_module.device, torch.get_default_dtype()
    dtype = param.dtype if param.dtype.is_floating_point else torch.get_default_dtype()
    return param.device, torch.float32 if dtype in HALF_PRECISION else dtype


def at_precision(
    encoder: nn.Module, decoder: Optional[Callable[[Tensor], Tensor]], dtype: torch.dtype
) -> tuple[nn.Module, Optional[Callable[[Tensor], Tensor]]]:
    """The encoder and decoder to invert with in ``dtype``: an encoder with floating parameters of
    another dtype (half precision) is inverted as a copy in ``dtype``, and its decoder then gets the
    noisy codes in the encoder's own dtype. Otherwise both are returned as they are."""
    param = next(iter(encoder.parameters()), None)
    if param is None or not param.dtype.is_floating_point or param.dtype == dtype:
        return encoder, decoder
    own = param.dtype
    wrapped = None if decoder is None else (lambda codes: decoder(codes.to(own)))
    return copy.deepcopy(encoder).to(dtype), wrapped


class ModuleAccess:
    """The user's ``encoder``, ``decoder`` and ``encoder_output`` (with ``input_shape``, ``data_range``
    and the options of method "lifted", which the checks need), built once in the callback's
    ``__init__``: everything that reaches into a LightningModule for them goes through here, the
    checks of a run included (each passes once per run, :meth:`new_run`)."""

    def __init__(
        self,
        encoder: Any,
        decoder: Any,
        encoder_output: Output,
        input_shape: Optional[tuple[int, ...]],
        data_range: Optional[tuple[float, float]],
        lifted_options: Optional[dict[str, Any]],
    ) -> None:
        self.encoder_spec, self.decoder_spec, self.encoder_output = encoder, decoder, encoder_output
        self.input_shape, self.data_range, self.lifted_options = input_shape, data_range, lifted_options
        self.encoder_checked = False
        self.batch_checked = False  # the checks of the first validation batch of a run

    @property
    def encoder_name(self) -> Optional[str]:
        return accessor_name(self.encoder_spec)

    @property
    def has_decoder(self) -> bool:
        return self.decoder_spec is not None

    def encoder(self, pl_module: LightningModule, input_shape: Optional[tuple[int, ...]] = None) -> nn.Module:
        """See :func:`resolve_encoder`."""
        return resolve_encoder(self.encoder_spec, pl_module, self.encoder_output, input_shape)

    def decoder(self, pl_module: LightningModule) -> Optional[Callable[[Tensor], Tensor]]:
        """See :func:`resolve_decoder`."""
        return resolve_decoder(self.decoder_spec, pl_module)

    def new_run(self) -> None:
        """A run starts (the module may differ from a previous run's): every check runs again."""
        self.encoder_checked = self.batch_checked = False

    def check_encoder(self, pl_module: LightningModule, probe: Optional[Tensor]) -> None:
        """When fit/validate starts: :func:`check_encoder` with the shape known by then
        (:func:`known_input_shape`), deferred to the first validation batch when there is none."""
        self._check(pl_module, known_input_shape(self.input_shape, probe, pl_module), defer_if_shape_unknown=True)

    def check_batch(self, trainer: Trainer, pl_module: LightningModule, x: Tensor, notices: Notices) -> None:
        """At a validation batch ``x``: the encoder check, with its shape (so it fails before the first
        training epoch when a sanity check runs); once per run the dry run (:func:`dry_run`), a warning
        when the images leave ``data_range`` (PSNR would clamp them), and a line when the encoder reads
        the inputs flattened (the callback flattens them for it)."""
        input_shape = tuple(x.shape[1:])
        self._check(pl_module, self.input_shape or input_shape, defer_if_shape_unknown=False)
        if self.batch_checked:
            return
        dry_run(pl_module, self.encoder_spec, self.decoder_spec, x[:1], self.encoder_output)
        message = range_warning(self.data_range, x)
        if message is not None:
            notices.warn(trainer, "range", message)
        first = takes_flat_inputs(self.encoder(pl_module), input_shape)
        if first is not None:
            notices.say(
                trainer,
                "flattened",
                f"InversionCallback: the encoder {self.encoder_name!r} starts with {first} "
                f"and the validation inputs are {input_shape}: they are flattened for it (nn.Flatten() before "
                "the encoder).",
            )
        self.batch_checked = True

    def _check(self, pl_module: LightningModule, input_shape: Optional[tuple[int, ...]], defer_if_shape_unknown: bool) -> None:
        if not self.encoder_checked:
            self.encoder_checked = check_encoder(
                pl_module,
                self.encoder_spec,
                self.decoder_spec,
                input_shape,
                defer_if_shape_unknown,
                self.encoder_output,
                self.lifted_options,
            )
