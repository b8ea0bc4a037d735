"""The wheel (issue #27): ``pip wheel .`` builds one that holds every module of ``lbinv/`` and
``py.typed``, asks for torch alone outside its extras, and from which the core imports and inverts
with the repository out of reach."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.helpers import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    # a copy of what the build reads, so that no build/ directory left in the checkout leaks into it
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "lbinv", source / "lbinv", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q", "-w", str(out)],
                   check=True, capture_output=True, timeout=600)
    (path,) = out.glob("lbinv-*.whl")
    return path


def test_wheel_holds_every_module_and_asks_for_torch_only(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "lbinv").rglob("*.py")}
    assert sources - names == set()
    assert "lbinv/py.typed" in names
    (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    requires = Parser().parsestr(zipfile.ZipFile(wheel).read(metadata).decode()).get_all("Requires-Dist")
    core = [Requirement(r) for r in requires if Requirement(r).marker is None]
    assert [r.name for r in core] == ["torch"]


def test_core_imports_and_inverts_from_the_wheel(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path)
    # -S: no site-packages .pth files, so not the editable install of this checkout; torch from purelib
    script = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}]
        sys.path.append({sysconfig.get_paths()["purelib"]!r})
        import torch, lbinv
        from lbinv import invert
        assert lbinv.__file__.startswith({str(tmp_path)!r}), lbinv.__file__
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.ReLU())
        x = torch.rand(2, 1, 8, 8)
        with torch.no_grad():
            y = net(x)
            r = invert(net, y, alpha=1e-3, max_iter=50, input_shape=(1, 8, 8))
            assert float((net(r.x) - y).norm()) < 0.5 * float((net(torch.zeros_like(x)) - y).norm())
        print("ok")
        """
    )
    run = subprocess.run([sys.executable, "-S", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
