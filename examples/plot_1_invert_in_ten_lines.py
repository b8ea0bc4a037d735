"""
Invert a network in ten lines
=============================

A random ReLU encoder maps a 28×28 image to 400 numbers; :func:`lbinv.invert` recovers the image
from a noisy copy of them with the lifted Bregman formulation and total-variation regularisation.
"""

# %%
# The ten lines: an encoder, an image, its noisy code (clipped into the ReLU's range, as the
# paper does), the inversion.
import matplotlib.pyplot as plt
import torch

from lbinv import invert
from lbinv.metrics import psnr

torch.manual_seed(0)
encoder = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 400), torch.nn.ReLU())
yy, xx = torch.meshgrid(torch.linspace(-1, 1, 28), torch.linspace(-1, 1, 28), indexing="ij")
image = ((xx.abs() < 0.5) & (yy.abs() < 0.3)).float().reshape(1, 1, 28, 28)  # a bar
code = (encoder(image) + 0.01 * torch.randn(1, 400)).clamp(min=0)  # observed: noisy, clipped
res = invert(encoder, code, alpha=3e-3, input_shape=(1, 28, 28), bounds=(0.0, 1.0))
print(f"{int(res.iterations)} iterations, converged: {bool(res.converged)}, PSNR {float(psnr(res.x, image)):.1f} dB")

# %%
# α weighs the total variation against the data. One batched call solves several α at once: ``alpha``
# may be a tensor with one value per row of the batch, each row with its own steps and stopping test.
alphas = torch.tensor([3e-3, 1e-2, 3e-2, 1e-1])
sweep = invert(encoder, code.expand(len(alphas), -1), alpha=alphas, input_shape=(1, 28, 28), bounds=(0.0, 1.0))
scores = psnr(sweep.x, image.expand_as(sweep.x))

fig, axes = plt.subplots(1, len(alphas) + 1, figsize=(10, 2.3))
axes[0].imshow(image[0, 0], cmap="gray", vmin=0, vmax=1)
axes[0].set_title("image")
for ax, x, a, p in zip(axes[1:], sweep.x, alphas, scores):
    ax.imshow(x[0].detach(), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"α={a:.0e}\n{p:.1f} dB", fontsize=9)
for ax in axes:
    ax.axis("off")
plt.tight_layout()
