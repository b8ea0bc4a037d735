"""Every method of ``invert`` and the callback give on a CUDA GPU the numbers they give on the CPU,
and the solver loop synchronises with the host only at its checks (all skipped without a GPU).

Each comparison solves one float64 problem on the CPU and on the GPU with a fixed number of
iterations (``tol=0``), so both runs take the same path and must agree to round-off.
"""

from __future__ import annotations

import copy
import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lbinv import LiftedNetwork, invert
from lbinv.lightning.callback import InversionCallback
from lbinv.regularizers import TotalVariation
from lbinv.solvers.accelerated_cd import AcceleratedCoordinateDescent
from lbinv.solvers.coordinate_descent import CoordinateDescent
from lbinv.solvers.loop import Problem, iterate
from tests.conftest import CUDA
from tests.helpers import F64, generator
from tests.lightning.helpers import SIZE, VAL_X, Foreign, images

ITERATIONS = 200
#: float64 round-off grows over the iterations, but stays far below this (GPU kernels sum in
#: another order than CPU ones)
ATOL = 1e-8


def dense() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 48), nn.ReLU())


def conv() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * (SIZE // 2) ** 2, 32), nn.ReLU()
    )


#: method name -> (encoder, invert's options): FISTA (the one-layer default), PDHG, inertial
#: coordinate descent (the several-layer default), the paper's, the sequential, Landweber and
#: gradient baselines
CASES = {
    "fista": (dense, dict(method="lifted", alpha=1e-2, bounds=(0.0, 1.0))),
    "pdhg": (dense, dict(method="lifted", alpha=1e-2, bounds=(0.0, 1.0), solver="pdhg")),
    "inertial_coordinate_descent": (conv, dict(method="lifted", alpha=1e-2)),
    "coordinate_descent": (conv, dict(method="lifted", alpha=1e-2, solver="pdhg")),
    "sequential": (conv, dict(method="sequential", alpha=1e-2)),
    "landweber": (dense, dict(method="landweber", noise_level=0.05)),
    "gradient": (conv, dict(method="gradient", alpha=1e-2, bounds=(0.0, 1.0))),
}


def noisy_codes(encoder: nn.Module, x: torch.Tensor, sigma: float = 0.02) -> torch.Tensor:
    with torch.no_grad():
        y = encoder(x)
        return (y + sigma * torch.randn(y.shape, generator=generator(1), dtype=F64)).clamp_min(0.0)


@CUDA
@pytest.mark.parametrize("case", CASES)
def test_invert_on_the_gpu_gives_the_cpu_numbers(case):
    build, options = CASES[case]
    torch.manual_seed(0)
    encoder = build().double()
    y = noisy_codes(encoder, images(6, seed=0).double())
    common = dict(input_shape=(1, SIZE, SIZE), max_iter=ITERATIONS, tol=0.0, **options)
    on_cpu = invert(encoder, y, **common)
    on_device = invert(copy.deepcopy(encoder).cuda(), y.cuda(), **common)

    for name in ("x", "objective", "iterations", "converged", "dual"):
        value, reference = getattr(on_device, name), getattr(on_cpu, name)
        if reference is None:
            assert value is None, name
            continue
        assert value.device.type == "cuda" and value.dtype == reference.dtype, name
        torch.testing.assert_close(value.cpu(), reference, rtol=0, atol=ATOL, msg=lambda m: f"{case} {name}: {m}")
    for value, reference in zip(on_device.hidden or [], on_cpu.hidden or [], strict=True):
        assert value.device.type == "cuda"
        torch.testing.assert_close(value.cpu(), reference, rtol=0, atol=ATOL)
    assert on_cpu.iterations.tolist() == on_device.iterations.tolist()
    if case != "landweber":  # Landweber stops by the discrepancy principle, the others ran them all
        stages = 2 if case == "sequential" else 1  # one per layer of the conv encoder
        assert (on_cpu.iterations == stages * ITERATIONS).all()


@CUDA
@pytest.mark.parametrize("sweep", ["paper", "inertial"])
def test_the_solver_loop_synchronises_only_at_its_checks(sweep):
    """``iterate`` reads one number from the device per check (how many samples are still active),
    and nothing else, for the paper's sweep and the inertial one (the several-layer default): CUDA's
    sync debug mode reports every synchronising call. (One-layer FISTA reads one more per check,
    the share of its gap that sets its inner steps, and one per solve in ``finish``.)"""
    torch.manual_seed(0)
    encoder, x = conv().double(), images(6, seed=0).double()
    y = noisy_codes(encoder, x).cuda()
    encoder, x = encoder.cuda(), x.cuda()
    net = LiftedNetwork.from_module(encoder, (1, SIZE, SIZE))
    alpha = torch.full((6,), 1e-2, dtype=F64, device="cuda")
    with torch.no_grad():
        problem = Problem(y, alpha, TotalVariation(), (0.0, 1.0), 0.0, torch.zeros_like(x))
        if sweep == "paper":  # set-up may synchronise (operator norms)
            solver = CoordinateDescent(net, problem, "balanced", 32.0, "forward")
        else:
            solver = AcceleratedCoordinateDescent(net, problem, "forward", 5)
        torch.cuda.synchronize()
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                iterate(solver, 6, torch.device("cuda"), max_iter=100, check_every=10)
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    assert len(syncs) == 10, [str(w.message) for w in syncs]


@CUDA
def test_the_callback_logs_on_the_gpu_what_it_logs_on_the_cpu(tmp_path):
    """``trainer.validate`` in float64 with the callback on the GPU and on the CPU: the same PSNRs,
    iterations and noise sizes (the code noise is drawn on the CPU, the same everywhere)."""
    logged = {}
    for accelerator in ("cpu", "gpu"):
        callback = InversionCallback(noise_levels=(0.0, 0.1), alpha=1e-2, num_samples=4, max_iter=100, tol=0.0,
                                     encoder="enc", decoder="dec", solver_options={"bounds": (0.0, 1.0)}, log_images=False)
        trainer = L.Trainer(accelerator=accelerator, devices=1, precision="64-true", callbacks=[callback],
                            logger=CSVLogger(str(tmp_path / accelerator)), enable_progress_bar=False,
                            enable_model_summary=False, enable_checkpointing=False)
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no TensorBoard logger: the callback says so once
            trainer.validate(Foreign(), DataLoader(TensorDataset(VAL_X[:8]), batch_size=4))
        logged[accelerator] = {(level["sigma"], name): value for level in callback.last_summary
                               for name, value in level.items() if isinstance(value, float)}
    cpu, gpu = logged["cpu"], logged["gpu"]
    assert len(cpu) >= 12 and set(cpu) == set(gpu)  # at least 6 numbers per noise level
    for key in cpu:  # float64 on both devices: equal up to the order of reductions
        assert gpu[key] == pytest.approx(cpu[key], rel=1e-6, abs=1e-9), key
