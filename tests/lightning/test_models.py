"""The paper's autoencoders and AutoencoderModule: architecture, lifting, training, checkpoints."""

import pytest
import torch
from lightning.pytorch import Trainer
from torch import nn

from lbinv.lightning.data import MNISTDataModule
from lbinv.lifted import LiftedNetwork
from lbinv.lightning.models import AutoencoderModule, ConvAutoencoder, DenseAutoencoder

PAPER_LAYERS = {
    "dense": (
        [nn.Flatten, nn.Linear, nn.ReLU],
        [nn.Linear, nn.Unflatten],
    ),
    "conv": (
        [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Flatten, nn.Linear, nn.ReLU],
        [nn.Linear, nn.Unflatten, nn.ConvTranspose2d, nn.ReLU, nn.ConvTranspose2d, nn.ReLU],
    ),
}


def quiet_trainer(**kwargs) -> Trainer:
    return Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, **kwargs,
    )


@pytest.mark.parametrize("name, cls, code_dim", [("dense", DenseAutoencoder, 100), ("conv", ConvAutoencoder, 300)])
def test_paper_architecture(name, cls, code_dim):
    net = cls()
    encoder_types, decoder_types = PAPER_LAYERS[name]
    assert isinstance(net.encoder, nn.Sequential) and isinstance(net.decoder, nn.Sequential)
    assert [type(m) for m in net.encoder] == encoder_types
    assert [type(m) for m in net.decoder] == decoder_types
    x = torch.rand(5, 1, 28, 28)
    code = net.encoder(x)
    assert code.shape == (5, code_dim) and code.min() >= 0
    assert net(x).shape == (5, 1, 28, 28)
    if name == "conv":
        convs = [m for m in [*net.encoder, *net.decoder] if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding) for m in convs] == [
            (1, 8, (4, 4), (2, 2), (1, 1)), (8, 16, (4, 4), (2, 2), (1, 1)),
            (16, 8, (4, 4), (2, 2), (1, 1)), (8, 1, (4, 4), (2, 2), (1, 1)),
        ]
        assert net(x).min() >= 0  # the decoder ends with a ReLU


def test_linear_code_and_code_dim():
    net = ConvAutoencoder(code_dim=12, code_activation=None)
    assert isinstance(net.encoder[-1], nn.Linear) and net.encoder[-1].out_features == 12
    assert (net.encoder(torch.rand(8, 1, 28, 28)) < 0).any()
    assert DenseAutoencoder(code_dim=7).encoder(torch.rand(2, 1, 28, 28)).shape == (2, 7)
    with pytest.raises(ValueError, match="code_activation"):
        DenseAutoencoder(code_activation="tanh")


@pytest.mark.parametrize("cls, layers, code_dim", [(DenseAutoencoder, 1, 100), (ConvAutoencoder, 3, 300)])
def test_encoder_is_liftable(cls, layers, code_dim):
    torch.manual_seed(0)
    encoder = cls().encoder.double()
    net = LiftedNetwork.from_module(encoder, input_shape=(1, 28, 28))
    assert len(net) == layers and tuple(net.output_shape) == (code_dim,)
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(net(x), encoder(x))


def test_module_wraps_nets_and_checks_arguments():
    model = AutoencoderModule("conv", code_dim=20, code_activation=None, optimizer="adam", lr=1e-3)
    assert isinstance(model.net, ConvAutoencoder) and model.encoder is model.net.encoder
    assert model.decoder is model.net.decoder
    assert model.hparams.code_dim == 20 and model.hparams.optimizer == "adam"
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(model(x), model.decode(model.encode(x)))
    assert isinstance(model.configure_optimizers(), torch.optim.Adam)
    sgd = AutoencoderModule("dense", lr=0.2, momentum=0.5).configure_optimizers()
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["lr"] == 0.2 and sgd.defaults["momentum"] == 0.5

    custom = AutoencoderModule(DenseAutoencoder(code_dim=5))
    assert custom.encode(x).shape == (3, 5) and "net" not in custom.hparams
    for bad, match in [({"net": "mlp"}, "net"), ({"net": nn.Linear(2, 2)}, "encoder"),
                       ({"optimizer": "lbfgs"}, "optimizer"), ({"lr": 0.0}, "lr"), ({"momentum": 1.0}, "momentum")]:
        with pytest.raises(ValueError, match=match):
            AutoencoderModule(**bad)


@pytest.mark.parametrize("net, lr", [("dense", 0.25), ("conv", 0.3)])
def test_training_lowers_val_loss_and_checkpoint_reloads(tmp_path, net, lr):
    torch.manual_seed(0)
    dm = MNISTDataModule(dataset="shapes", num_shapes=1280, batch_size=32, val_fraction=0.2)
    model = AutoencoderModule(net, lr=lr, momentum=0.9)
    before = quiet_trainer().validate(model, datamodule=dm, verbose=False)[0]["val/loss"]
    trainer = quiet_trainer(max_epochs=3)
    trainer.fit(model, datamodule=dm)
    after = trainer.callback_metrics["val/loss"].item()
    assert after < 0.7 * before, (before, after)

    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    reloaded = AutoencoderModule.load_from_checkpoint(path)
    assert dict(reloaded.hparams) == dict(model.hparams)
    state, state_again = model.state_dict(), reloaded.state_dict()
    assert state.keys() == state_again.keys()
    assert all(torch.equal(state[k], state_again[k]) for k in state)
    x = next(iter(dm.val_dataloader()))[0]
    model.eval()
    torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)
