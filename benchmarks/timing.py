"""What every benchmark shares: timing on CPU or GPU, the machine's description, the conv-AE problem.

Importing it puts the repository root and ``experiments/`` on ``sys.path``, so that a benchmark
run as a script finds ``lbinv`` and the experiment scripts.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "experiments"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from lbinv import LiftedNetwork  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], Any]], device: torch.device, rounds: int) -> dict[str, float]:
    """Median seconds of each function, run round-robin (one warm-up call each first)."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(timed(fn, device))
    return {name: statistics.median(v) for name, v in samples.items()}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def machine(device: torch.device, threads: int) -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": threads,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def conv_problem(batch: int, device: torch.device, sigma: float = 0.1, seed: int = 0, images: str = "mnist-5k"):
    """The paper's conv AE (seeded init), ``batch`` images (the bundled MNIST digits, or uniform
    noise with ``images="random"``) and their noisy codes ``clip₊(E(x) + σ N(0, 1))``. Timings with
    a fixed number of sweeps do not depend on the training state."""
    from lbinv.lightning.models import ConvAutoencoder  # imports Lightning: not at the top (the memory child avoids it)

    torch.manual_seed(seed)
    ae = ConvAutoencoder().to(device).eval()
    if images == "random":
        x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    else:
        from lbinv.lightning.data import load_mnist_5k

        digits, _ = load_mnist_5k()
        x = digits[:batch].float() / 255.0
        if x.shape[0] < batch:
            x = x.repeat(math.ceil(batch / x.shape[0]), 1, 1, 1)[:batch]
    x = x.to(device)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        code = ae.encoder(x)
        noisy = (code + sigma * torch.randn(code.shape, generator=g).to(device)).clamp_min(0.0)
    net = LiftedNetwork.from_module(ae.encoder, (1, 28, 28))
    return ae, net, x, noisy


def write_results(results: dict[str, Any], path: str | Path | None) -> None:
    """Print ``results`` as JSON (with the load average at the end in ``results["machine"]``) and
    write them to ``path``."""
    results["machine"]["load_average_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    text = json.dumps(results, indent=2, default=str)
    if path:
        Path(path).write_text(text + "\n")
    print(text)
