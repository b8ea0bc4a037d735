"""The callback in a ``pytorch_lightning`` project (lbinv.lightning.callback.namespaces): a module,
Trainer and TensorBoardLogger all from the ``pytorch_lightning`` package, exactly as with
``lightning.pytorch``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lbinv.lightning.callback import InversionCallback
from tests.lightning.helpers import QUIET_LIGHTNING, LEVELS, Foreign, events, inversion_tags, make_callback, train_loader, val_loader

pl = pytest.importorskip("pytorch_lightning")

pytestmark = QUIET_LIGHTNING


class PLForeign(pl.LightningModule):
    """The helpers' Foreign encoder and decoder in a module written against pytorch_lightning."""

    def __init__(self) -> None:
        super().__init__()
        body = Foreign()
        self.enc, self.dec = body.enc, body.dec

    def _loss(self, batch):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return F.mse_loss(self.dec(self.enc(x)), x)

    def training_step(self, batch, batch_idx):
        return self._loss(batch)

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


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
