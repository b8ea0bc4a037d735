"""
The paper's circle
==================

Section 5.1.1 of Wang & Benning (2023): a 64×64 disc seen through a random ReLU perceptron
``nn.Linear(4096, 512)``, 512 noisy measurements of 4,096 pixels. Landweber's iteration, stopped by
the discrepancy principle, returns a noisy image of small norm; the lifted Bregman inversion with
total variation returns the disc. The paper reports ‖x‖ / anisotropic TV of 28.07 / 128.0 for the
truth, 6.58 / 707.02 for Landweber and 25.69 / 114.93 for the TV inversion.
"""

# %%
# The problem, in float64 as in ``experiments/circle.py`` (which also draws the convergence plots).
import matplotlib.pyplot as plt
import torch

from lbinv import invert
from lbinv.metrics import relative_error, tv_anisotropic

torch.manual_seed(0)
perceptron = torch.nn.Sequential(torch.nn.Linear(64 * 64, 512), torch.nn.ReLU()).double()
grid = torch.linspace(-1, 1, 64, dtype=torch.float64)
X, Y = torch.meshgrid(grid, grid, indexing="xy")
disc = (X**2 + Y**2 <= 0.25).double()[None, None]
with torch.no_grad():
    y = perceptron(disc.flatten(1))
    y_delta = (y + 0.005 * torch.randn_like(y)).clamp_min(0.0)
delta = (y_delta - y).norm(dim=1)

# %%
# Both inversions through :func:`lbinv.invert`: Landweber with the discrepancy principle (it stops
# once the residual falls below the noise level δ), and the lifted TV inversion with the paper's
# α = 1.5e−2, solved by FISTA to a certified relative duality gap of 1e−6.
landweber = invert(perceptron, y_delta, input_shape=(1, 64, 64), method="landweber", regularizer=None, noise_level=delta, check_every=1)
lifted = invert(perceptron, y_delta, alpha=1.5e-2, input_shape=(1, 64, 64), tol=1e-6)

for name, x in [("truth", disc), ("Landweber", landweber.x), ("lifted TV", lifted.x)]:
    print(
        f"{name:10s} ‖x‖ {float(x.norm()):7.2f}   TV {float(tv_anisotropic(x)):7.2f}   relative error {float(relative_error(x, disc)):.3f}"
    )
print(f"Landweber stopped after {int(landweber.iterations)} iterations, the TV inversion after {int(lifted.iterations)}")

# %%
# The images.
fig, axes = plt.subplots(1, 3, figsize=(8, 2.9))
for ax, x, title in zip(axes, [disc, landweber.x, lifted.x], ["truth", "Landweber", "lifted TV"]):
    ax.imshow(x[0, 0], cmap="gray")
    ax.set_title(title)
    ax.axis("off")
plt.tight_layout()
