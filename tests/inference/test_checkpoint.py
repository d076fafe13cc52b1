"""The model always comes from the checkpoint's own configuration, loaded strictly."""

from __future__ import annotations

import pytest
import torch
from inference_helpers import build_from_config, save_checkpoint, tiny_mixste

from hotpose.inference.checkpoint import load_model


def test_loaded_model_is_the_saved_one(tmp_path) -> None:
    config = tiny_mixste(frames=9, tokens=3, pipeline="seq2frame", recoverer="none")
    path = save_checkpoint(tmp_path / "m.ckpt", config, seed=5, variant="tpc_mixste")
    model = load_model(path)
    torch.manual_seed(5)
    reference = build_from_config(config).eval()
    x = torch.randn(2, 9, 17, 2)
    with torch.no_grad():
        a, b = model.net(x), reference(x)
    torch.testing.assert_close(a.pose, b.pose)
    assert torch.equal(a.frame_index, b.frame_index) and a.frame_index.shape == (2, 3)
    assert (model.frames, model.in_channels, model.pipeline, model.variant) == (9, 2, "seq2frame", "tpc_mixste")
    assert not model.net.training
    assert "pruning [(1, 3)]" in model.describe() and "recoverer NoRecovery" in model.describe()


def test_foreign_weights_are_refused_not_loaded_into_a_default_model(tmp_path) -> None:
    torch.save({"model_pos": build_from_config(tiny_mixste()).state_dict()}, tmp_path / "official.pth")
    with pytest.raises(ValueError, match="python -m hotpose.convert"):
        load_model(tmp_path / "official.pth")


def test_weights_of_another_configuration_are_refused(tmp_path) -> None:
    path = save_checkpoint(tmp_path / "m.ckpt", tiny_mixste(frames=9, tokens=3))
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["hyper_parameters"]["model"] = tiny_mixste(frames=9, tokens=3, recoverer="none")
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="unexpected.*recoverer"):
        load_model(path)
    checkpoint["hyper_parameters"]["model"] = tiny_mixste(frames=11, tokens=3)
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="wrong shape"):
        load_model(path)


def test_unreadable_or_missing_checkpoint(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "none.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text.ckpt is damaged or not a torch file"):
        load_model(tmp_path / "text.ckpt")
