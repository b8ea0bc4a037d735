"""The callback in a ``pytorch_lightning`` project (lbinv.lightning.callback.namespaces): a module,
Trainer and TensorBoardLogger all from the ``pytorch_lightning`` package, exactly as with
``lightning.pytorch``."""

from __future__ import annotations

import pytest
import torch.nn.functional as F

from lbinv.lightning.callback import InversionCallback
from tests.lightning.helpers import (
    LEVELS,
    QUIET_LIGHTNING,
    VAE,
    Foreign,
    TrainSteps,
    batch_images,
    events,
    inversion_tags,
    make_callback,
    train_loader,
    val_loader,
    vae_loss,
)

pl = pytest.importorskip("pytorch_lightning")

pytestmark = QUIET_LIGHTNING


class PLForeign(TrainSteps, pl.LightningModule):
    """The helpers' Foreign encoder and decoder in a module written against pytorch_lightning."""

    def __init__(self) -> None:
        super().__init__()
        body = Foreign()
        self.enc, self.dec = body.enc, body.dec

    def _loss(self, batch):
        x = batch_images(batch)
        return F.mse_loss(self.dec(self.enc(x)), x)


def pl_trainer(tmp_path, callbacks, **kwargs):
    logger = pl.loggers.TensorBoardLogger(str(tmp_path), name="tb", version=0)
    return pl.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, logger=logger, callbacks=callbacks, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, limit_train_batches=2, limit_val_batches=2,
        num_sanity_val_steps=1, log_every_n_steps=1, default_root_dir=str(tmp_path), **kwargs,
    )


def test_the_callback_is_a_callback_of_both_namespaces():
    import lightning.pytorch as lp

    cb = make_callback()
    assert isinstance(cb, pl.Callback) and isinstance(cb, lp.Callback)


def test_fit_in_a_pytorch_lightning_project_logs_scalars_and_images(tmp_path, recwarn):
    cb = make_callback()
    trainer = pl_trainer(tmp_path, [cb])
    trainer.fit(PLForeign(), train_loader(), val_loader())
    assert not [w for w in recwarn if "TensorBoardLogger" in str(w.message)], "its TensorBoardLogger was not recognised"
    acc = events(tmp_path)
    for tag in inversion_tags():
        assert [e.step for e in acc.Scalars(tag)] == [0], tag
    for s in LEVELS:
        assert acc.Images(f"inversion/images/sigma_{s:g}"), s
    psnr = [e.value for e in acc.Scalars(f"inversion/psnr_inverted/sigma_{LEVELS[0]:g}")]
    assert 0 < psnr[0] < 60


def test_validate_in_a_pytorch_lightning_project_inverts_and_bad_encoders_fail_early(tmp_path):
    trainer = pl_trainer(tmp_path, [make_callback()])
    trainer.validate(PLForeign(), val_loader())
    assert "inversion/seconds" in events(tmp_path).Tags()["scalars"]
    bad = pl_trainer(tmp_path / "bad", [InversionCallback(encoder="missing", input_shape=(1, 8, 8))])
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        bad.fit(PLForeign(), train_loader(), val_loader())


class PLVAE(TrainSteps, pl.LightningModule):
    """A VAE under self.model, its code the mean head of self.model.encode."""

    def __init__(self) -> None:
        super().__init__()
        self.model = VAE()

    def _loss(self, batch):
        return vae_loss(self.model, batch_images(batch))


def test_a_vae_mean_head_inverts_through_its_encode_method(tmp_path):
    # the user's model unchanged: the callback reads self.model.encode and takes its first output, mu
    cb = make_callback(encoder="model.encode", encoder_output=0, decoder="model.decode", input_shape=(1, 8, 8))
    trainer = pl_trainer(tmp_path, [cb])
    trainer.fit(PLVAE(), train_loader(), val_loader())
    acc = events(tmp_path)
    for tag in inversion_tags():
        assert [e.step for e in acc.Scalars(tag)] == [0], tag
    # B_Ψ(y, a_L(x)) of the clean code: 0 only if the lifted network reproduces the encoder's code on the probe
    assert acc.Scalars("inversion/delta2_bregman/sigma_0")[0].value < 1e-8
    without_output = pl_trainer(tmp_path / "bad", [make_callback(encoder="model.encode", decoder="model.decode")])
    # the hint names the callback's argument, encoder_output (not invert's output)
    with pytest.raises(ValueError, match=r"encoder_output: VAE\.encode returns a tuple or list of 2 items, not one tensor; pass encoder_output= .*encoder_output=0"):
        without_output.fit(PLVAE(), train_loader(), val_loader())
