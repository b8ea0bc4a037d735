"""The inversion callback: :class:`InversionCallback` (``callback``: the hooks and what runs when)
with its argument checks (``arguments``), its access to any LightningModule (``access``), its probe
images (``probe_images``), the time it may take (``clock``), the last epoch, costs and console lines
(``schedule``), an inversion's rounds (``inverter``), what it carries between inversions: α rule,
warm starts, costs (``monitor``), its collectives (``ddp``), what it logs and where (``tensorboard``),
its messages (``messages``) and the Lightning namespaces it serves (``namespaces``). The numbers it
logs come from :mod:`lbinv.probe`.
"""

from lbinv.lightning.callback.callback import InversionCallback, InversionWarning

__all__ = ["InversionCallback", "InversionWarning"]
