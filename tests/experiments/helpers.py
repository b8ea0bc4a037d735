"""The scripts of experiments/ loaded as modules, for the tests that call their functions."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.helpers import REPO

EXPERIMENTS = REPO / "experiments"


def load_experiment(script: str, name: str, register: bool = False) -> ModuleType:
    """``experiments/<script>.py`` as a module named ``name``, put in ``sys.modules`` first when
    ``register`` (dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, EXPERIMENTS / f"{script}.py")
    module = importlib.util.module_from_spec(spec)
    if register:
        sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
