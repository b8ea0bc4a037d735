"""``invert``: batched lifted-Bregman inversion of a network's output, and the baselines; the
checks of its options (those of its data arguments: :mod:`lbinv.solvers.arguments`).

Methods (MATH.md §3–8):

- ``"lifted"``: for a one-layer network FISTA with an inner TV prox (:mod:`lbinv.solvers.fista`) or
  the paper's PDHG (§5); for several, inertial coordinate descent whose hidden blocks follow their
  inputs (:mod:`lbinv.solvers.accelerated_cd`) or the paper's (§6, PDHG input block);
- ``"sequential"``: layer-wise inversion from the output down (§7, Remark 2);
- ``"landweber"``: Landweber with the discrepancy principle (§8), one-layer networks;
- ``"gradient"``: Adam through the network on ``½‖N(x) − y‖² + α TV_ε(x)``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from lbinv._checks import check_int, check_interval, check_number
from lbinv.lifted import LiftedNetwork
from lbinv.regularizers import TotalVariation
from lbinv.solvers.accelerated_cd import AcceleratedCoordinateDescent
from lbinv.solvers.arguments import as_network, check_data, check_dual_init, check_init, check_per_sample
from lbinv.solvers.coordinate_descent import CoordinateDescent
from lbinv.solvers.fista import FISTA
from lbinv.solvers.gradient import AdamInversion
from lbinv.solvers.landweber import Landweber
from lbinv.solvers.loop import Iterative, LoopResult, Problem, iterate
from lbinv.solvers.pdhg import PDHG
from lbinv.solvers.sequential import LayerFISTA

__all__ = ["invert", "InversionResult", "METHODS", "REGULARIZERS", "OPTIONS"]

METHODS = ("lifted", "sequential", "landweber", "gradient")
REGULARIZERS = ("tv", "tv-aniso", None)

#: Options that had another name before: old name -> new name (a clear error, not "unknown option").
RENAMED_OPTIONS = {"discrepancy_tau": "eta"}

#: The solvers of method "lifted" (option ``solver``), for one layer and for several: "fista" (the
#: default), FISTA with a warm-started inner TV prox and a duality-gap stopping test
#: (:mod:`lbinv.solvers.fista`), and inertial coordinate descent whose hidden blocks follow their
#: inputs and whose input block is a FISTA-like step (:mod:`lbinv.solvers.accelerated_cd`); "pdhg", the
#: paper's: PDHG (§5, eq. 14) and coordinate descent with a PDHG input block (§6, eqs. 15–17).
LIFTED_SOLVERS: dict[str, tuple[type[FISTA | PDHG], type[AcceleratedCoordinateDescent | CoordinateDescent]]] = {
    "fista": (FISTA, AcceleratedCoordinateDescent),
    "pdhg": (PDHG, CoordinateDescent),
}

#: A solver :func:`invert` runs: its ``options`` (defaults) and ``check_options`` (values) beside each other.
Solver = FISTA | PDHG | AcceleratedCoordinateDescent | CoordinateDescent | Landweber | AdamInversion

#: The solvers each method may run: their ``options`` make up the method's and each checks its own values.
SOLVERS: dict[str, tuple[type[Solver], ...]] = {
    "lifted": (FISTA, AcceleratedCoordinateDescent, PDHG, CoordinateDescent),
    "sequential": (PDHG,),
    "landweber": (Landweber,),
    "gradient": (AdamInversion,),
}

#: The options each method accepts beyond invert's own arguments, with their defaults: the
#: solvers' own (``Solver.options``), a starting point where the method takes one, and history.
OPTIONS: dict[str, dict[str, Any]] = {
    "lifted": {
        "solver": "fista",
        **CoordinateDescent.options,
        **FISTA.options,
        **AcceleratedCoordinateDescent.options,
        "x_init": None,
        "dual_init": None,
        "record_history": False,
    },  # ⊇ PDHG's
    "sequential": {**PDHG.options, "record_history": False},
    "landweber": {**Landweber.options, "x_init": None, "record_history": False},
    "gradient": {**AdamInversion.options, "x_init": None, "record_history": False},
}


@dataclass
class InversionResult:
    """What :func:`invert` returns; every per-sample field has leading dimension ``B``.

    Attributes
    ----------
    x : ``(B, *input_shape)`` the recovered inputs.
    iterations : (B,) iterations (sweeps for coordinate descent) each sample ran; for "sequential"
        the sum over its per-layer stages.
    converged : (B,) whether the sample's stopping test held before ``max_iter``.
    objective : (B,) the method's objective at ``x`` (for "landweber": ``½‖N(x) − y‖²``).
    history : with ``record_history=True``: ``{"iteration": [k, …], "objective": (checks, B)}``.
    hidden : the auxiliary variables ``x_1 … x_{L−1}`` of coordinate descent, else None.
    dual : the TV dual variable ``z`` (shape of ``∇x``) of the lifted methods, else None; pass it back
        as ``dual_init`` (with ``x`` as ``x_init``) to resume the solve.
    """

    x: Tensor
    iterations: Tensor
    converged: Tensor
    objective: Tensor
    history: dict[str, Any] | None = None
    hidden: list[Tensor] | None = None
    dual: Tensor | None = None


def invert(
    model: nn.Module | LiftedNetwork,
    y: Tensor,
    *,
    alpha: float | Tensor | None = None,
    input_shape: Sequence[int] | None = None,
    method: str = "lifted",
    regularizer: str | None = "tv",
    bounds: tuple[float, float] | None = None,
    max_iter: int = 1500,
    tol: float = 1e-5,
    noise_level: float | Tensor | None = None,
    check_every: int = 10,
    max_seconds: float | None = None,
    output: int | str | None = None,
    **options: Any,
) -> InversionResult:
    """Recover inputs ``x`` with ``model(x) ≈ y`` for a batch of outputs ``y``.

    Parameters
    ----------
    model : an ``nn.Sequential`` of supported layers (or one layer), a module with its own ``forward()``
        or a method of one (``vae.encode``) that traces into a chain of them (see
        :meth:`LiftedNetwork.from_module`), or a :class:`LiftedNetwork`.
    y : ``(B, *output_shape)`` or ``(B, m)`` network outputs, finite; clipped into the last activation's
        domain with a warning (the paper clips negative noisy ReLU codes to 0).
    alpha : regularisation weight, a float or a (B,) tensor of positive values (one per sample);
        required by the regularised methods, ignored by "landweber".
    input_shape : shape of one input, e.g. ``(1, 28, 28)``; needed unless the model starts with
        ``nn.Linear`` (then ``(in_features,)``) — TV needs an image shape ``(..., H, W)``.
    method : "lifted" | "sequential" | "landweber" | "gradient".
    regularizer : "tv" (isotropic) | "tv-aniso" | None.
    bounds : optional box ``(lo, hi)`` on x, e.g. ``(0.0, 1.0)`` for images.
    max_iter, tol, check_every : at most ``max_iter`` iterations; every ``check_every`` iterations
        each sample whose stopping test holds stops. What ``tol`` bounds depends on the solver:
        "lifted" on a one-layer network (``solver="fista"``, the default) the relative duality gap
        ``gap / F(x) ≤ tol``, a certified bound on ``(F(x) − F*)/F(x)`` with finite ``bounds``, an
        estimate without (:mod:`lbinv.solvers.fista`); on several layers (the default) the relative
        decrease of the objective over the last ``check_every`` sweeps (:mod:`lbinv.solvers.accelerated_cd`);
        ``solver="pdhg"`` (either), "sequential", "gradient" and "landweber" the size of the last step:
        every block's Euclidean change, the TV dual's measured per paper-sized dual step
        (``‖Δz‖/(8ατ_z)``); "landweber" with a ``noise_level`` stops by the discrepancy principle instead. "sequential"
        solves one problem per layer, each with at most ``max_iter`` iterations, so its reported
        ``iterations`` (their sum) is at most ``L · max_iter`` for an L-layer network.
    noise_level : δ = ‖y^δ − y‖ per sample or scalar, for the discrepancy principle of "landweber".
    max_seconds : a wall-clock budget from the call on: the solve ends after the first iteration
        (sweep) that ends past it; samples not converged by then have ``converged`` False and their
        ``iterations`` say how far they got. The result then depends on the machine's speed. None:
        no budget.
    output : the index or key of the code ``y`` when the model returns a tuple, list or dict (``output=0``
        for a VAE's ``(mu, logvar)``).
    options : per method (:data:`OPTIONS`) — lifted: ``solver`` ("fista" | "pdhg", see
        :data:`LIFTED_SOLVERS`; "pdhg" is the paper's method), ``step_rule`` ("balanced" | "paper") and
        ``balance`` (``solver="pdhg"`` only), ``inner_steps`` and ``max_inner_steps`` (one-layer FISTA's
        inner TV-prox steps, initial and cap), ``input_inner_steps`` (the TV-prox steps per sweep of
        inertial coordinate descent), ``x_init``, ``dual_init`` (the TV dual to start from, shape of ``∇x``:
        a previous result's ``dual``, with its ``x`` as ``x_init``, resumes that solve), ``hidden_init`` ("forward" | "zeros": the hidden
        variables start at a forward pass of ``x_init``, or at 0), ``record_history``; sequential:
        ``step_rule``, ``balance``, ``record_history``; landweber: ``eta`` (η ≥ 1 of the discrepancy principle),
        ``x_init``, ``record_history``; gradient: ``lr``, ``betas``, ``tv_smoothing``, ``x_init``,
        ``record_history``.
    """
    method, tv = _check_method(method, regularizer)
    opts = check_options(method, options)
    check_int("max_iter", max_iter)
    check_int("check_every", check_every)
    check_number("tol", tol, minimum=0.0)
    deadline = None if max_seconds is None else time.perf_counter() + check_number("max_seconds", max_seconds, minimum=0.0, strict=True)
    bounds = check_interval("bounds", bounds)
    net = as_network(model, input_shape, output)
    bad = list(dict.fromkeys(where for affine in net.affine_maps() for where in affine.nonfinite_modules()))
    if bad:
        raise ValueError(
            f"model: {', '.join(bad)} has NaN/inf parameters or buffers (a diverged training?); "
            "the inversion would return NaN. Load finite weights"
        )
    if tv is not None and len(net.input_shape) < 2:
        raise ValueError(
            f"regularizer={regularizer!r} needs an image input_shape (..., H, W); the network's input shape is "
            f"{net.input_shape}: pass input_shape=(1, H, W), or regularizer=None"
        )
    y = check_data(y, net)
    batch = y.shape[0]
    needs_alpha = method != "landweber" and (tv is not None or method == "sequential")
    if alpha is None and needs_alpha:
        raise ValueError(
            f"alpha: the regularisation weight is required by method={method!r} with regularizer={regularizer!r}, got "
            "None: pass a float > 0 (or one per sample), e.g. alpha=1e-3 (on MNIST autoencoders the best alpha ran from "
            "about 1e-5 for clean codes to about 0.1 for noisy ones); InversionCallback(alpha='auto') searches it per noise "
            "level (docs/monitor.md)"
        )
    alpha_t = check_per_sample("alpha", alpha, batch, y, positive=True)
    if alpha_t is None:  # not used by this method and regularizer
        alpha_t = y.new_zeros(batch)
    delta = check_per_sample("noise_level", noise_level, batch, y, positive=False)
    x_init = check_init(opts.get("x_init"), batch, net, y)
    dual_init = check_dual_init(opts.get("dual_init"), tv, x_init)
    loop = dict(
        batch=batch,
        device=y.device,
        max_iter=max_iter,
        check_every=check_every,
        record_history=opts["record_history"],
        deadline=deadline,
    )

    if method == "gradient":
        with torch.inference_mode(False), torch.enable_grad():
            problem = Problem(y.clone(), alpha_t.clone(), tv, bounds, tol, x_init.clone())
            adam = AdamInversion(net, problem, **_own(AdamInversion, opts))
            return _result(adam, iterate(adam, **loop))
    problem = Problem(y, alpha_t, tv, bounds, tol, x_init, dual_init)
    with torch.no_grad():
        if method == "landweber":
            if not net.is_chain or len(net) != 1:
                raise ValueError(
                    f"method='landweber': supports one-layer networks, got {len(net)} lifted nodes; "
                    "use method='lifted' or method='gradient'"
                )
            landweber = Landweber(net.layers[0], problem, delta, **_own(Landweber, opts))
            return _result(landweber, iterate(landweber, **loop))
        if method == "sequential":
            if not net.is_chain:
                raise ValueError(
                    "method='sequential': inverts chains of layers one by one from the output down; this network is "
                    "a graph (residual connections, concatenations or max pooling): use method='lifted' or 'gradient'"
                )
            return _sequential(net, problem, opts, loop)
        check_solver_depth(options, net)
        single, several = LIFTED_SOLVERS[opts["solver"]]
        if net.is_chain and len(net) == 1:
            one = single(net.layers[0], problem, **_own(single, opts))
            return _result(one, iterate(one, **loop), dual=one.z)
        sweep = several(net, problem, **_own(several, opts))
        return _result(sweep, iterate(sweep, **loop), hidden=sweep.hidden, dual=sweep.z)


def _sequential(net: LiftedNetwork, problem: Problem, opts: dict[str, Any], loop: dict[str, Any]) -> InversionResult:
    """Remark 2: FISTA layer by layer from the output down, then the single-layer TV problem
    (from x = 0) with the recovered ``x_1`` as its data."""
    data, batch, device = problem.y, problem.y.shape[0], problem.y.device
    iterations = torch.zeros(batch, dtype=torch.long, device=device)
    converged = torch.ones(batch, dtype=torch.bool, device=device)
    hidden_loop = {**loop, "record_history": False}
    for layer in range(len(net.layers) - 1, 0, -1):
        stage = LayerFISTA(net.layers[layer], data, net.layers[layer - 1].activation, problem.alpha, problem.tol)
        out = iterate(stage, **hidden_loop)
        iterations += out.iterations
        converged &= out.converged
        data = stage.x
    input_problem = replace(problem, y=data)  # x_init: zeros, "sequential" takes none
    solver = PDHG(net.layers[0], input_problem, **_own(PDHG, opts))
    out = iterate(solver, **loop)
    final = LoopResult(iterations + out.iterations, converged & out.converged, out.history)
    return _result(solver, final, dual=solver.z)


def _check_solver_family(options: dict[str, Any]) -> None:
    """Refuse an option of the other family of :data:`LIFTED_SOLVERS` than ``options["solver"]``
    (PDHG's ``step_rule`` with "fista", FISTA's inner steps with "pdhg"), whatever the depth; an
    option of one depth only is :func:`check_solver_depth`'s (once the network is known)."""
    solver = options.get("solver", OPTIONS["lifted"]["solver"])
    own = {name for cls in LIFTED_SOLVERS[solver] for name in cls.options}
    for name in sorted(options):
        for family, classes in LIFTED_SOLVERS.items():
            if name not in own and any(name in cls.options for cls in classes):
                raise ValueError(
                    f"{name}: an option of solver={family!r}; this call uses solver={solver!r}: pass solver={family!r} or drop {name}"
                )


#: Options of one depth with a counterpart at the other, named in the refusal.
DEPTH_COUNTERPARTS = {"inner_steps": "input_inner_steps", "max_inner_steps": "input_inner_steps", "input_inner_steps": "inner_steps"}


def check_solver_depth(options: dict[str, Any], net: LiftedNetwork) -> None:
    """Refuse an option that only the same family's solver for the other depth takes (one-layer FISTA's
    ``inner_steps`` on several layers, say); ``hidden_init`` on one layer stays ignored, as it always was."""
    single, several = LIFTED_SOLVERS[options.get("solver", OPTIONS["lifted"]["solver"])]
    one_layer = net.is_chain and len(net) == 1
    solver, other = (single, several) if one_layer else (several, single)
    network = "one layer" if one_layer else f"{len(net)} lifted nodes"
    for name in sorted(set(options) - set(solver.options) - {"hidden_init"}):
        if name in other.options:
            counterpart = DEPTH_COUNTERPARTS.get(name)
            hint = f"use {counterpart}" if counterpart in solver.options else "drop it"
            raise ValueError(
                f"{name}: an option of {other.__name__}, but this network has {network} and is solved by {solver.__name__}: {hint}"
            )


def _own(solver: type[Solver], opts: dict[str, Any]) -> dict[str, Any]:
    """The options that ``solver`` takes as keyword arguments (its ``options``)."""
    return {name: opts[name] for name in solver.options}


def _result(solver: Iterative, loop: LoopResult, hidden: list[Tensor] | None = None, dual: Tensor | None = None) -> InversionResult:
    history: dict[str, Any] | None = None
    if loop.history is not None:
        history = {"iteration": loop.history["iteration"], "objective": torch.stack(loop.history["objective"])}
    return InversionResult(
        x=solver.x.detach(),
        iterations=loop.iterations,
        converged=loop.converged,
        objective=solver.objective().detach(),
        history=history,
        hidden=hidden,
        dual=dual,
    )


def _check_method(method: str, regularizer: str | None) -> tuple[str, TotalVariation | None]:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if regularizer not in REGULARIZERS:
        raise ValueError(f"regularizer: expected one of {REGULARIZERS}, got {regularizer!r}")
    return method, None if regularizer is None else TotalVariation(isotropic=regularizer == "tv")


def check_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` of ``method`` checked by name and value (also the callback's ``solver_options``), with the defaults filled in."""
    allowed = OPTIONS[method]
    renamed = sorted(set(options) & set(RENAMED_OPTIONS))
    if renamed:
        old = renamed[0]
        raise TypeError(f"invert: option {old!r} is now called {RENAMED_OPTIONS[old]!r}; pass {RENAMED_OPTIONS[old]}=…")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"invert(method={method!r}) got unknown option(s) {unknown}; valid options: {sorted(allowed)}")
    opts = {**allowed, **options}
    for solver in SOLVERS[method]:
        solver.check_options(opts)
    if method == "lifted":
        if opts["solver"] not in LIFTED_SOLVERS:
            raise ValueError(f"solver: expected one of {tuple(LIFTED_SOLVERS)}, got {opts['solver']!r}")
        _check_solver_family(options)
    return opts
