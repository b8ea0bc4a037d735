"""The core needs torch only (pyproject's ``dependencies``): every module outside ``lbinv.lightning``
imports, and ``invert`` runs, in a process where Lightning and the other extras cannot be imported;
the callback then says what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers import REPO

#: The packages of the extras (pyproject's ``callback``, ``lightning`` and ``dev``), blocked below.
EXTRAS = ("lightning", "pytorch_lightning", "lightning_fabric", "torchmetrics", "tensorboard", "tensorboardX",
          "matplotlib", "jsonargparse", "rich", "mlxtend", "torchvision", "cvxpy", "yaml", "hypothesis")

SCRIPT = textwrap.dedent(
    """
    import importlib, importlib.abc, importlib.machinery, pkgutil, sys

    class Block(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        # finds the extras (as an installed package is found) and fails to load them

        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in EXTRAS:
                return importlib.machinery.ModuleSpec(name, self)
            return None

        def create_module(self, spec):
            raise ImportError(f"{spec.name} is not installed here")

        def exec_module(self, module):
            raise AssertionError("not reached")

    sys.meta_path.insert(0, Block())
    import torch
    import lbinv
    from lbinv import invert

    failed = []
    for info in pkgutil.walk_packages(lbinv.__path__, "lbinv."):
        if not info.name.startswith("lbinv.lightning"):
            try:
                importlib.import_module(info.name)
            except ImportError as err:
                failed.append(f"{info.name}: {err}")
    assert not failed, failed

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU())
    x = torch.rand(2, 1, 8, 8)
    result = invert(net, net(x), alpha=1e-3, max_iter=50, input_shape=(1, 8, 8))
    start = float((net(torch.zeros_like(x)) - net(x)).norm())
    assert float((net(result.x) - net(x)).norm()) < 0.5 * start  # it inverts, not only imports

    try:
        lbinv.InversionCallback
    except ImportError as err:
        assert "pip install lightning" in str(err), err
    else:
        raise AssertionError("InversionCallback imported without Lightning")
    print("ok")
    """
)


def test_core_imports_and_inverts_without_the_extras():
    code = f"EXTRAS = {EXTRAS!r}\n{SCRIPT}"
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
