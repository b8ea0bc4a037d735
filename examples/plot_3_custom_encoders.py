"""
Encoders of your own shape
==========================

:class:`lbinv.LiftedNetwork` reads any encoder that torch.fx can trace into affine layers, proximal
activations, residual sums, concatenation and max pooling, and checks its output against the
module's; :func:`lbinv.invert` then takes it like any other. Here: a residual encoder with max
pooling and a VAE-style ``encode`` method that returns ``(mu, logvar)``; then an encoder lbinv
cannot lift, and what it says.
"""

# %%
# A residual block, max pooling and a linear head, written as a user would.
import torch
from torch import nn
from torch.nn import functional as F

from lbinv import LiftedNetwork


class Encoder(nn.Module):
    def __init__(self, code: int = 64):
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Linear(8 * 14 * 14, code)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(h + self.block(h))  # a residual sum
        h = F.max_pool2d(h, 2)  # exact, as ReLU nodes: max(a, b) = a + relu(b - a)
        return self.head(h.view(h.size(0), -1))


torch.manual_seed(0)
encoder = Encoder().eval()
net = LiftedNetwork.from_module(encoder, input_shape=(1, 28, 28))
x = torch.rand(4, 1, 28, 28)
print(net)
with torch.no_grad():
    print("largest |net(x) - encoder(x)|:", float((net(x) - encoder(x)).abs().max()))

# %%
# A VAE's ``encode`` returns a tuple: ``output=0`` picks the mean as the code.


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.Softplus())
        self.mu, self.logvar = nn.Linear(128, 16), nn.Linear(128, 16)

    def encode(self, x):
        h = self.body(x)
        return self.mu(h), self.logvar(h)


vae = VAE()
net = LiftedNetwork.from_module(vae.encode, input_shape=(1, 28, 28), output=0)
print(net)

# %%
# An encoder lbinv cannot lift gets one error that says which construct, where, and what to use
# instead: GELU is not monotone, so it is not the proximal map of any convex function.
gelu_encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.GELU())
try:
    LiftedNetwork.from_module(gelu_encoder, input_shape=(1, 28, 28))
except ValueError as error:
    print(error)
