"""The Lightning shell: the only part of lbinv that imports Lightning.

- :mod:`~lbinv.lightning.data`: :class:`MNISTDataModule` (full MNIST, the bundled 5k subset, shapes);
- :mod:`~lbinv.lightning.models`: the paper's autoencoders and their :class:`AutoencoderModule`;
- :mod:`~lbinv.lightning.callback`: :class:`InversionCallback`, which works with any LightningModule.
"""

from lbinv.lightning.callback import InversionCallback, InversionWarning
from lbinv.lightning.data import MNISTDataModule
from lbinv.lightning.models import AutoencoderModule, ConvAutoencoder, DenseAutoencoder

__all__ = ["InversionCallback", "InversionWarning", "MNISTDataModule", "AutoencoderModule", "ConvAutoencoder", "DenseAutoencoder"]
