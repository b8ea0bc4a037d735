"""How well lifted inversion explains the code of graph encoders (residual blocks, max pooling),
against Adam through the network (issue 15).

    python benchmarks/graphs.py --json benchmarks/results_graphs_cpu.json

Two small random float64 encoders of 12×12 images (4 piecewise-constant squares), zero code noise,
α = 1e−5, box [0, 1]: a residual encoder (strided conv, one residual block, linear code with ReLU)
and a max-pooling encoder (two conv + ReLU + 2×2 max-pool stages, linear code). Reported per encoder,
method (the default lifted solver, the paper's ``solver="pdhg"``, Adam), start (x = 0 or 0.5) and
iteration count: the largest relative code residual
``‖N(x̂) − y‖ / ‖y‖`` over the batch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lbinv import invert


class ResidualEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.conv1, self.conv2 = nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 6 * 6, 24)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(h + self.conv2(F.relu(self.conv1(h))))
        return F.relu(self.fc(h.view(h.size(0), -1)))


class PoolingEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 3 * 3, 24)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        return self.fc(torch.flatten(h, 1))


def squares() -> torch.Tensor:
    x = torch.zeros(4, 1, 12, 12, dtype=torch.float64)
    for i, (r, c) in enumerate([(1, 2), (4, 0), (0, 5), (6, 6)]):
        x[i, 0, r : r + 5, c : c + 5] = 1.0
    return x


#: lifted: the default (inertial coordinate descent); lifted_pdhg: the paper's sweep; gradient: Adam.
METHODS = {"lifted": {}, "lifted_pdhg": {"solver": "pdhg"}, "gradient": {"method": "gradient"}}


def residuals(iterations: tuple[int, ...]) -> dict[str, Any]:
    x = squares()
    out: dict[str, Any] = {}
    for name, kind in (("residual", ResidualEncoder), ("max_pooling", PoolingEncoder)):
        torch.manual_seed(0)
        encoder = kind().double().eval()
        with torch.no_grad():
            y = encoder(x)
        for method, kwargs in METHODS.items():
            for start in (0.0, 0.5):
                for n in iterations:
                    res = invert(encoder, y, alpha=1e-5, input_shape=(1, 12, 12), bounds=(0.0, 1.0), max_iter=n,
                                 tol=0.0, x_init=torch.full_like(x, start), **kwargs)
                    with torch.no_grad():
                        r = (encoder(res.x) - y).flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
                    out[f"{name}/{method}/x0={start:g}/{n}"] = float(r.max())
                    print(f"{name:12s} {method:8s} x0={start:g} {n:6d}: {float(r.max()):.3g}", flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {"relative_code_residual": residuals((3000, 10000))}
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
