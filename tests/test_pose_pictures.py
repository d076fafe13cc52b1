"""Pose pictures say which weights made the predictions they show."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from hotpose.callbacks import PosePictures


def _trainer(fn: str, epoch: int, ckpt: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(fn=fn), current_epoch=epoch, ckpt_path=ckpt, loggers=[],
                           global_step=0, global_rank=0)


def test_test_picture_names_the_restored_checkpoint(tmp_path: Path) -> None:
    pictures = PosePictures(tmp_path)
    trainer = _trainer("test", epoch=8, ckpt="/run/checkpoints/epoch003-p1_41.20.ckpt")  # fit ran 8 epochs
    pictures.on_load_checkpoint(trainer, None, {"epoch": 3})
    assert pictures.title(trainer, "test") == ("test, checkpoint of epoch 3 (epoch003-p1_41.20.ckpt)",
                                              "test_epoch003")
    rng = np.random.default_rng(0)
    pictures._sample = {"input_2d": rng.normal(size=(2, 17, 2)), "pred": rng.normal(size=(2, 17, 3)) * 0.2,
                        "target": rng.normal(size=(2, 17, 3)) * 0.2}
    pictures._emit(trainer, "test")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_epoch003.png"]
    pictures.on_test_end(trainer, None)
    # the last weights, right after fitting 8 epochs (0..7): not "epoch 8"
    assert pictures.title(_trainer("test", epoch=8), "test") == ("test, weights after epoch 7 (the last)",
                                                                "test_epoch007")
    assert pictures.title(_trainer("test", epoch=0), "test") == ("test", "test")


def test_resuming_a_fit_does_not_name_the_test_picture(tmp_path: Path) -> None:
    pictures = PosePictures(tmp_path)
    pictures.on_load_checkpoint(_trainer("fit", epoch=0, ckpt="last.ckpt"), None, {"epoch": 5})
    assert pictures.title(_trainer("test", epoch=9), "test")[1] == "test_epoch008"
    assert pictures.title(_trainer("validate", epoch=4), "val") == ("val, epoch 4", "val_epoch004")
