"""The lifted data term, once: its value, gradient, prox and dual, shared by every lifted solver.

Node ``k`` of a lifted network couples its value (its target: the data ``y`` for the last node, the
auxiliary variable ``x_{k+1}`` otherwise) with its pre-activation ``a`` by the Bregman distance of
its activation ``σ = prox_Ψ`` (MATH.md §2)::

    B_Ψ(t, a) = Ψ(t) + ½‖t‖² − ⟨t, a⟩ + (½‖·‖² + Ψ)*(a),

convex in each argument. :class:`BregmanTerm` is that term of one node (the sweeps of
:mod:`lbinv.solvers.coordinate_descent` and :mod:`lbinv.solvers.accelerated_cd` hold one per node);
:class:`LayerDataTerm` is the one-layer data term ``f(x) = B_Ψ(y, Wx + b)`` of FISTA, PDHG and the
stages of the sequential method.
"""

from __future__ import annotations

from torch import Tensor

from lbinv.lifted import LiftedLayer
from lbinv.proximal import ProxActivation
from lbinv.regularizers import TotalVariation
from lbinv.solvers.loop import lipschitz


class BregmanTerm:
    """``B_Ψ(t, a)`` of one node with activation ``σ = prox_Ψ``, per sample.

    - value: ``B_Ψ(t, a)``, ``(B,)``;
    - gradient in ``a``: ``σ(a) − t`` (:meth:`residual`; no derivative of σ, MATH.md §2);
    - prox in ``t``: ``prox_{τ B_Ψ(·, a)}(v) = prox_{(τ/(1+τ)) Ψ}((v + τa)/(1 + τ))`` (:meth:`prox`);
    - dual: Fenchel–Young for ``φ = B_Ψ(t, ·)`` is ``φ(a) + φ*(w) − ⟨w, a⟩ = B_Ψ(t + w, a)``, so the
      value at a shifted target ``t + w`` is the data part of a duality gap (:mod:`lbinv.solvers.fista`).
    """

    def __init__(self, activation: ProxActivation) -> None:
        self.activation = activation

    def value(self, target: Tensor, a: Tensor, sigma: Tensor | None = None) -> Tensor:
        """``B_Ψ(target, a)`` per sample, ``(B,)``; ``sigma`` = σ(a), if known (see :meth:`ProxActivation.bregman`)."""
        return self.activation.bregman(target, a, sigma)

    def residual(self, target: Tensor, a: Tensor) -> Tensor:
        """``σ(a) − target``: the gradient of ``B_Ψ(target, ·)`` at ``a``."""
        return self.activation(a) - target

    def prox(self, v: Tensor, a: Tensor, tau: float, start: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``argmin_t τ B_Ψ(t, a) + ½‖t − v‖² = prox_{(τ/(1+τ)) Ψ}((v + τa)/(1 + τ))`` (``B_Ψ(·, a)`` is
        ``Ψ + ½‖·‖² − ⟨·, a⟩`` up to a constant) and its preimage under σ, from ``start``, the preimage
        of an earlier call (:meth:`~lbinv.proximal.ProxActivation.prox_and_preimage`)."""
        shrink = tau / (1.0 + tau)
        return self.activation.prox_and_preimage(a.mul(shrink).add_(v, alpha=1.0 / (1.0 + tau)), shrink, start)


class LayerDataTerm:
    """``f(x) = B_Ψ(y, Wx + b)`` of one layer (paper eq. 6 without its regulariser), per sample.

    The solvers keep the pre-activation ``a = Wx + b`` of their iterates (FISTA extrapolates it by
    linearity), so value, gradient and dual take ``a``:

    - value ``f = B_Ψ(y, a)``; gradient ``∇f(x) = Wᵀ(σ(a) − y)``, Lipschitz with constant
      :attr:`lipschitz` ``= ‖W‖₂²`` (σ is 1-Lipschitz);
    - dual: the Fenchel–Young term ``B_Ψ(y + w, a)`` for a dual point given as ``y + w``
      (:meth:`dual_gap`); at ``w₀ = σ(a) − y`` (:meth:`residual`) it vanishes.

    Its prox in ``x`` has no closed form; the solvers step on its gradient.
    """

    def __init__(self, layer: LiftedLayer, y: Tensor) -> None:
        self.layer, self.y = layer, y
        self.term = BregmanTerm(layer.activation)
        self.lipschitz = lipschitz(layer.affine.opnorm())

    def pre_activation(self, x: Tensor) -> Tensor:
        """``a = Wx + b``."""
        return self.layer.affine.forward(x)

    def value(self, a: Tensor) -> Tensor:
        """``f = B_Ψ(y, a)`` per sample, ``(B,)``."""
        return self.term.value(self.y, a)

    def residual(self, a: Tensor) -> Tensor:
        """``w₀ = σ(a) − y``: the gradient of ``B_Ψ(y, ·)`` at ``a``."""
        return self.term.residual(self.y, a)

    def value_and_residual(self, a: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`value` and :meth:`residual` at ``a`` from one evaluation of ``σ(a)``."""
        sigma = self.layer.activation(a)
        return self.term.value(self.y, a, sigma), sigma - self.y

    def gradient(self, a: Tensor) -> Tensor:
        """``∇f(x) = Wᵀ(σ(a) − y)`` at the ``x`` with ``Wx + b = a``."""
        return self.layer.affine.adjoint(self.residual(a))

    def dual_gap(self, shifted: Tensor, a: Tensor) -> Tensor:
        """``B_Ψ(y + w, a)`` for ``shifted = y + w``: ``f(x) + f_a*(w) − ⟨w, a⟩``, the data part of the
        duality gap (``+∞`` where ``y + w`` leaves ``dom Ψ``)."""
        return self.term.value(shifted, a)

    def objective(self, x: Tensor, alpha: Tensor, tv: TotalVariation | None, a: Tensor | None = None) -> Tensor:
        """``F(x) = B_Ψ(y, Wx + b) + α TV(x)`` per sample (paper eq. 6); ``a = Wx + b`` if known."""
        value = self.value(self.pre_activation(x) if a is None else a)
        return value if tv is None else value + alpha * tv.value(x)
