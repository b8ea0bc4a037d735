"""Tests of lbinv.lightning.callback (InversionCallback): tags read back from the event files,
foreign modules, resume, DDP, failures.

Everything is tiny (8×8 images, 4-image probes, ≤ 30 solver iterations) so the file runs in well
under a minute on two cores; the DDP test runs a two-process script in a subprocess with a timeout.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch
import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import lbinv.lightning.callback.inverter as inverter_module
import lbinv.lightning.callback.schedule as schedule
from lbinv.lightning.callback import InversionCallback, InversionWarning
from lbinv.lightning.callback.access import inversion_target
from lbinv.probe import DEFAULT_ALPHA_GRID
from tests.helpers import REPO
from tests.lightning.helpers import (
    LEVELS,
    QUIET_LIGHTNING,
    SIZE,
    VAL_X,
    Foreign,
    OneLayer,
    console,
    csv_rows,
    events,
    images,
    inversion_tags,
    make_callback,
    make_trainer,
    scalar_steps,
    train_loader,
    val_loader,
)

pytestmark = QUIET_LIGHTNING


# ---------------------------------------------------------------------- constructor
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"noise_levels": ()}, "noise_levels.*empty"),
        ({"noise_levels": (0.0, -0.1)}, "InversionCallback: every noise level: expected a finite number >= 0, got -0.1"),
        ({"noise_levels": (0.1, 0.1)}, "distinct"),
        ({"noise_levels": 0.1}, "noise_levels.*sequence"),
        ({"num_samples": 0}, "num_samples.*>= 1.*0"),
        ({"every_n_epochs": 0}, "every_n_epochs.*>= 1"),
        ({"alpha": 0.0}, "alpha.*> 0.*0.0"),
        ({"alpha": -1e-3}, "alpha.*> 0"),
        ({"alpha": (1e-2,)}, "one value per noise level \\(5\\), got 1"),
        ({"alpha": "morozov"}, "alpha.*discrepancy.*oracle.*morozov"),
        ({"alpha_grid": (1e-3, 0.0)}, "alpha_grid.*> 0"),
        ({"data_range": (1.0, 0.0)}, "data_range.*lo < hi"),
        ({"data_range": (0.0, 0.0)}, "data_range.*lo < hi"),
        ({"method": "newton"}, "method.*lifted.*newton"),
        ({"max_iter": 0}, "max_iter.*>= 1"),
        ({"tol": -1.0}, "tol.*>= 0"),
        ({"encoder": ""}, "encoder.*attribute name"),
        ({"encoder": None}, "encoder.*attribute name"),
        ({"input_shape": (1, 0, 8)}, "input_shape.*positive ints"),
        ({"solver_options": {"alpha": 1.0}}, "solver_options.*alpha"),
        ({"eta": 0.0}, "eta.*> 0"),
        ({"solver_options": {"stepsize": 1.0}}, "solver_options.*'stepsize'.*valid"),
        ({"solver_options": {"step_rule": "paper"}}, "solver_options: step_rule: an option of solver=.pdhg.; this call uses solver=.fista."),
        ({"solver_options": {"solver": "foo"}}, r"solver_options: solver: expected one of \('fista', 'pdhg'\), got 'foo'"),
        ({"solver_options": {"solver": "pdhg", "step_rule": "fast"}}, "solver_options: step_rule: expected one of"),
        ({"solver_options": {"input_inner_steps": 0}}, "solver_options: input_inner_steps"),
        ({"method": "landweber", "alpha": "oracle"}, "landweber.*ignores alpha"),
        ({"method": "landweber", "eta": 0.5}, "eta: method='landweber' stops at .* needs eta >= 1, got 0.5"),
        ({"solver_options": {"discrepancy_tau": 2.0}}, "'discrepancy_tau' is now the callback's own argument eta"),
        ({"max_seconds": 0.0}, "max_seconds: expected a finite number > 0, got 0.0"),
        ({"time_share": 0.0}, "time_share: expected a finite number > 0"),
        ({"time_share": 1.0}, r"time_share: expected a number in \(0, 1\)"),
        ({"method": "sequential", "warm_start": True}, "warm_start: method='sequential' takes no starting point"),
        ({"solver_options": {"x_init": None}}, r"solver_options: must not set \['x_init'\].*start and warm_start for x_init"),
        ({"solver_options": {"dual_init": None}}, r"solver_options: must not set \['dual_init'\].*dual_init resumes a solve"),
        ({"start": "middle"}, r"start: expected one of \('decoder', 'zeros'\) or None, got 'middle'"),
        ({"start": "decoder", "decoder": None}, "start: 'decoder' needs a decoder, and decoder=None"),
        ({"method": "sequential", "start": "decoder"}, "start: method='sequential' takes no starting point"),
        ({"final_seconds": -1.0}, "final_seconds: expected a finite number >= 0"),
        ({"warm_start": 1}, "warm_start: expected a bool"),
        ({"solver_options": {"max_seconds": 1.0}}, "solver_options.*max_seconds.*own arguments"),
        ({"method": "landweber", "solver_options": {"eta": 2.0}}, "solver_options.*eta.*own arguments"),
    ],
)
def test_bad_arguments_raise_in_init(kwargs, match):
    with pytest.raises(ValueError, match=match):
        InversionCallback(**kwargs)


def test_defaults_are_the_recommended_configuration():
    """Issue #24: with no arguments, the time share, warm starts, the α search, the decoder start
    and the probe's data range; "sequential" (no starting point) starts cold from zeros."""
    cb = InversionCallback()
    assert cb.noise_levels == (0.0, 0.05, 0.1, 0.2, 0.33)
    assert cb.alpha == "auto" and cb.num_samples == 16 and cb.every_n_epochs == 1
    assert (cb.method, cb.max_iter, cb.tol) == ("lifted", 1500, 1e-5)
    assert (cb.encoder, cb.decoder, cb.input_shape, cb.data_range) == ("encoder", "decoder", None, None)
    assert cb.alpha_grid == DEFAULT_ALPHA_GRID and cb.alpha_grid[0] == 1e-4 and cb.alpha_grid[-1] == 1e-1
    assert (cb.max_seconds, cb.time_share, cb.warm_start, cb.start, cb.final_seconds) == (None, 0.2, True, "decoder", 60.0)
    assert cb.alphas == [1e-3] * 5
    sequential = InversionCallback(method="sequential")
    assert (sequential.warm_start, sequential.start) == (False, "zeros")
    assert InversionCallback(decoder=None).start == "zeros"
    assert InversionCallback(method="landweber").alpha == 1.0  # ignored by Landweber


def test_lightning_cli_parses_it_under_an_inversion_key():
    from lightning.pytorch.cli import LightningArgumentParser

    parser = LightningArgumentParser(exit_on_error=False)
    parser.add_lightning_class_args(InversionCallback, "inversion")
    config = parser.parse_string(
        "inversion:\n  noise_levels: [0.0, 0.2]\n  alpha: oracle\n  num_samples: 8\n"
        "  solver_options: {bounds: [0.0, 1.0]}\n"
    )
    cb = parser.instantiate_classes(config).inversion
    assert isinstance(cb, InversionCallback)
    assert cb.noise_levels == (0.0, 0.2) and cb.alpha == "oracle" and cb.num_samples == 8
    assert cb.solver_options == {"bounds": [0.0, 1.0]}
    per_level = parser.instantiate_classes(parser.parse_string("inversion:\n  noise_levels: [0.0, 0.2]\n  alpha: [0.001, 0.01]\n"))
    assert per_level.inversion.alpha == (1e-3, 1e-2)


# ---------------------------------------------------------------------- logging
@pytest.fixture
def invert_batches(monkeypatch):
    """The batch size of every call the callback makes to ``invert`` (which still runs)."""
    sizes = []
    real_invert = inverter_module.invert

    def spy(*args, **kwargs):
        sizes.append(args[1].shape[0])
        return real_invert(*args, **kwargs)

    monkeypatch.setattr(inverter_module, "invert", spy)
    return sizes


def test_an_option_for_another_depth_fails_when_fit_starts_not_at_every_epoch(tmp_path):
    """The encoder has several lifted nodes; one-layer FISTA's inner_steps would fail every inversion."""
    cb = make_callback(solver_options={"bounds": (0.0, 1.0), "inner_steps": 5})
    with pytest.raises(ValueError, match="cannot invert the encoder 'enc'.*inner_steps: an option of FISTA.*use input_inner_steps"):
        make_trainer(tmp_path, [cb]).fit(Foreign(), train_loader(), val_loader())


def test_the_last_epoch_is_inverted_off_the_interval_too(tmp_path, invert_batches):
    cb = make_callback(every_n_epochs=5)
    make_trainer(tmp_path, [cb], max_epochs=3).fit(Foreign(), train_loader(), val_loader())
    assert invert_batches == [len(LEVELS) * 4]  # epoch 2, the last; 0 and 1 are off the interval
    assert scalar_steps(events(tmp_path), f"inversion/psnr_inverted/sigma_{LEVELS[1]:g}") == [2]


@pytest.mark.parametrize("max_seconds, tol, converged, iterations", [(1e-9, 0.0, 0.0, 1.0), (None, 1e3, 1.0, 10.0)])
def test_time_budget_and_converged_fraction(tmp_path, max_seconds, tol, converged, iterations):
    """A spent budget stops every solve after its first sweep, unconverged; a generous tol stops every
    sample at the first check (check_every = 10), converged. Both are logged per noise level."""
    cb = make_callback(max_seconds=max_seconds, tol=tol)
    make_trainer(tmp_path, [cb]).fit(Foreign(), train_loader(), val_loader())
    assert [(level["iterations"], level["converged_fraction"]) for level in cb.last_summary] == [(iterations, converged)] * 2


@pytest.mark.parametrize("warm_start", [True, False])
def test_warm_start_continues_from_the_previous_solution(tmp_path, monkeypatch, warm_start):
    calls = []
    real_invert = inverter_module.invert

    def spy(*args, **kwargs):
        result = real_invert(*args, **kwargs)
        calls.append((kwargs.get("x_init"), result.x.clone()))
        return result

    monkeypatch.setattr(inverter_module, "invert", spy)
    cb = make_callback(warm_start=warm_start, max_iter=10)
    make_trainer(tmp_path, [cb], max_epochs=3).fit(Foreign(), train_loader(), val_loader())
    assert len(calls) == 3 and calls[0][0] is None
    for (_, previous), (x_init, _) in zip(calls, calls[1:]):
        if warm_start:
            torch.testing.assert_close(x_init, previous, rtol=0, atol=0)
        else:
            assert x_init is None


@pytest.mark.parametrize("threshold", [math.inf, 0.0])
def test_progress_lines_on_the_console(tmp_path, caplog, monkeypatch, threshold):
    """The first inversion says it starts; one that took longer than ANNOUNCE_AFTER_SECONDS (as the
    callback measured it) says how long, and the next one says it starts again."""
    seconds = []  # each inversion's time, as the callback passed it on
    real_finished = schedule.Progress.finished

    def spy(self, trainer, epoch, took, *args, **kwargs):
        seconds.append(took)
        real_finished(self, trainer, epoch, took, *args, **kwargs)

    monkeypatch.setattr(schedule.Progress, "finished", spy)
    monkeypatch.setattr(schedule, "ANNOUNCE_AFTER_SECONDS", threshold)
    make_trainer(tmp_path, [make_callback()], max_epochs=2).fit(Foreign(), train_loader(), val_loader())
    out = console(caplog)
    assert len(seconds) == 2
    slow = [took > threshold for took in seconds]
    assert out.count("InversionCallback: inverting 4 images × 2 noise levels at epoch 0") == 1
    assert ("inverting 4 images × 2 noise levels at epoch 1" in out) == slow[0]
    for epoch in (0, 1):
        assert (f"InversionCallback: epoch {epoch} inverted in {seconds[epoch]:.1f} s; " in out) == slow[epoch]
    assert out.count("/8 converged.") == sum(slow)


def test_fit_logs_every_tag_at_the_right_epochs(tmp_path, invert_batches):
    calls = invert_batches
    cb = make_callback(every_n_epochs=2)
    trainer = make_trainer(tmp_path, [cb], max_epochs=4, num_sanity_val_steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Foreign(), train_loader(), val_loader())
    ours = [w for w in caught if issubclass(w.category, InversionWarning) or "lbinv" in w.filename]
    assert not ours, [str(w.message) for w in ours]  # e.g. no "y outside the domain" from invert: clipped first

    assert calls == [len(LEVELS) * 4] * 2  # epochs 1 and 3 only: not the sanity check, not off-interval
    torch.testing.assert_close(cb.probe, VAL_X[:4])
    acc = events(tmp_path)
    scalars = acc.Tags()["scalars"]
    for tag in inversion_tags():
        assert tag in scalars, tag
        assert scalar_steps(acc, tag) == [1, 3], tag
    for s in LEVELS:
        for e in acc.Scalars(f"inversion/psnr_inverted/sigma_{s:g}") + acc.Scalars(f"inversion/psnr_decoded/sigma_{s:g}"):
            assert math.isfinite(e.value) and 0 < e.value < 60
        for e in acc.Scalars(f"inversion/iterations/sigma_{s:g}"):
            assert 1 <= e.value <= 30
        assert [e.value for e in acc.Scalars(f"inversion/alpha/sigma_{s:g}")] == pytest.approx([1e-2, 1e-2])
    assert [e.value for e in acc.Scalars("inversion/delta2/sigma_0")] == [0.0, 0.0]
    assert all(abs(e.value) < 1e-5 for e in acc.Scalars("inversion/delta2_bregman/sigma_0"))
    # B_Ψ(y^δ, z) ≥ ½‖y^δ − σ(z)‖² = ½δ² (MATH.md §2)
    for b, d in zip(acc.Scalars("inversion/delta2_bregman/sigma_0.1"), acc.Scalars("inversion/delta2/sigma_0.1")):
        assert b.value >= 0.5 * d.value * (1 - 1e-5) > 0
    # ‖y^δ − y‖² for a 12-dim ReLU code with σ = 0.1: positive, at most about 12·σ²
    assert all(0 < e.value < 0.5 for e in acc.Scalars("inversion/delta2/sigma_0.1"))
    assert all(e.value > 0 for e in acc.Scalars("inversion/seconds"))

    image_tags = acc.Tags()["images"]
    for s in LEVELS:
        shots = acc.Images(f"inversion/images/sigma_{s:g}")
        assert [im.step for im in shots] == [1, 3]
        # rows truth / decoder / inversion of 4 tiles, 8×8 with 1-pixel padding
        assert (shots[0].height, shots[0].width) == (3 * SIZE + 4, 4 * SIZE + 5)
    assert "inversion/psnr_vs_sigma" in image_tags
    assert [im.step for im in acc.Images("inversion/psnr_vs_sigma")] == [1, 3]
    assert "custom_scalars__config__" in acc.Tags()["tensors"]


def test_callables_and_no_decoder(tmp_path):
    cb = make_callback(encoder=lambda m: m.enc, decoder=None)
    trainer = make_trainer(tmp_path, [cb])
    trainer.fit(Foreign(), train_loader(), val_loader(tuples=True))
    acc = events(tmp_path)
    scalars = acc.Tags()["scalars"]
    for tag in inversion_tags(decoder=False):
        assert scalar_steps(acc, tag) == [0], tag
    assert not any("psnr_decoded" in tag for tag in scalars)
    shot = acc.Images("inversion/images/sigma_0.1")[0]
    assert shot.height == 2 * SIZE + 3  # truth and inversion rows only


def test_decoder_callable_returning_a_function(tmp_path):
    cb = make_callback(encoder=lambda m: m.enc, decoder=lambda m: m.dec.forward, log_images=False)
    trainer = make_trainer(tmp_path, [cb])
    trainer.fit(Foreign(), train_loader(), val_loader())
    acc = events(tmp_path)
    assert scalar_steps(acc, "inversion/psnr_decoded/sigma_0.1") == [0]
    assert acc.Tags()["images"] == []


class ModeSpy(Callback):
    """Before the inversion: put the encoder in train mode and remember its BN statistics.
    After it: the mode must be back and the statistics untouched."""

    def __init__(self, role: str, shared: dict) -> None:
        self.role, self.shared = role, shared

    def on_validation_epoch_end(self, trainer, pl_module):
        bn = pl_module.enc[1]
        if self.role == "before":
            pl_module.enc.train()
            self.shared["mean"] = bn.running_mean.clone()
            self.shared["inference"] = torch.is_inference_mode_enabled()
        else:
            self.shared["training_after"] = pl_module.enc.training and bn.training
            self.shared["mean_after"] = bn.running_mean.clone()
            pl_module.enc.eval()


def test_validate_under_inference_mode_restores_mode_and_leaves_no_gradient(tmp_path):
    shared: dict = {}
    cb = make_callback()
    model = Foreign()
    trainer = make_trainer(tmp_path, [ModeSpy("before", shared), cb, ModeSpy("after", shared)], inference_mode=True)
    trainer.validate(model, val_loader())
    assert shared["inference"] is True
    assert shared["training_after"] is True
    torch.testing.assert_close(shared["mean_after"], shared["mean"])
    assert all(p.grad is None for p in model.parameters())
    assert cb.probe is not None and not cb.probe.is_inference()
    acc = events(tmp_path)
    for tag in inversion_tags():
        assert scalar_steps(acc, tag) == [0], tag


@pytest.mark.parametrize("method", ["sequential", "gradient"])
def test_other_methods_under_validate(tmp_path, method):
    options = {"bounds": (0.0, 1.0)} if method == "gradient" else {"bounds": (0.0, 1.0), "check_every": 10}
    cb = make_callback(method=method, solver_options=options, log_images=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(tmp_path, [cb], inference_mode=True).validate(Foreign(), val_loader())
    assert not [w for w in caught if issubclass(w.category, InversionWarning)], [str(w.message) for w in caught]
    acc = events(tmp_path)
    assert all(0 < e.value < 60 for e in acc.Scalars("inversion/psnr_inverted/sigma_0.1"))


@pytest.mark.parametrize("precision, dtype", [("bf16-true", torch.bfloat16), ("16-true", torch.float16)])
def test_half_precision_module_is_inverted_as_a_float32_copy(tmp_path, precision, dtype):
    """Under "bf16-true"/"16-true" the callback inverts a float32 copy of the encoder: the numbers equal
    those of a float32 run of the same (rounded) weights and images; only the decoder runs in half."""
    half = Foreign()
    full = Foreign()
    full.load_state_dict({k: v.to(dtype).to(v.dtype) for k, v in half.state_dict().items()})
    x = VAL_X.to(dtype).float()  # images the half run sees unchanged
    logged = {}
    for name, module, run_precision in (("half", half, precision), ("full", full, "32-true")):
        cb = make_callback(log_images=False)
        trainer = make_trainer(tmp_path / name, [cb], precision=run_precision, logger=CSVLogger(str(tmp_path / name)))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.validate(module, val_loader(x))
        assert not [w for w in caught if "failed" in str(w.message)], [str(w.message) for w in caught]
        logged[name] = cb.last_summary
    assert next(half.parameters()).dtype == dtype  # the user's module is left in its precision
    for half_level, full_level in zip(logged["half"], logged["full"]):
        for name, value in full_level.items():
            if value is None or isinstance(value, bool):  # bregman_sym (a deeper encoder), inverted
                assert half_level[name] == value, name
            elif name == "psnr_decoded":  # the decoder ran in half precision
                assert half_level[name] == pytest.approx(value, abs=0.5), name
            else:
                assert half_level[name] == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_one_inversion_dtype_rule_for_success_and_failure():
    """The callback inverts, and sends its results to the DDP gather, in one dtype: the encoder's (not
    the module's, which may differ), half precision raised to float32, the default dtype without
    parameters."""
    module = Foreign()
    module.enc.double()  # a float64 encoder inside a module Lightning reports as float32
    assert module.dtype == torch.float32
    assert inversion_target(module.enc, module) == (torch.device("cpu"), torch.float64)
    assert inversion_target(module.enc.to(torch.bfloat16), module)[1] == torch.float32
    assert inversion_target(nn.Sequential(nn.Flatten(), nn.ReLU()), module)[1] == torch.get_default_dtype()


def test_without_tensorboard_the_scalars_go_to_every_logger_and_a_warning_once(tmp_path):
    """As LearningRateMonitor does: each logger gets the scalars at the epoch's step; only the images
    and the figure need TensorBoard. The CSV rows hold the numbers the callback keeps (last_summary)."""
    cb = make_callback()
    trainer = make_trainer(tmp_path, [cb], max_epochs=2, logger=CSVLogger(str(tmp_path)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Foreign(), train_loader(), val_loader())
    no_tb = [w for w in caught if issubclass(w.category, InversionWarning) and "TensorBoardLogger" in str(w.message)]
    assert len(no_tb) == 1
    rows = csv_rows(tmp_path)
    for tag in inversion_tags():
        assert [step for step, row in rows if tag in row] == [0, 1], tag
    last = {name: value for step, row in rows if step == 1 for name, value in row.items()}
    for level in cb.last_summary:
        assert last[f"inversion/psnr_inverted/sigma_{level['sigma']:g}"] == pytest.approx(level["psnr_inverted"])
        assert last[f"inversion/delta2/sigma_{level['sigma']:g}"] == pytest.approx(level["delta2"], abs=1e-12)


# ---------------------------------------------------------------------- bad encoders, failures
@pytest.mark.parametrize(
    "pool, encoder, input_shape, match",
    [
        (None, "encoder", None, "has no attribute 'encoder'"),
        (nn.LPPool2d(2, 2), "enc", (1, SIZE, SIZE), "LPPool2d.*nn.MaxPool2d, or nn.AvgPool2d"),
        (nn.LPPool2d(2, 2), "enc", None, "LPPool2d.*nn.MaxPool2d, or nn.AvgPool2d"),
    ],
)
def test_bad_encoder_fails_at_fit_start(tmp_path, pool, encoder, input_shape, match):
    model = Foreign(pool=pool)
    cb = make_callback(encoder=encoder, input_shape=input_shape)
    trainer = make_trainer(tmp_path, [cb], max_epochs=1)
    with pytest.raises(ValueError, match=match):
        trainer.fit(model, train_loader(), val_loader())
    assert model.trained_steps == 0


def test_solver_exception_warns_and_training_goes_on(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(inverter_module, "invert", boom)
    cb = make_callback()
    trainer = make_trainer(tmp_path, [cb], max_epochs=2)
    model = Foreign()
    with pytest.warns(InversionWarning, match="RuntimeError: solver exploded"):
        trainer.fit(model, train_loader(), val_loader())
    assert trainer.current_epoch == 2 and model.trained_steps == 4
    acc = events(tmp_path)
    assert not [tag for tag in acc.Tags()["scalars"] if tag.startswith("inversion/")]


def test_nan_result_warns_and_logs_the_rest(tmp_path, monkeypatch):
    real_invert = inverter_module.invert

    def nan_invert(*args, **kwargs):
        result = real_invert(*args, **kwargs)
        result.x = torch.full_like(result.x, float("nan"))
        return result

    monkeypatch.setattr(inverter_module, "invert", nan_invert)
    cb = make_callback()
    trainer = make_trainer(tmp_path, [cb], max_epochs=1)
    with pytest.warns(InversionWarning, match="non-finite.*sigma=0.1: 4/4"):
        trainer.fit(Foreign(), train_loader(), val_loader())
    tags = events(tmp_path).Tags()["scalars"]
    assert "inversion/psnr_decoded/sigma_0.1" in tags and "inversion/delta2/sigma_0.1" in tags
    assert "inversion/psnr_inverted/sigma_0.1" not in tags


# ---------------------------------------------------------------------- probe
def test_resume_from_checkpoint_keeps_the_probe(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    first = make_callback()
    trainer = make_trainer(
        tmp_path, [first, ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True)], max_epochs=1, enable_checkpointing=True
    )
    trainer.fit(Foreign(), train_loader(), val_loader())
    torch.testing.assert_close(first.probe, VAL_X[:4])
    saved = torch.load(ckpt_dir / "last.ckpt", weights_only=False)["callbacks"][first.state_key]
    torch.testing.assert_close(saved["probe"], VAL_X[:4])

    second = make_callback()
    trainer = make_trainer(tmp_path, [second], max_epochs=2, enable_checkpointing=True)
    other_images = images(24, seed=99)  # the resumed run validates on different images
    trainer.fit(Foreign(), train_loader(), val_loader(other_images), ckpt_path=str(ckpt_dir / "last.ckpt"))
    torch.testing.assert_close(second.probe, VAL_X[:4])
    assert scalar_steps(events(tmp_path), "inversion/psnr_inverted/sigma_0.1") == [0, 1]


def test_num_samples_larger_than_the_validation_batch(tmp_path):
    cb = make_callback(num_samples=7)
    trainer = make_trainer(tmp_path, [cb], limit_val_batches=None)
    trainer.fit(Foreign(), train_loader(), val_loader(batch_size=3))
    torch.testing.assert_close(cb.probe, VAL_X[:7])
    assert events(tmp_path).Images("inversion/images/sigma_0")[0].width == 7 * SIZE + 8


def test_num_samples_larger_than_the_validation_set_warns(tmp_path):
    cb = make_callback(num_samples=30, every_n_epochs=2)  # probe only, no inversion this epoch
    trainer = make_trainer(tmp_path, [cb], limit_val_batches=None)
    with pytest.warns(InversionWarning, match="num_samples=30.*only 24"):
        trainer.fit(Foreign(), train_loader(), val_loader(batch_size=5))
    torch.testing.assert_close(cb.probe, VAL_X)


def test_oracle_picks_the_best_grid_value_and_discrepancy_a_grid_value(tmp_path):
    grid = (1e-3, 1e-2, 1e-1)
    model = Foreign()
    results = {}
    for name, alpha in [("oracle", "oracle"), ("discrepancy", "discrepancy")] + [(f"fixed{a:g}", a) for a in grid]:
        logger = TensorBoardLogger(str(tmp_path), name=name, version=0)
        cb = make_callback(alpha=alpha, alpha_grid=grid, log_images=False)
        make_trainer(tmp_path, [cb], logger=logger).validate(model, val_loader())
        acc = EventAccumulator(str(tmp_path / name / "version_0"), size_guidance={"scalars": 0})
        acc.Reload()
        results[name] = {tag: acc.Scalars(tag)[0].value for tag in acc.Tags()["scalars"] if tag.startswith("inversion/")}
    for s in LEVELS:
        best = max(results[f"fixed{a:g}"][f"inversion/psnr_inverted/sigma_{s:g}"] for a in grid)
        assert results["oracle"][f"inversion/psnr_inverted/sigma_{s:g}"] == pytest.approx(best, abs=1e-3)
        assert results["oracle"][f"inversion/alpha/sigma_{s:g}"] == pytest.approx(
            [a for a in grid if results[f"fixed{a:g}"][f"inversion/psnr_inverted/sigma_{s:g}"] == pytest.approx(best, abs=1e-3)][0]
        )
        assert any(results["discrepancy"][f"inversion/alpha/sigma_{s:g}"] == pytest.approx(a) for a in grid)
    assert results["discrepancy"]["inversion/alpha/sigma_0"] == pytest.approx(grid[0])  # σ = 0: the smallest α


# ---------------------------------------------------------------------- DDP
DDP_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import torch
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger
    sys.path.insert(0, {repo!r})
    import tests.lightning.helpers as T
    import lbinv.lightning.callback.inverter as C

    out = Path({out!r})
    calls = []
    real_invert = C.invert

    def spy(*args, **kwargs):
        calls.append(args[1].shape[0])
        if len(calls) == 2 and torch.distributed.get_rank() == 1:
            raise RuntimeError("rank 1 only")  # at epoch 1, on one rank: nobody may hang
        return real_invert(*args, **kwargs)

    C.invert = spy

    if __name__ == "__main__":
        torch.manual_seed(0)
        cb = T.make_callback(num_samples=5, **{options})
        trainer = L.Trainer(
            max_epochs=3, accelerator="cpu", devices=2, strategy="ddp", precision={precision!r},
            logger=TensorBoardLogger(str(out), name="tb", version=0), callbacks=[cb],
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=1,
        )
        trainer.fit(T.Foreign(), T.train_loader(), T.val_loader(batch_size=4))
        rank = trainer.global_rank
        final = [level["psnr_inverted"] for level in cb.final_summary or []]
        (out / f"rank{{rank}}.json").write_text(json.dumps({{"calls": calls, "probe": cb.probe.tolist(), "alphas": cb.alphas,
                                                           "final": final}}))
    """
)


def run_ddp(tmp_path, precision: str, options: dict) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run DDP_SCRIPT with the callback options ``options``; the process and what each rank wrote."""
    script = tmp_path / "ddp_run.py"
    script.write_text(DDP_SCRIPT.format(repo=str(REPO), out=str(tmp_path), precision=precision, options=repr(options)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]


def test_ddp_two_cpu_processes_with_the_defaults(tmp_path):
    """The monitor's defaults under DDP (time share, α search, warm and decoder starts, the final
    inversion), rank 1 failing at its second inversion: both ranks decide alike (how many levels, α,
    the final rounds), so the collectives meet and both end with the same α and final numbers."""
    options = dict(alpha="auto", time_share=0.2, warm_start=True, start="decoder", final_seconds=30.0, data_range=None)
    proc, ranks = run_ddp(tmp_path, "32-true", options)
    assert "rank 1 only" in proc.stderr
    assert ranks[0]["alphas"] == ranks[1]["alphas"] and len(ranks[0]["alphas"]) == len(LEVELS)
    assert ranks[0]["final"] == ranks[1]["final"] and all(math.isfinite(v) for v in ranks[0]["final"])


@pytest.mark.parametrize(
    "precision, dtype",
    [("32-true", torch.float32), ("64-true", torch.float64), ("bf16-true", torch.bfloat16)],
    ids=["32-true", "64-true", "bf16-true"],
)
def test_ddp_two_cpu_processes(tmp_path, precision, dtype):
    """Two processes; rank 1 fails at epoch 1: the ranks agree to skip that epoch's gather. In float64,
    and in bfloat16 (inverted in float32), the ranks' results still meet in the same collectives."""
    proc, ranks = run_ddp(tmp_path, precision, {})
    # the 5 probe images are split 3 + 3 (one padded copy): each rank inverts its share only
    assert ranks[0]["calls"] == ranks[1]["calls"] == [len(LEVELS) * 3] * 3
    assert "rank 1 only" in proc.stderr  # the failing rank warned; the run went on
    # each rank saw every other validation image; the merged probe is the same on both ranks
    expected = VAL_X[:5].to(dtype).float()  # the images as the precision plugin passed them
    torch.testing.assert_close(torch.tensor(ranks[0]["probe"]), expected)
    torch.testing.assert_close(torch.tensor(ranks[1]["probe"]), expected)
    logdir = tmp_path / "tb" / "version_0"
    event_files = [f for f in logdir.iterdir() if f.name.startswith("events.out")]
    with_inversion = []
    for f in event_files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if any(tag.startswith("inversion/") for tag in acc.Tags()["scalars"]):
            with_inversion.append(acc)
    assert len(with_inversion) == 1  # written once, by rank 0
    acc = with_inversion[0]
    for tag in inversion_tags():
        assert scalar_steps(acc, tag) == [0, 2], tag  # epoch 1 failed on rank 1: skipped on every rank
    assert acc.Images("inversion/images/sigma_0.1")[0].width == 5 * SIZE + 6


# ---------------------------------------------------------------------- symmetric Bregman distance
@pytest.mark.parametrize("bounds", [None, (0.0, 1.0)])
def test_bregman_sym_tag_for_one_layer_encoders_only(tmp_path, bounds, invert_batches):
    batches = invert_batches
    options = {"bounds": bounds, "check_every": 10}  # None: no box (the default box is data_range)
    for name, module in (("one", OneLayer()), ("deep", Foreign())):
        cb = make_callback(solver_options=options, max_iter=200, log_images=False)
        logger = TensorBoardLogger(str(tmp_path), name=name, version=0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            make_trainer(tmp_path, [cb], logger=logger).validate(module, val_loader())
        assert not [w for w in caught if issubclass(w.category, InversionWarning)], [str(w.message) for w in caught]
    # one layer: the 4 noise-free references x_α(y) (one α) join the batch of 2 levels × 4 images
    assert batches == [len(LEVELS) * 4 + 4, len(LEVELS) * 4]
    one = EventAccumulator(str(tmp_path / "one" / "version_0"), size_guidance={"scalars": 0})
    one.Reload()
    deep = EventAccumulator(str(tmp_path / "deep" / "version_0"), size_guidance={"scalars": 0})
    deep.Reload()
    for s in LEVELS:
        assert f"inversion/bregman_sym/sigma_{s:g}" in one.Tags()["scalars"]
    assert not any("bregman_sym" in tag for tag in deep.Tags()["scalars"])
    assert "inversion/psnr_inverted/sigma_0.1" in deep.Tags()["scalars"]
    # σ = 0: the noisy inversion is its own reference
    assert abs(one.Scalars("inversion/bregman_sym/sigma_0")[0].value) < 1e-6
    assert one.Scalars("inversion/bregman_sym/sigma_0.1")[0].value > 1e-4


def test_landweber_stops_by_the_callbacks_eta(tmp_path):
    """The callback's η is Landweber's too (it stops at ‖N(x) − y^δ‖ ≤ η δ): a larger η stops earlier."""
    iterations = {}
    for eta in (1.0, 4.0):
        cb = make_callback(method="landweber", eta=eta, max_iter=300, noise_levels=(0.2,), solver_options={"check_every": 1})
        trainer = make_trainer(tmp_path / str(eta), [cb])
        trainer.validate(OneLayer(), val_loader())
        iterations[eta] = cb.last_summary[0]["iterations"]
    assert iterations[4.0] < iterations[1.0]


# ---------------------------------------------------------------------- fail early, say what to do
class WrongDecoder(Foreign):
    """A decoder whose output (7×7) cannot be compared with the 8×8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.dec = nn.Sequential(nn.Linear(12, 49), nn.Unflatten(1, (1, 7, 7)))

    def training_step(self, batch, batch_idx):
        return self.enc(self._x(batch)).square().mean()

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.enc(self._x(batch)).square().mean())


class LinearDecoder(nn.Module):
    """lightning-bolts' decoder shape: a Linear from the latent code first (here from 8 numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, SIZE * SIZE)

    def forward(self, z):
        return self.linear(z).view(-1, 1, SIZE, SIZE)


class EncoderStopsEarly(Foreign):
    """The code is fc(enc(x)) (8 numbers, as lightning-bolts' AE), but the callback is given enc (12)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc, self.dec = nn.Linear(12, 8), LinearDecoder()

    def training_step(self, batch, batch_idx):
        x = self._x(batch)
        return torch.nn.functional.mse_loss(self.dec(self.fc(self.enc(x))), x)

    def validation_step(self, batch, batch_idx):
        pass


class FlatInputs(nn.Module):
    """A hand-written forward that takes flattened inputs (an nn.Sequential starting with such a
    Linear gets nn.Flatten() from the callback; a forward of one's own cannot be seen into)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(SIZE * SIZE, 12)

    def forward(self, x):
        return torch.relu(self.fc(x))


class FlatEncoder(Foreign):
    """Its encoder takes flattened inputs; the validation batches hold images (1, 8, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = FlatInputs()

    def training_step(self, batch, batch_idx):
        x = self._x(batch)
        return torch.nn.functional.mse_loss(self.dec(self.enc(x.flatten(1))), x)

    def validation_step(self, batch, batch_idx):
        pass


@pytest.mark.parametrize("module, match", [
    (WrongDecoder, r"decoder 'dec' fails on the encoder's codes \(ValueError: the decoder maps codes of shape \(12,\) to \(1, 7, 7\), which cannot be compared with inputs of shape \(1, 8, 8\)\)"),
    (FlatEncoder, r"encoder 'enc' fails on a validation input of shape \(1, 8, 8\).*nn.Flatten\(\)"),
    (EncoderStopsEarly, r"the encoder 'enc' gives codes of shape \(12,\) \(12 numbers\), but the decoder 'dec' starts with a "
                        r"Linear that takes 8\. Either the encoder stops too early .*encoder=lambda m: nn.Sequential\(m.encoder, m.fc\)"
                        r".*or the decoder is not the one for these codes"),
])
def test_shape_mistakes_fail_before_the_first_training_step(tmp_path, module, match):
    model = module()
    with pytest.raises(ValueError, match=match):
        make_trainer(tmp_path, [make_callback()], max_epochs=1).fit(model, train_loader(), val_loader())
    assert model.trained_steps == 0 and model.global_step == 0


class NoValidation(Foreign):
    validation_step = L.LightningModule.validation_step


def test_a_module_without_validation_step_gets_a_warning(tmp_path):
    with pytest.warns(InversionWarning, match="NoValidation has no validation_step.*nothing will be inverted"):
        make_trainer(tmp_path, [make_callback()], max_epochs=1).fit(NoValidation(), train_loader())


def test_data_range_none_takes_the_probe_range_and_bounds_follow_it(tmp_path, monkeypatch):
    """Images in [−1, 1]: with the default data_range (0, 1) a warning names the fix; with None the
    range, the PSNR and the box come from the probe, and the inverted images stay inside it."""
    x = 2 * VAL_X - 1  # in [−0.8, 1]
    with pytest.warns(InversionWarning, match=r"values in \[-0.8, 0.9\d*\], outside data_range=\(0.0, 1.0\).*data_range=None"):
        make_trainer(tmp_path / "default", [make_callback()]).validate(Foreign(), val_loader(x))
    seen = []
    real_invert = inverter_module.invert
    monkeypatch.setattr(inverter_module, "invert", lambda *a, **k: seen.append(k["bounds"]) or real_invert(*a, **k))
    cb = make_callback(data_range=None, solver_options={"check_every": 10})
    with warnings.catch_warnings():
        warnings.simplefilter("error", InversionWarning)
        make_trainer(tmp_path / "inferred", [cb]).validate(Foreign(), val_loader(x))
    lo, hi = float(cb.probe.min()), float(cb.probe.max())
    assert seen == [(lo, hi)] and lo < 0
    acc = events(tmp_path / "inferred")
    assert all(math.isfinite(acc.Scalars(f"inversion/psnr_inverted/sigma_{s:g}")[0].value) for s in LEVELS)


# ---------------------------------------------------------------------- the end of fit, time accounting
class StopAfter(Callback):
    """Asks the trainer to stop at the end of a given epoch (as EarlyStopping does after validation)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


@pytest.mark.parametrize("stop, expected_step", [("early", 1), ("max_steps", 1)])
def test_a_fit_that_stops_early_still_inverts_its_final_model(tmp_path, invert_batches, stop, expected_step):
    """Off the interval (every_n_epochs=10): a stop request after epoch 1, or max_steps=3 reached in
    the middle of epoch 1 (2 batches per epoch), is followed by one inversion of the final model."""
    cb = make_callback(every_n_epochs=10)
    callbacks, extra = ([cb, StopAfter(1)], {}) if stop == "early" else ([cb], {"max_steps": 3})
    trainer = make_trainer(tmp_path, callbacks, max_epochs=5, **extra)
    trainer.fit(Foreign(), train_loader(), val_loader())
    assert len(invert_batches) == 1
    assert scalar_steps(events(tmp_path), f"inversion/psnr_inverted/sigma_{LEVELS[1]:g}") == [expected_step]


def test_the_inversion_at_the_end_of_fit_reaches_every_logger(tmp_path, invert_batches):
    """The inversion of the final model in on_fit_end (where pl_module.log is not allowed) is logged
    like every other: the CSV logger gets its scalars at the epoch's step."""
    cb = make_callback(every_n_epochs=10)
    trainer = make_trainer(tmp_path, [cb, StopAfter(0)], max_epochs=5, logger=CSVLogger(str(tmp_path)))
    trainer.fit(Foreign(), train_loader(), val_loader())
    assert len(invert_batches) == 1
    rows = csv_rows(tmp_path)
    assert [step for step, row in rows if "inversion/psnr_inverted/sigma_0" in row] == [0]


def test_bounds_follow_data_range_unless_set(tmp_path, monkeypatch):
    seen = []
    real_invert = inverter_module.invert
    monkeypatch.setattr(inverter_module, "invert", lambda *a, **k: seen.append(k["bounds"]) or real_invert(*a, **k))
    make_trainer(tmp_path / "a", [make_callback(solver_options={"check_every": 10})]).validate(Foreign(), val_loader())
    make_trainer(tmp_path / "b", [make_callback(data_range=(0.0, 2.0), solver_options={})]).validate(Foreign(), val_loader())
    make_trainer(tmp_path / "c", [make_callback(solver_options={"bounds": None})]).validate(Foreign(), val_loader())
    assert seen == [(0.0, 1.0), (0.0, 2.0), None]


def test_a_max_pooling_encoder_is_inverted(tmp_path):
    # max pooling is lifted as ReLU nodes (lbinv.lifting): the callback inverts such an encoder as it is
    cb = make_callback(log_images=False)
    trainer = make_trainer(tmp_path, [cb])
    trainer.fit(Foreign(pool=nn.MaxPool2d(2)), train_loader(), val_loader())
    acc = events(tmp_path)
    for tag in inversion_tags():
        assert scalar_steps(acc, tag) == [0], tag
    # B_Ψ(y, a_L(x)) of the clean code: 0 only if the lifted network reproduces the encoder's code on the probe
    assert acc.Scalars("inversion/delta2_bregman/sigma_0")[0].value < 1e-8
