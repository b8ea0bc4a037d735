"""The inversion callback: :class:`InversionCallback` (``callback``) with its argument checks
(``arguments``), its access to any LightningModule (``access``), its probe images
(``probe_images``), when and for how long it inverts (``schedule``), its collectives (``ddp``),
what it writes to TensorBoard (``tensorboard``) and the Lightning namespaces it serves
(``namespaces``). The numbers it logs come from :mod:`lbinv.probe`.
"""

from lbinv.lightning.callback.callback import InversionCallback, InversionWarning

__all__ = ["InversionCallback", "InversionWarning"]
