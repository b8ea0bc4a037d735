"""The house rules of the design (shared/DESIGN.md beside this repository), checked: the numerical core never imports Lightning, the modules
import each other without a circle, and the public names stay importable."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lbinv"
CORE = ("lbinv", "lbinv.solvers", "lbinv.metrics", "lbinv.probe", "lbinv.operators", "lbinv.proximal", "lbinv.checkpoints")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The modules ``path`` imports at its top level (imports inside functions are lazy on purpose)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            # `from lbinv.pkg import sub` imports the submodule when there is one
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: {m for m in imports(p) if m in MODULES and m != name} for name, p in MODULES.items()}


@pytest.mark.parametrize("name", CORE)
def test_the_core_loads_no_lightning(name):
    code = (
        f"import sys, {name}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', 'lightning_fabric'))\n"
        "assert not bad, bad"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_only_the_lightning_shell_imports_lightning():
    for name, path in MODULES.items():
        if name.startswith("lbinv.lightning"):
            continue
        found = {m.split(".")[0] for m in imports(path)} & {"lightning", "pytorch_lightning"}
        assert not found, f"{name} imports {found}"


def test_no_import_circle():
    """Depth-first search for a back edge in the graph of top-level imports between lbinv's modules."""
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(GRAPH[name]):
            if state.get(dep) == "open":
                cycle = path[path.index(dep):] + [dep]
                raise AssertionError(" -> ".join(cycle))
            if dep not in state:
                visit(dep, path + [dep])
        state[name] = "done"

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
    assert state and all(v == "done" for v in state.values())


def test_public_names_are_importable():
    import lbinv
    from lbinv import AutoencoderModule, ConvAutoencoder, DenseAutoencoder, InversionCallback, MNISTDataModule
    from lbinv import InversionResult, LiftedNetwork, invert
    from lbinv.lightning.callback.callback import InversionCallback as defined
    from lbinv.proximal import ProxActivation, proximal_activation

    assert InversionCallback is defined
    assert callable(invert) and isinstance(LiftedNetwork, type) and isinstance(InversionResult, type)
    assert all(isinstance(cls, type) for cls in (AutoencoderModule, ConvAutoencoder, DenseAutoencoder, MNISTDataModule))
    assert isinstance(proximal_activation(__import__("torch").nn.ReLU()), ProxActivation)
    assert set(lbinv.__all__) <= set(dir(lbinv))
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        lbinv.Nothing  # noqa: B018
