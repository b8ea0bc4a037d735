"""The paper's MNIST autoencoders (MATH.md §9) and a LightningModule that trains them on MSE."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import Tensor, nn

CodeActivation = Literal["relu"] | None


def _code_activation(name: CodeActivation) -> list[nn.Module]:
    if name not in ("relu", None):
        raise ValueError(f"code_activation must be 'relu' or None, got {name!r}")
    return [nn.ReLU()] if name == "relu" else []


class DenseAutoencoder(nn.Module):
    """Encoder ``Flatten → Linear(784, code_dim) → ReLU``; linear decoder ``Linear(code_dim, 784)``
    reshaped to (1, 28, 28).

    Parameters
    ----------
    code_dim : int
        Code size.
    code_activation : {"relu", None}
        Activation on the code ("relu") or none (linear code).
    """

    def __init__(self, code_dim: int = 100, code_activation: CodeActivation = "relu") -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, code_dim), *_code_activation(code_activation))
        self.decoder = nn.Sequential(nn.Linear(code_dim, 784), nn.Unflatten(1, (1, 28, 28)))

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction ``decoder(encoder(x))``.

        Parameters
        ----------
        x : Tensor
            ``(B, 1, 28, 28)`` images.

        Returns
        -------
        Tensor
            ``(B, 1, 28, 28)`` reconstructions.
        """
        return self.decoder(self.encoder(x))


class ConvAutoencoder(nn.Module):
    """Encoder ``Conv2d(1,8,4,2,1) → ReLU → Conv2d(8,16,4,2,1) → ReLU → Flatten → Linear(784, code_dim)
    [→ ReLU]``; decoder ``Linear(code_dim, 784) → Unflatten(16,7,7) → ConvTranspose2d(16,8,4,2,1) → ReLU
    → ConvTranspose2d(8,1,4,2,1) → ReLU``.

    Parameters
    ----------
    code_dim : int
        Code size.
    code_activation : {"relu", None}
        Activation on the code ("relu") or none (linear code).
    """

    def __init__(self, code_dim: int = 300, code_activation: CodeActivation = "relu") -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 7 * 7, code_dim),
            *_code_activation(code_activation),
        )
        self.decoder = nn.Sequential(
            nn.Linear(code_dim, 16 * 7 * 7),
            nn.Unflatten(1, (16, 7, 7)),
            nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(8, 1, 4, stride=2, padding=1),
            nn.ReLU(),
        )
        # PyTorch draws this bias from ±0.25 while the pre-activations stay within about ±0.05: a
        # negative draw would leave the final ReLU dead on every pixel, so the decoder never learns.
        nn.init.zeros_(self.decoder[-2].get_parameter("bias"))

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction ``decoder(encoder(x))``.

        Parameters
        ----------
        x : Tensor
            ``(B, 1, 28, 28)`` images.

        Returns
        -------
        Tensor
            ``(B, 1, 28, 28)`` reconstructions.
        """
        return self.decoder(self.encoder(x))


NETS: dict[str, type[nn.Module]] = {"dense": DenseAutoencoder, "conv": ConvAutoencoder}


class AutoencoderModule(LightningModule):
    """Trains an autoencoder on the MSE between input and reconstruction; logs ``train/loss`` and
    ``val/loss``.

    Parameters
    ----------
    net : {"dense", "conv"} or nn.Module
        "dense" or "conv" (the paper's nets, built with ``code_dim`` and ``code_activation``), or
        any module with ``encoder`` and ``decoder`` attributes (then not saved in the hyperparameters:
        pass it again to ``load_from_checkpoint``).
    code_dim : int, optional
        Code size; None takes the paper's (100 dense, 300 conv).
    code_activation : {"relu", None}
        Activation on the code, "relu" or None (linear code).
    optimizer : {"sgd", "adam"}
        "sgd" (the paper's plain stochastic gradient method) or "adam".
    lr : float
        Learning rate.
    momentum : float
        SGD momentum in [0, 1) (ignored by Adam).
    weight_decay : float
        L2 penalty of the optimiser.
    """

    def __init__(
        self,
        net: Literal["dense", "conv"] | nn.Module = "dense",
        code_dim: int | None = None,
        code_activation: CodeActivation = "relu",
        optimizer: Literal["sgd", "adam"] = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum}")
        if isinstance(net, nn.Module):
            if not all(isinstance(getattr(net, part, None), nn.Module) for part in ("encoder", "decoder")):
                raise ValueError(f"net must have `encoder` and `decoder` submodules; {type(net).__name__} has not")
            self.save_hyperparameters(ignore=["net"])
            self.net = net
        elif net in NETS:
            self.save_hyperparameters()
            kwargs = {} if code_dim is None else {"code_dim": code_dim}
            self.net = NETS[net](code_activation=code_activation, **kwargs)
        else:
            raise ValueError(f"net must be 'dense', 'conv' or an nn.Module, got {net!r}")

    @property
    def encoder(self) -> nn.Module:
        """The encoder (an ``nn.Sequential`` for the built-in nets)."""
        return self.net.get_submodule("encoder")

    @property
    def decoder(self) -> nn.Module:
        """The decoder (an ``nn.Sequential`` for the built-in nets)."""
        return self.net.get_submodule("decoder")

    def encode(self, x: Tensor) -> Tensor:
        """The code ``encoder(x)``.

        Parameters
        ----------
        x : Tensor
            ``(B, ...)`` images, as the encoder takes them.

        Returns
        -------
        Tensor
            ``(B, ...)`` codes.
        """
        return self.encoder(x)

    def decode(self, code: Tensor) -> Tensor:
        """The images ``decoder(code)``.

        Parameters
        ----------
        code : Tensor
            ``(B, ...)`` codes, as the decoder takes them.

        Returns
        -------
        Tensor
            ``(B, ...)`` images.
        """
        return self.decoder(code)

    def forward(self, x: Tensor) -> Tensor:
        """The reconstruction ``decode(encode(x))``.

        Parameters
        ----------
        x : Tensor
            ``(B, ...)`` images.

        Returns
        -------
        Tensor
            Reconstructions, shaped like ``x``.
        """
        return self.decode(self.encode(x))

    def _loss(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, _ = batch
        return F.mse_loss(self(x), x)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """The MSE between the images of ``batch`` (image, label) and their reconstruction; logs ``train/loss``."""
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        """The MSE between the images of ``batch`` (image, label) and their reconstruction; logs ``val/loss``."""
        loss = self._loss(batch)
        self.log("val/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """SGD with momentum or Adam, as the hyperparameters ``optimizer``, ``lr``, ``momentum`` and
        ``weight_decay`` say."""
        hp = self.hparams
        if hp["optimizer"] == "adam":
            return torch.optim.Adam(self.parameters(), lr=hp["lr"], weight_decay=hp["weight_decay"])
        return torch.optim.SGD(self.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"])
