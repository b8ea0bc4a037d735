"""The Lightning shell: the only part of lbinv that imports Lightning.

- :mod:`~lbinv.lightning.data`: ``MNISTDataModule`` (full MNIST, the bundled 5k subset, shapes);
- :mod:`~lbinv.lightning.models`: the paper's autoencoders and their ``AutoencoderModule``;
- :mod:`~lbinv.lightning.callback`: ``InversionCallback``, which works with any LightningModule of
  either namespace (``lightning.pytorch`` or ``pytorch_lightning``).

Nothing is imported here: the callback must not pull in what the data and models need (the
``lightning`` package), and ``lbinv`` exports all of these names lazily.
"""
