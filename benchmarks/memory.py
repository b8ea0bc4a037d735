"""Peak memory of a batch of 1,024 conv-AE inversions, measured in a fresh process.

    python benchmarks/memory.py --device cpu --sweeps 10     # the child: prints MEMORY_JSON {...}
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from timing import sync

from lbinv import LiftedNetwork, invert


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; falls back to the peak elsewhere)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(device_name: str, sweeps: int, batch: int) -> None:
    """Run in a fresh process (which imports torch and lbinv's numerical core, not Lightning): peak
    memory of one batched inversion of the conv AE's codes, printed as JSON. The resident set is
    sampled every millisecond by a thread during the solve (torch releases the GIL in its kernels)."""
    import threading

    from torch import nn

    device = torch.device(device_name)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Conv2d(1, 8, 4, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 4, 2, 1), nn.ReLU(), nn.Flatten(),
                            nn.Linear(784, 300), nn.ReLU()).to(device).eval()  # the paper's conv encoder
    with torch.no_grad():
        y = encoder(torch.rand(batch, 1, 28, 28, device=device))
    net = LiftedNetwork.from_module(encoder, (1, 28, 28))
    for layer in net.layers:
        layer.affine.opnorm()
    invert(net, y[:2], alpha=9e-3, max_iter=2, tol=0.0)  # warm-up: lazy initialisations
    before = _rss_bytes()
    peak, running = [before], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_cuda = torch.cuda.memory_allocated(device)
    thread.start()
    start = time.perf_counter()
    res = invert(net, y, alpha=9e-3, max_iter=sweeps, tol=0.0)
    sync(device)
    seconds = time.perf_counter() - start
    running[0] = False
    thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    out = {"batch": batch, "sweeps": sweeps, "seconds": seconds, "seconds_per_sweep": seconds / sweeps,
           "rss_before_solve_bytes": before, "peak_rss_during_solve_bytes": peak[0],
           "solve_rss_increase_bytes": peak[0] - before,
           "iterations": int(res.iterations.max())}
    if device.type == "cuda":
        out["cuda_peak_allocated_increase_bytes"] = torch.cuda.max_memory_allocated(device) - base_cuda
    print("MEMORY_JSON " + json.dumps(out))


def bench_memory(device: torch.device, threads: int, sweeps: int, batch: int = 1024) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--device", str(device), "--threads", str(threads), "--sweeps", str(sweeps),
           "--batch", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY_JSON ")), None)
    if line is None:
        raise RuntimeError(f"memory subprocess failed:\n{proc.stdout}\n{proc.stderr}")
    out = json.loads(line.removeprefix("MEMORY_JSON "))
    out["peak_rss_during_solve_gib"] = out["peak_rss_during_solve_bytes"] / 2**30
    out["solve_rss_increase_mib"] = out["solve_rss_increase_bytes"] / 2**20
    out["fits_2_gib"] = out["peak_rss_during_solve_bytes"] < 2 * 2**30
    out["method"] = ("fresh process (Python, torch, lbinv's core; no Lightning): its whole resident set sampled every "
                     "ms during the solve (ru_maxrss is not used: a child inherits the parent's high-water mark)")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sweeps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    memory_child(args.device, args.sweeps, args.batch)
