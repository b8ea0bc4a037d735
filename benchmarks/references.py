"""lbinv's PDHG (``solver="pdhg"``) against references: an exact CVXPY/Clarabel solve, and the paper's
step rule (the one-layer default, FISTA, against peers and Clarabel: peers.py)."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from timing import interleaved

from lbinv import LiftedNetwork, invert
from lbinv.regularizers import TotalVariation
from lbinv.solvers.data_term import LayerDataTerm


def bench_clarabel(device: torch.device, rounds: int, batch: int, gap: float = 1e-4, max_iter: int = 64_000) -> dict[str, Any]:
    """One problem: Clarabel vs ``invert`` to the gap. Then ``batch`` problems (other noise draws):
    one Clarabel solve each vs one batched ``invert`` until every problem is within the gap."""
    import cvxpy as cp
    import numpy as np
    import scipy.sparse as sp
    from torch import nn

    size, m, alpha, seed = 32, 256, 1.5e-2, 0
    torch.manual_seed(seed)
    layer = nn.Linear(size * size, m).double()
    grid = torch.linspace(-1, 1, size, dtype=torch.float64)
    X, Y = torch.meshgrid(grid, grid, indexing="xy")
    x_true = ((X**2 + Y**2) <= 0.25).double().reshape(1, 1, size, size)
    with torch.no_grad():
        clean = torch.relu(layer(x_true.flatten(1)))
        ys = torch.cat([(clean + 0.005 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(s), dtype=torch.float64))
                        .clamp_min(0.0) for s in range(batch)])
    model = nn.Sequential(layer, nn.ReLU())

    # CVXPY: B(y, Wx + b) = ½‖y‖² + ½‖max(z, 0)‖² − ⟨y, z⟩ for y ≥ 0, + α TV_iso(x)
    W, b = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    d1 = sp.diags([-np.ones(size), np.ones(size - 1)], [0, 1], shape=(size, size)).tolil()
    d1[-1, -1] = 0.0  # Neumann: no difference out of the last row
    d1 = d1.tocsr()
    eye = sp.identity(size, format="csr")
    dv, dh = sp.kron(d1, eye).tocsr(), sp.kron(eye, d1).tocsr()  # row-major image: rows, columns

    def clarabel(i: int = 0):
        yn = ys[i].numpy()
        xv = cp.Variable(size * size)
        z = W @ xv + b
        fit = 0.5 * float(yn @ yn) + 0.5 * cp.sum_squares(cp.pos(z)) - yn @ z
        tv = cp.sum(cp.norm(cp.vstack([dv @ xv, dh @ xv]), 2, axis=0))
        problem = cp.Problem(cp.Minimize(fit + alpha * tv))
        problem.solve(solver=cp.CLARABEL)
        return xv.value, problem

    net = LiftedNetwork.from_module(model, (1, size, size))
    net_dev = LiftedNetwork.from_module(copy.deepcopy(model).to(device), (1, size, size))
    tv = TotalVariation()

    @torch.no_grad()
    def optimum(i: int, x_opt) -> float:  # lbinv's objective at Clarabel's solution
        x = torch.from_numpy(x_opt).reshape(1, 1, size, size)
        return float(LayerDataTerm(net.layers[0], ys[i : i + 1]).objective(x, torch.tensor([alpha], dtype=torch.float64), tv))

    def sweeps_to_gap(y_dev, f_star: torch.Tensor) -> int | None:
        budget = 1000
        while True:  # a growing budget
            hist = invert(net_dev, y_dev, alpha=alpha, solver="pdhg", max_iter=budget, tol=0.0, record_history=True, check_every=10)
            rel = (hist.history["objective"].cpu() - f_star) / f_star.abs()  # (checks, B)
            hit = torch.nonzero((rel <= gap).all(dim=1))
            if hit.numel():
                return hist.history["iteration"][int(hit[0])]
            if budget >= max_iter:
                return None
            budget *= 4

    # one problem
    x_opt, problem = clarabel(0)
    f_star = optimum(0, x_opt)
    y0 = ys[:1].to(device)
    k = sweeps_to_gap(y0, torch.tensor([f_star]))
    if k is None:
        return {"reached": False, "max_iter": max_iter}

    def lbinv_run():
        return invert(net_dev, y0, alpha=alpha, solver="pdhg", max_iter=k, tol=0.0, check_every=k)

    final = float(lbinv_run().objective[0])
    default = invert(net_dev, y0, alpha=alpha, solver="pdhg")
    t = interleaved({"clarabel": clarabel, "lbinv": lbinv_run, "lbinv_default_stop": lambda: invert(net_dev, y0, alpha=alpha, solver="pdhg")},
                    device, rounds)
    out = {
        "problem": f"{size}x{size} disc, Linear({size * size}, {m}) + ReLU (default init, seed 0), noise 0.005, "
                   f"alpha={alpha}, float64",
        "optimum_clarabel": f_star,
        "clarabel_status": problem.status,
        "clarabel_solver_seconds": problem.solver_stats.solve_time,
        "seconds_clarabel_solve": t["clarabel"],
        "iterations_to_gap": k,
        "relative_gap_reached": (final - f_star) / abs(f_star),
        "seconds_lbinv_to_gap": t["lbinv"],
        "speedup": t["clarabel"] / t["lbinv"],
        "speedup_vs_clarabel_solver_time_only": problem.solver_stats.solve_time / t["lbinv"],
        "default_stop_iterations": int(default.iterations[0]),
        "default_stop_relative_gap": (float(default.objective[0]) - f_star) / abs(f_star),
        "seconds_lbinv_default_stop": t["lbinv_default_stop"],
        "gap": gap,
    }

    # a batch of problems: Clarabel one by one, invert in one call
    seconds, optima = [], []
    for i in range(batch):
        start = time.perf_counter()
        x_i, _ = clarabel(i)
        seconds.append(time.perf_counter() - start)
        optima.append(optimum(i, x_i))
    y_dev = ys.to(device)
    k_all = sweeps_to_gap(y_dev, torch.tensor(optima))
    if k_all is not None:
        t_batch = interleaved({"lbinv": lambda: invert(net_dev, y_dev, alpha=alpha, solver="pdhg", max_iter=k_all, tol=0.0, check_every=k_all)},
                              device, rounds)["lbinv"]
        out["batch"] = {"problems": batch, "seconds_clarabel_one_by_one": sum(seconds), "iterations_to_gap_all": k_all,
                        "seconds_lbinv_batched": t_batch, "speedup": sum(seconds) / t_batch}
    return out




def bench_paper_steps(device: torch.device, max_default: int, max_paper: int, gap: float = 1e-4) -> dict[str, Any]:
    from circle import make_problem

    perceptron, _, _, y_delta = make_problem(64, 512, 0.005, 0, str(device), torch.float64)
    opts = dict(alpha=1.5e-2, input_shape=(1, 64, 64), tol=0.0, record_history=True, solver="pdhg")
    start = time.perf_counter()
    default = invert(perceptron, y_delta, max_iter=max_default, check_every=10, **opts)
    seconds_default = time.perf_counter() - start
    start = time.perf_counter()
    paper = invert(perceptron, y_delta, max_iter=max_paper, step_rule="paper", check_every=50, **opts)
    seconds_paper = time.perf_counter() - start
    histories = {"default": default.history, "paper": paper.history}
    f_star = min(float(h["objective"].min()) for h in histories.values())

    def first(h, threshold):
        hit = torch.nonzero(h["objective"][:, 0].cpu() - f_star <= threshold)
        return None if hit.numel() == 0 else h["iteration"][int(hit[0])]

    k_default, k_paper = first(histories["default"], gap), first(histories["paper"], gap)
    rel = {name: first(h, gap * abs(f_star)) for name, h in histories.items()}
    ratio = (k_paper if k_paper is not None else max_paper) / k_default if k_default else None
    return {
        "problem": "circle (experiments/circle.py make_problem: 64x64 disc, Linear(4096, 512) + ReLU, seed 0), alpha 1.5e-2",
        "optimum": f_star,
        "gap_absolute": gap,
        "iterations_default": k_default,
        "iterations_paper": k_paper,
        "paper_budget": max_paper,
        "ratio_is_lower_bound": k_paper is None,
        "ratio": ratio,
        "iterations_relative_gap": rel,
        "seconds_default_run": seconds_default,
        "seconds_paper_run": seconds_paper,
        "iterations_run": {"default": max_default, "paper": max_paper},
        "checked_every": {"default": 10, "paper": 50},
    }
