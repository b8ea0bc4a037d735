"""The table of operations (lbinv/operators/registry.py): a layer of the user's, defined and registered in this
file alone with ``register_affine``, lifts, passes the normalised adjoint test and is inverted; bad registrations
are refused; the refusal texts read the table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lbinv import LiftedNetwork, invert, register_affine
from lbinv.operators import AffineMap, AffineOp, adjointness_test, supported_affine_layers
from tests.helpers import ADJ_TOL, F64, adjoint_error, dense_matrix, init_module, randn


# ------------------------------------------------------------- what a user writes: two layers and their ops
class Permute(nn.Module):
    """A fixed permutation of each sample's entries: ``out.flatten(1)[:, i] = x.flatten(1)[:, perm[i]]``."""

    def __init__(self, perm: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("perm", perm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, self.perm].reshape(x.shape)


class PermuteOp(AffineOp[Permute]):
    """W = P, a permutation matrix: Wᵀ = P⁻¹ scatters the entries back."""

    isometry = True

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        x = torch.empty_like(y.flatten(1))
        x[:, self.module.perm] = y.flatten(1)
        return x.reshape(y.shape[0], *self.in_shape)


class Scaled(nn.Module):
    """x ↦ c·x."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c * x


class ScaledOp(AffineOp[Scaled]):
    """W = c·I, self-adjoint."""

    def linear(self, x: torch.Tensor) -> torch.Tensor:
        return self.module.c * x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self.module.c * y


register_affine(Permute, PermuteOp)
register_affine(Scaled, ScaledOp)
# ----------------------------------------------------------------------------------------------------------

PERM = torch.tensor([3, 0, 5, 1, 4, 2])
SHAPE = (1, 2, 3)


def encoder() -> nn.Sequential:
    """Injective: a permutation, a well-conditioned linear layer, LeakyReLU, a scaling."""
    module = init_module(nn.Sequential(Permute(PERM), nn.Flatten(), nn.Linear(6, 6), nn.LeakyReLU(0.5), Scaled(0.5)))
    with torch.no_grad():
        module[2].weight.copy_(torch.eye(6, dtype=F64) + 0.2 * randn(6, 6, seed=4))
    return module


class TracedEncoder(nn.Module):
    """The same layers in a forward of the user's own: tracing keeps the registered layers whole."""

    def __init__(self) -> None:
        super().__init__()
        self.permute, self.fc, self.scale = Permute(PERM), nn.Linear(6, 6), Scaled(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(torch.relu(self.fc(self.permute(x).view(x.size(0), -1))))


def test_the_ops_are_the_matrices_they_claim():
    # independent values: the permutation matrix P[i, perm[i]] = 1 and c·I
    permute = AffineMap(Permute(PERM), SHAPE)
    p = torch.zeros(6, 6, dtype=F64)
    p[torch.arange(6), PERM] = 1.0
    assert torch.equal(dense_matrix(permute), p)
    y = randn(3, *SHAPE, seed=2)
    torch.testing.assert_close(permute.adjoint(y).flatten(1), y.flatten(1) @ p, rtol=0, atol=0)
    assert permute.opnorm() == 1.0  # an isometry
    scaled = AffineMap(Scaled(-2.5), SHAPE)
    assert torch.equal(dense_matrix(scaled), -2.5 * torch.eye(6, dtype=F64))
    assert scaled.opnorm() == pytest.approx(2.5, rel=1e-6)


def test_a_registered_layer_lifts_and_passes_the_adjoint_test():
    module = encoder()
    net = LiftedNetwork.from_module(module, SHAPE)
    x = randn(4, *SHAPE, seed=3)
    torch.testing.assert_close(net(x), module(x), rtol=0, atol=1e-14)
    assert [type(m) for m in net.layers[0].affine.modules] == [Permute, nn.Flatten, nn.Linear]
    assert [type(m) for m in net.layers[1].affine.modules] == [Scaled]
    for affine in net.affine_maps():
        assert adjoint_error(affine) <= ADJ_TOL
        xs, ys = randn(3, *affine.in_shape, seed=5), randn(3, *affine.out_shape, seed=6)
        assert float(adjointness_test(affine, xs, ys).max()) <= ADJ_TOL


def test_a_registered_layer_in_a_traced_forward_is_kept_whole():
    module = init_module(TracedEncoder())
    net = LiftedNetwork.from_module(module, SHAPE)
    x = randn(4, *SHAPE, seed=3)
    torch.testing.assert_close(net(x), module(x), rtol=0, atol=1e-14)
    assert Permute in {type(m) for a in net.affine_maps() for m in a.modules}


def test_invert_recovers_the_input_through_a_registered_layer():
    module = encoder()
    x_true = randn(2, *SHAPE, seed=7)
    with torch.no_grad():
        y = module(x_true)
    res = invert(module, y, input_shape=SHAPE, regularizer=None, max_iter=20_000, tol=1e-12)
    torch.testing.assert_close(res.x, x_true, rtol=0, atol=1e-6)


def test_the_refusal_texts_list_registered_layers():
    assert supported_affine_layers().startswith("Linear, Conv1d")
    assert "Permute" in supported_affine_layers() and "Scaled" in supported_affine_layers()
    with pytest.raises(ValueError, match=r"module 1 \(LayerNorm.*supported layers: Linear, .*Permute, Scaled"):
        LiftedNetwork.from_module(nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)))


@pytest.mark.parametrize("args, kwargs, pattern", [
    ((Permute(PERM), PermuteOp), {}, r"module_type: expected a subclass of nn\.Module, got Permute\("),
    ((int, PermuteOp), {}, r"module_type: expected a subclass of nn\.Module, got <class 'int'>"),
    ((Permute, "PermuteOp"), {}, r"op: expected an AffineOp subclass or a callable .*got 'PermuteOp'"),
    ((Permute, PermuteOp), {"label": 3}, r"label: expected None or a str, got 3"),
    ((Permute, PermuteOp), {"functions": {"permute": 1}}, r"functions: expected .* got the entry 'permute'"),
])
def test_bad_registrations_are_refused(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        register_affine(*args, **kwargs)
