r"""Tanhshrink σ(x) = x − tanh x as a proximal activation (MATH.md §2, derived here): unbounded
range, and a σ⁻¹ without closed form, computed by safeguarded Newton wherever Ψ or B_Ψ need it.
Import :class:`TanhshrinkProx` from :mod:`lbinv.proximal`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lbinv.proximal.base import StepSize, horner
from lbinv.proximal.smooth import _logcosh
from lbinv.proximal.smooth_solver import _newton_bisection_step, _SmoothProx

__all__ = ["TanhshrinkProx"]

# w − tanh w = Σ_k c_k w^{2k+1}, k = 1..11 (from tanh's Taylor series); at |w| < 0.25 the next
# term is < 4e−18 relative, while w − tanh w itself would lose 3·eps/w² to cancellation
_TANHSHRINK_SERIES = (
    3.3333333333333333e-01,
    -1.3333333333333333e-01,
    5.3968253968253970e-02,
    -2.1869488536155203e-02,
    8.8632355299021970e-03,
    -3.5921280365724810e-03,
    1.4558343870513183e-03,
    -5.9002744094558600e-04,
    2.3912911424355248e-04,
    -9.6915379569294510e-05,
    3.9278323883316830e-05,
)


def _tanhshrink(w: Tensor) -> Tensor:
    """w − tanh w, to round-off also for small ``|w|`` (Taylor series below 0.25)."""
    small = w.abs() < 0.25
    ws = torch.where(small, w, torch.zeros_like(w))
    x = ws * ws
    return torch.where(small, ws * x * horner(_TANHSHRINK_SERIES, x), w - torch.tanh(w))


class TanhshrinkProx(_SmoothProx):
    r"""Tanhshrink σ(x) = x − tanh x (σ' = tanh² ∈ [0, 1)) on dom Ψ = ℝ.

    (The solver evaluates σ by its Taylor series where ``|x| < 0.25``, x³/3 − 2x⁵/15 + …, since
    x − tanh x loses 3·eps/x² there; only ``prox(v, 1.0)`` returns torch's x − tanh x.)

    σ⁻¹ has no closed form, so Ψ is given through w = σ⁻¹(u): Ψ'(u) = σ⁻¹(u) − u = tanh w, and
    with du = tanh²w dw, Ψ(σ(w)) = ∫ tanh³ = log cosh w − ½tanh²w. Φ(z) = ½z² − log cosh z.
    B_Ψ(y, z) is the Bregman distance of Φ between z and w = σ⁻¹(y),

    ``B(y, z) = ½(z − w)² − [log cosh z − log cosh w − tanh w·(z − w)]``,

    the bracket (the Bregman distance of log cosh) lying in [0, ½(z − w)²]. w = σ⁻¹(y) is
    found by Newton's method safeguarded by bisection on the bracket
    ``[max(∛(3|y|), |y| + tanh|y|), |y| + 1]`` (times sign y), which it converges from in a few
    steps; the derivatives of Ψ and B in y are attached as the implicit ones, ∂_y Ψ = tanh w
    and ∂_y B = w − z (first order). prox_{tΨ}: Newton in w as for every smooth activation.
    """

    newton_steps = 30

    def _forward(self, v: Tensor) -> Tensor:
        return F.tanhshrink(v)

    def _bracket(self, vd: Tensor, td: StepSize, a: StepSize) -> tuple[Tensor, Tensor, Tensor]:
        # h(w) = w − (1 − t)·tanh w − v: its root has the sign of v and |w| between |v| and
        # |v| + 1 − t (t < 1; also |w| ≤ |v|/t), or between max(|v| + 1 − t, 0) and |v| (t > 1).
        # h is convex where w·sign(v) > 0 for t < 1 and concave for t > 1, so Newton converges
        # monotonically from the far end for t < 1 and from the near one for t > 1, never
        # crossing the inflection at 0, where it can cycle.
        av = vd.abs()
        other = (av + a).clamp(min=0.0)
        near, far = torch.minimum(av, other), torch.maximum(av, other)
        from_far = torch.minimum(far, av / td)
        # a Python a picks the side in Python: no host-to-device copy of it at every prox call
        start = torch.where(a > 0, from_far, near) if isinstance(a, Tensor) else (from_far if a > 0 else near)
        up = vd >= 0
        return torch.where(up, near, -far), torch.where(up, far, -near), torch.sign(vd) * start

    def _sigma(self, w: Tensor) -> Tensor:
        return _tanhshrink(w)

    def _dsigma(self, s: Tensor, w: Tensor) -> Tensor:
        return torch.tanh(w) ** 2

    def _shift(self, s: Tensor, w: Tensor) -> Tensor:
        return -torch.tanh(w)

    def _inverse(self, y: Tensor) -> Tensor:
        """w = σ⁻¹(y), elementwise, without autograd."""
        with torch.no_grad():
            a = y.detach().abs()
            lo = torch.maximum((3.0 * a) ** (1.0 / 3.0), a + torch.tanh(a))
            hi = a + 1.0
            w = lo
            for _ in range(self.newton_steps):  # h' = tanh² w > 0 on the bracket where a > 0
                th = torch.tanh(w)
                w, lo, hi = _newton_bisection_step(w, _tanhshrink(w) - a, th * th, lo, hi)
            return torch.where(a == 0, torch.zeros_like(w), w).copysign(y.detach())

    @staticmethod
    def _attach(value: Tensor, y: Tensor, grad: Tensor) -> Tensor:
        """``value`` with ∂/∂y = ``grad`` (first order) when y needs a gradient."""
        if torch.is_grad_enabled() and y.requires_grad:
            return value + grad.detach() * (y - y.detach())
        return value

    def _psi_elem(self, u: Tensor) -> Tensor:
        w = self._inverse(u)
        th = torch.tanh(w)
        return self._attach(_logcosh(w) - 0.5 * th * th, u, th)

    def _phi_elem(self, z: Tensor) -> Tensor:
        return 0.5 * z * z - _logcosh(z)

    def _bregman_elem(self, y: Tensor, z: Tensor) -> Tensor:
        w = self._inverse(y)
        d = z - w
        value = 0.5 * d * d - (_logcosh(z) - _logcosh(w) - torch.tanh(w) * d)
        return self._attach(value, y, w - z)
