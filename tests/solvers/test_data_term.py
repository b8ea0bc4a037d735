"""Tests of the shared lifted data term (lbinv.solvers.data_term) against closed forms and autograd,
and of each solver's own check of its options."""

import pytest
import torch

from lbinv import LiftedNetwork
from lbinv.proximal import proximal_activation
from lbinv.solvers.accelerated_cd import AcceleratedCoordinateDescent
from lbinv.solvers.coordinate_descent import CoordinateDescent
from lbinv.solvers.data_term import BregmanTerm, LayerDataTerm
from lbinv.solvers.fista import FISTA
from lbinv.solvers.gradient import AdamInversion
from lbinv.solvers.landweber import Landweber
from lbinv.solvers.pdhg import PDHG
from tests.solvers.test_inversion import small_problem

pytestmark = pytest.mark.usefixtures("float64_default")  # double-precision references


def _layer_term(activation: str, seed: int = 0) -> tuple[LayerDataTerm, torch.Tensor]:
    module, _, y, (h, w) = small_problem(activation, seed=seed)
    net = LiftedNetwork.from_module(module, input_shape=(h * w,))
    x = torch.randn(3, h * w, generator=torch.Generator().manual_seed(seed + 1))
    return LayerDataTerm(net.layers[0], y.expand(3, -1)), x


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_gradient_is_the_autograd_gradient_of_the_value(activation):
    data, x = _layer_term(activation)
    x = x.requires_grad_(True)
    (expected,) = torch.autograd.grad(data.value(data.pre_activation(x)).sum(), x)
    with torch.no_grad():
        torch.testing.assert_close(data.gradient(data.pre_activation(x)), expected, rtol=1e-10, atol=1e-12)


def test_lipschitz_bounds_the_squared_operator_norm():
    data, _ = _layer_term("relu")
    weight = data.layer.affine.linear(torch.eye(36)).T  # the columns W e_i
    norm = torch.linalg.matrix_norm(weight, ord=2).item()
    assert norm**2 <= data.lipschitz <= 1.03 * norm**2


def test_relu_prox_in_the_target_is_the_closed_form():
    # B_ReLU(t, a) = ½t² − ta + ½max(a, 0)² on t ≥ 0: argmin_t τB(t, a) + ½(t − v)² = max(0, (v + τa)/(1 + τ))
    g = torch.Generator().manual_seed(0)
    v, a = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    term = BregmanTerm(proximal_activation(torch.nn.ReLU()))
    for tau in (0.1, 1.0, 7.5):
        torch.testing.assert_close(term.prox(v, a, tau)[0], ((v + tau * a) / (1.0 + tau)).clamp_min(0.0), rtol=1e-14, atol=1e-15)


def test_dual_gap_is_fenchel_young_for_the_identity():
    # identity: φ(a) = ½‖y − a‖², φ*(w) = ½‖w‖² + ⟨w, y⟩, so φ(a) + φ*(w) − ⟨w, a⟩ = ½‖y + w − a‖²
    data, x = _layer_term("identity")
    a = data.pre_activation(x)
    w = torch.randn(a.shape, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(data.dual_gap(data.y + w, a), 0.5 * (data.y + w - a).square().sum(1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_dual_gap_vanishes_at_the_residual_and_is_positive_elsewhere(activation):
    data, x = _layer_term(activation)
    a = data.pre_activation(x)
    assert data.dual_gap(data.y + data.residual(a), a).abs().max().item() <= 1e-12
    shifted = (data.y + data.residual(a) + 0.1).clamp_min(0.0)  # inside dom Ψ for both
    assert bool((data.dual_gap(shifted, a) > 0).all())


@pytest.mark.parametrize(
    "solver, options, match",
    [
        (FISTA, dict(inner_steps=0), "inner_steps: expected an integer >= 1, got 0"),
        (FISTA, dict(max_inner_steps=2.5), "max_inner_steps: expected an integer >= 1, got 2.5"),
        (PDHG, dict(step_rule="fast"), r"step_rule: expected one of \('balanced', 'paper'\), got 'fast'"),
        (PDHG, dict(balance=0.0), "balance: expected a finite number > 0, got 0.0"),
        (CoordinateDescent, dict(hidden_init="ones"), r"hidden_init: expected one of \('forward', 'zeros'\), got 'ones'"),
        (CoordinateDescent, dict(balance=-1.0), "balance: expected a finite number > 0"),
        (AcceleratedCoordinateDescent, dict(input_inner_steps=-1), "input_inner_steps: expected an integer >= 1, got -1"),
        (AcceleratedCoordinateDescent, dict(hidden_init=None), "hidden_init: expected one of"),
        (Landweber, dict(eta=0.5), "eta: expected a finite number >= 1, got 0.5"),
        (AdamInversion, dict(lr=float("nan")), "lr: expected a finite number > 0, got nan"),
        (AdamInversion, dict(tv_smoothing=0), "tv_smoothing: expected a finite number > 0, got 0"),
    ],
)
def test_each_solver_refuses_a_bad_value_of_its_own_options(solver, options, match):
    solver.check_options({**solver.options})  # its defaults pass
    with pytest.raises(ValueError, match=match):
        solver.check_options({**solver.options, **options})
