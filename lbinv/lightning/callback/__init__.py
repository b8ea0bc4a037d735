"""The inversion callback: :class:`InversionCallback` (``callback``) with its argument checks
(``arguments``), its access to any LightningModule (``access``), its collectives (``ddp``) and what it
writes to TensorBoard (``tensorboard``). The numbers it logs come from :mod:`lbinv.probe`.
"""

from lbinv.lightning.callback.callback import InversionCallback, InversionWarning

__all__ = ["InversionCallback", "InversionWarning"]
