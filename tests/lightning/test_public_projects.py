"""The five public Lightning autoencoders of benchmarks/projects (re-typed from their sources): with
only the arguments docs/monitor.md gives for each, the callback resolves an encoder that lbinv lifts
exactly (the lifted network reproduces the module's code on real digits) and a decoder whose output
compares with the inputs. benchmarks/monitor.py trains them with the callback (docs/monitor.md, "What it
shows on five public autoencoders")."""

from __future__ import annotations

import pytest
import torch

from lbinv import LiftedNetwork
from lbinv.lightning.callback.access import resolve_decoder, resolve_encoder
from lbinv.probe import as_inputs
from tests.helpers import REPO


@pytest.fixture(scope="module")
def projects():
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from projects import PROJECTS

        yield PROJECTS
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


@pytest.mark.parametrize("name", ["lit", "uva", "bolts", "vae", "maxpool"])
def test_each_project_is_lifted_exactly_from_the_readme_arguments(projects, name):
    project = projects[name]
    torch.manual_seed(0)
    module = project.factory().eval()
    _, val = project.loaders(n_train=64, n_val=32, batch_size=4)
    x = next(iter(val))[0]
    kwargs = project.callback_kwargs
    encoder = resolve_encoder(kwargs.get("encoder", "encoder"), module, kwargs.get("encoder_output"), tuple(x.shape[1:]))
    decoder = resolve_decoder(kwargs.get("decoder", "decoder"), module)
    flattened = isinstance(encoder, torch.nn.Sequential) and isinstance(encoder[0], torch.nn.Flatten)
    assert flattened == (name == "lit")  # Lightning's LitAutoEncoder reads flattened images: the callback flattens them
    with torch.no_grad():
        code = encoder(x)
        net = LiftedNetwork.from_module(encoder, tuple(x.shape[1:]))
        torch.testing.assert_close(net(x), code, rtol=1e-4, atol=1e-5)
        assert as_inputs(decoder(code), tuple(code.shape[1:]), tuple(x.shape[1:])).shape == x.shape
