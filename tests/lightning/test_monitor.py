"""The monitor's defaults (issue #24) in a Trainer: the decoder start and warm starts, the α search,
the time share's clock and what it does when an inversion costs more than the share (rotation,
skipped epochs), the converged final inversion and its table, and the state kept in checkpoints."""

from __future__ import annotations

import math
import time

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

import lbinv.lightning.callback.clock as clock_module
import lbinv.lightning.callback.inverter as inverter_module
import lbinv.lightning.callback.schedule as schedule
from lbinv.alpha_search import SEARCH_START, AlphaSearch
from lbinv.lightning.callback import InversionCallback
from lbinv.lightning.callback.clock import Clock
from lbinv.lightning.callback.schedule import Cost
from tests.lightning.helpers import (
    LEVELS,
    QUIET_LIGHTNING,
    Foreign,
    console,
    events,
    make_trainer,
    scalar_steps,
    train_loader,
    val_loader,
)

pytestmark = QUIET_LIGHTNING


def monitor(**kwargs) -> InversionCallback:
    """The callback with its defaults, sized for the tests' 8×8 images."""
    options = dict(noise_levels=LEVELS, num_samples=4, max_iter=30, encoder="enc", decoder="dec")
    options.update(kwargs)
    return InversionCallback(**options)


@pytest.fixture
def invert_calls(monkeypatch):
    """Every call the callback makes to ``invert`` (args, kwargs, result)."""
    calls = []
    real_invert = inverter_module.invert

    def spy(*args, **kwargs):
        result = real_invert(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(inverter_module, "invert", spy)
    return calls


# ---------------------------------------------------------------------- the clock and the cost
def test_time_share_allowance_keeps_the_share(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(clock_module.time, "perf_counter", lambda: now[0])
    clock = Clock(time_share=0.2, max_seconds=None, final_seconds=60.0)
    assert clock.allowance() == math.inf  # before the fit starts
    clock.start()
    now[0] += 10.0  # 10 s of training
    assert clock.allowance() == pytest.approx(2.5)  # 0.2 · 10 / 0.8
    with clock.charging(fitting=True):
        now[0] += 2.5  # spending the whole allowance
    assert clock.spent == pytest.approx(0.2 * 12.5)  # exactly the share of the 12.5 s so far
    assert clock.allowance() == pytest.approx(0.0, abs=1e-12)
    with clock.charging(fitting=False):
        now[0] += 1.0  # outside fit (a final inversion, say): not charged
    assert clock.spent == pytest.approx(0.2 * 12.5)
    with clock.charging(fitting=True):
        now[0] += 1.0  # overspent: the next inversion must wait
    assert clock.allowance() < 0
    now[0] += 0.8 / 0.2 * 1.0 * (1 - 0.2) / 0.8 * 5  # enough training pays it back
    assert clock.allowance() > 0
    # deadlines: the share's and max_seconds, whichever comes first; the final inversion's final_seconds
    assert clock.deadline(5.0) is None and clock.deadline(5.0, 2.0) == 7.0 and clock.final_deadline(5.0) == 65.0
    capped = Clock(time_share=None, max_seconds=1.5, final_seconds=None)
    assert capped.allowance() == math.inf and capped.deadline(5.0, 2.0) == 6.5 and capped.final_deadline(5.0) is None


def test_cost_levels_afford_min_sweeps_of_each_level():
    cost = Cost()
    assert cost.levels(0.0, codes_per_level=24, levels=5) == 5  # unknown: all
    cost.learn(solver_seconds=1.2, codes=120, sweeps=10, before_solve=0.1, after_solve=0.2)
    assert cost.per_code_sweep == pytest.approx(1e-3)
    per_level = schedule.MIN_SWEEPS * 24 * 1e-3
    assert cost.levels(0.3 + 2 * per_level + 1e-9, 24, 5) == 2
    assert cost.levels(0.3 + 0.5 * per_level, 24, 5) == 0
    assert cost.levels(100.0, 24, 5) == 5


# ---------------------------------------------------------------------- starts
def test_first_inversion_starts_from_the_decoder_then_goes_on_from_its_solution(tmp_path, invert_calls):
    cb = monitor(alpha=1e-2, time_share=None, final_seconds=0)
    module = Foreign()
    make_trainer(tmp_path, [cb], max_epochs=2).fit(module, train_loader(), val_loader())
    (_, first, result0), (_, second, _) = invert_calls
    probe = cb.probe
    lo, hi = float(probe.min()), float(probe.max())  # data_range=None: the probe's own
    assert first["bounds"] == pytest.approx((lo, hi))
    # σ = 0: the clean code, decoded and clamped — with the weights of epoch 0's end
    # (the module has trained since, so compare the data the solver got instead of re-decoding)
    y0 = invert_calls[0][0][1][:4]
    assert torch.isfinite(first["x_init"]).all() and (first["x_init"] >= lo).all() and (first["x_init"] <= hi).all()
    assert y0.shape == (4, 12)
    torch.testing.assert_close(second["x_init"], result0.x)  # warm: every sample from its last solution


def test_decoder_start_is_the_decoded_noisy_code(tmp_path, invert_calls):
    """Inverting under trainer.validate (weights fixed): the start is decoder(y^δ) clamped into the range."""
    cb = monitor(alpha=1e-2, data_range=(0.0, 1.0))
    module = Foreign()
    make_trainer(tmp_path, [cb]).validate(module, val_loader())
    args, kwargs, _ = invert_calls[0]
    module.eval()
    with torch.no_grad():
        expected = module.dec(args[1]).clamp(0.0, 1.0)
    torch.testing.assert_close(kwargs["x_init"], expected)


# ---------------------------------------------------------------------- α search
def test_auto_solves_three_columns_logs_the_current_alpha_and_moves(tmp_path, invert_calls):
    cb = monitor(time_share=None, final_seconds=0)
    make_trainer(tmp_path, [cb], max_epochs=3).fit(Foreign(), train_loader(), val_loader())
    assert len(invert_calls) == 3
    grid = cb._monitor.search.grid
    i = grid.index(SEARCH_START)
    for _, kwargs, _ in invert_calls:
        # 2 levels × (4 images at the current α + 1 image at each neighbour)
        assert kwargs["alpha"].shape == (12,)
    for _, kwargs, _ in invert_calls[1:]:  # warm: the three columns of an image start from one point
        x0 = kwargs["x_init"]
        torch.testing.assert_close(x0[1], x0[0], rtol=0, atol=0)
        torch.testing.assert_close(x0[2], x0[0], rtol=0, atol=0)
    first = invert_calls[0][1]["alpha"].tolist()
    assert first == pytest.approx([SEARCH_START, grid[i - 1], grid[i + 1], SEARCH_START, SEARCH_START, SEARCH_START] * 2)
    acc = events(tmp_path)
    for level, s in enumerate(LEVELS):
        logged = [e.value for e in acc.Scalars(f"inversion/alpha/sigma_{s:g}")]
        # each inversion logs the α it used on every image; the next one is at most a stride away
        assert logged[0] == pytest.approx(SEARCH_START)
        steps = [abs(grid.index(min(grid, key=lambda g: abs(g - a)))) for a in logged]
        assert all(abs(b - a) <= AlphaSearch.MAX_STRIDE for a, b in zip(steps, steps[1:]))
    assert len(cb.alphas) == len(LEVELS)


# ---------------------------------------------------------------------- the share
@pytest.mark.parametrize("affordable", [1, 0])
def test_short_share_inverts_levels_in_rotation_or_skips(tmp_path, monkeypatch, caplog, affordable):
    """When the share affords one level, the levels take turns (least recently inverted first); when
    it affords none, the epochs are skipped. Either is said once; the final inversion still runs."""
    monkeypatch.setattr(Cost, "levels", lambda self, allowance, codes, levels: affordable)
    cb = monitor(alpha=1e-2, final_seconds=30.0)
    make_trainer(tmp_path, [cb], max_epochs=4).fit(Foreign(), train_loader(), val_loader())
    acc = events(tmp_path)
    steps = [scalar_steps(acc, f"inversion/psnr_inverted/sigma_{s:g}") for s in LEVELS]
    if affordable == 1:
        assert steps == [[0, 2, 3], [1, 3]]  # epochs 0, 1, 2 in turn; epoch 3 is the final: every level
    else:
        assert steps == [[3], [3]]
    out = console(caplog)
    kind = "inverts 1 of 2 noise levels per epoch, in rotation" if affordable else "skips the inversion of this epoch"
    assert out.count(kind) == 1


def test_solve_stops_at_the_allowance(tmp_path, invert_calls, monkeypatch):
    """Each solve's max_seconds is what the clock allows from when it starts, less the time the last
    inversion spent after its solve."""
    seen = []
    real = Clock.allowance

    def spy(self):
        value = real(self)
        seen.append(value)
        return value

    monkeypatch.setattr(Clock, "allowance", spy)
    monkeypatch.setattr(Cost, "levels", lambda self, allowance, codes, levels: levels)  # never skip
    cb = monitor(alpha=1e-2, final_seconds=0)
    make_trainer(tmp_path, [cb], max_epochs=3).fit(Foreign(), train_loader(), val_loader())
    budgets = [kwargs["max_seconds"] for _, kwargs, _ in invert_calls]
    assert len(budgets) == len(seen) == 3
    for budget, allowance in zip(budgets, seen):
        assert budget <= max(allowance, schedule.MIN_BUDGET_SECONDS)


# ---------------------------------------------------------------------- the final inversion
def test_final_inversion_runs_to_tol_and_prints_its_table(tmp_path, caplog):
    cb = monitor(alpha=1e-2, tol=1e-3, max_iter=3000, final_seconds=None)
    make_trainer(tmp_path, [cb], max_epochs=2).fit(Foreign(), train_loader(), val_loader())
    assert cb.final_summary is not None and cb.final_summary is cb.last_summary
    assert all(level["converged_fraction"] == 1.0 for level in cb.final_summary)
    out = console(caplog)
    assert "InversionCallback: the final inversion (epoch 1):" in out
    # a final inversion says when it starts and how long it took, however short (it may run for final_seconds)
    assert "to tol (final) at epoch 1…" in out and "InversionCallback: epoch 1 inverted in" in out
    for level in cb.final_summary:
        row = (f"| {level['sigma']:g} | {level['delta2']:.3g} | {level['alpha']:.3g} | {level['psnr_inverted']:.2f} | "
               f"{level['psnr_decoded']:.2f} | 1.00 |")
        assert row in out
    acc = events(tmp_path)
    assert scalar_steps(acc, "inversion/converged_fraction/sigma_0") == [0, 1]
    assert [e.value for e in acc.Scalars("inversion/converged_fraction/sigma_0")][-1] == 1.0
    assert "inversion/final/text_summary" in acc.Tags()["tensors"]


def test_a_fit_stopped_early_gets_the_final_inversion_at_its_end(tmp_path, invert_calls):
    from tests.lightning.test_callback import StopAfter

    cb = monitor(alpha=1e-2, tol=1e-3, max_iter=3000, final_seconds=None)
    make_trainer(tmp_path, [cb, StopAfter(0)], max_epochs=5).fit(Foreign(), train_loader(), val_loader())
    assert len(invert_calls) == 2  # the budgeted inversion of epoch 0, then the final one at fit end
    assert invert_calls[0][1]["max_seconds"] is not None and invert_calls[1][1]["max_seconds"] is None
    assert cb.final_summary is not None


# ---------------------------------------------------------------------- checkpoints
def test_resume_keeps_the_search_and_the_warm_starts(tmp_path, invert_calls):
    ckpt_dir = tmp_path / "ckpt"
    first = monitor(time_share=None, final_seconds=0)
    trainer = make_trainer(tmp_path, [first, ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True)], max_epochs=2,
                           enable_checkpointing=True)
    trainer.fit(Foreign(), train_loader(), val_loader())
    index, solutions = first._monitor.search.index.tolist(), first._monitor.warm.solutions
    second = monitor(time_share=None, final_seconds=0)
    calls_before = len(invert_calls)
    make_trainer(tmp_path, [second], max_epochs=3).fit(Foreign(), train_loader(), val_loader(),
                                                         ckpt_path=str(ckpt_dir / "last.ckpt"))
    saved = torch.load(ckpt_dir / "last.ckpt", weights_only=False)["callbacks"][first.state_key]["monitor"]
    assert saved["search"]["index"] == index
    for kept, restored in zip(solutions, saved["warm"]["solutions"]):
        assert kept.keys() == restored.keys()
    # the resumed run goes on with the saved α and starts from the saved solutions, not from the decoder
    _, kwargs, _ = invert_calls[calls_before]
    current = second._monitor.search.grid[index[0]]
    assert kwargs["alpha"][0].item() == pytest.approx(current)
    kept = saved["warm"]["solutions"][0][current].to(kwargs["x_init"].dtype)  # NaN: an image solved at another α
    has = torch.isfinite(kept.flatten(1)).all(dim=1)
    assert has.any() and torch.isfinite(kwargs["x_init"]).all()
    main = [0, 3, 4, 5]  # level 0's samples at the current α: (image 0: columns 0, 1, 2), images 1, 2, 3
    torch.testing.assert_close(kwargs["x_init"][main][has], kept[has])


def test_final_rounds_do_not_solve_a_column_twice(tmp_path, invert_calls, monkeypatch):
    """Round 1 solves the three columns to tol; the search moves up; round 2 re-centres: the old
    current α (solved on every image) is not solved again, the new one is solved on every image, and
    the new upper neighbour on one."""
    moves = iter([2, 0])
    real_best = AlphaSearch.best
    monkeypatch.setattr(AlphaSearch, "best", lambda self, psnr, solved: torch.full_like(real_best(self, psnr, solved), next(moves)))
    round_seconds = []
    real_round = inverter_module.ProbeInverter.round

    def timed_round(self, *args, **kwargs):
        out = real_round(self, *args, **kwargs)
        round_seconds.append(float(out.seconds.max()))
        return out

    monkeypatch.setattr(inverter_module.ProbeInverter, "round", timed_round)
    cb = monitor(tol=1e3, final_seconds=None)
    make_trainer(tmp_path, [cb]).validate(Foreign(), val_loader())
    assert [args[1].shape[0] for args, _, _ in invert_calls] == [2 * (4 + 1 + 1), 2 * (4 + 0 + 1)]
    # inversion/seconds is the solver time of both rounds, not of the last one
    logged = [e.value for e in events(tmp_path).Scalars("inversion/seconds")]
    assert len(round_seconds) == 2 and logged[-1] == pytest.approx(sum(round_seconds), rel=1e-5)
    grid, i = cb._monitor.search.grid, cb._monitor.search.grid.index(SEARCH_START)
    assert [level["alpha"] for level in cb.final_summary] == pytest.approx([grid[i + 1]] * 2)
    assert cb.alphas == pytest.approx([grid[i + 1]] * 2)


@pytest.mark.parametrize(
    "alpha, moves, shares",
    [
        # moves up, stays (cut short of tol): a last round finishes with all the time left
        ("auto", [2, 0, 0], [1 / 3, 1 / 3, 1.0]),
        # keeps moving: a third of the time left each, until the last third of the cap is reached
        ("auto", [2] * 6, [1 / 3, 1 / 3, 1 / 4, 1.0]),
        (1e-2, [], [1.0]),  # a fixed α: one round, all the time
    ],
)
def test_final_search_rounds_share_the_time_cap_and_a_last_round_finishes(tmp_path, monkeypatch, alpha, moves, shares):
    """Under ``final_seconds``, a round of "auto"'s search takes a third of the time left (so a search
    whose rounds to tol are slow still moves α), but not the last third of the cap: once α stays or
    that is reached, a round that did not reach tol is finished with all the time left. Each round
    here is charged all its time (a clock that jumps to its deadline)."""
    move = iter(moves)
    real_best = AlphaSearch.best
    monkeypatch.setattr(AlphaSearch, "best", lambda self, psnr, solved: torch.full_like(real_best(self, psnr, solved), next(move)))
    skipped = [0.0]
    clock = type("Clock", (), {"perf_counter": staticmethod(lambda: time.perf_counter() + skipped[0])})
    monkeypatch.setattr(inverter_module, "time", clock)
    calls = []  # (when the round began, its deadline)
    real_round = inverter_module.ProbeInverter.round

    def round_to_its_deadline(self, *args, **kwargs):
        began, deadline = inverter_module.time.perf_counter(), args[8]  # round(..., data_range, deadline, ...)
        calls.append((began, deadline))
        out = real_round(self, *args, **kwargs)
        skipped[0] += deadline - inverter_module.time.perf_counter()
        return out

    monkeypatch.setattr(inverter_module.ProbeInverter, "round", round_to_its_deadline)
    cb = monitor(alpha=alpha, tol=0.0, final_seconds=30.0)  # tol=0: no round converges
    make_trainer(tmp_path, [cb]).validate(Foreign(), val_loader())
    cap = calls[-1][1]  # the last round's deadline is the final inversion's
    assert cap - calls[0][0] == pytest.approx(30.0, abs=1.0)
    assert [(deadline - began) / (cap - began) for began, deadline in calls] == pytest.approx(shares, abs=2e-3)
