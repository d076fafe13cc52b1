"""The Python API: keypoints in, the same poses as ``hotpose.infer`` out."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_helpers import infer_config, save_checkpoint, tiny_mixste, walking_keypoints

import hotpose
from hotpose.infer import run_inference
from hotpose.inference.keypoints import coco_to_h36m, save_keypoints


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", tiny_mixste(frames=9, tokens=3))


def test_lift_equals_the_command_line(tmp_path, ckpt) -> None:
    points = walking_keypoints(23)
    points[[0, 10, 11]] = np.nan
    save_keypoints(tmp_path / "k.npz", points, None, 640, 480, "h36m")
    out = tmp_path / "out"
    run_inference(infer_config(input=tmp_path / "k.npz", ckpt=ckpt, output_dir=out,
                               **{"render.animation": "null", "render.sheet": 0}))
    lifter = hotpose.Lifter.from_checkpoint(ckpt, device="cpu", precision="float32")
    result = lifter.lift(points, image_size=(640, 480), layout="h36m")
    with np.load(out / "poses_3d.npz") as cli:
        np.testing.assert_array_equal(result.poses_3d, cli["poses_3d"])
        np.testing.assert_array_equal(result.filled, cli["filled"])
    assert result.poses_3d.shape == (23, 17, 3)
    assert np.flatnonzero(result.filled_frames).tolist() == [0, 10, 11]


def test_coco_layout_scores_and_file(tmp_path, ckpt) -> None:
    coco = np.random.default_rng(0).uniform(100, 300, (12, 17, 3)).astype(np.float32)
    coco[..., 2] = 0.8
    lifter = hotpose.Lifter.from_checkpoint(ckpt, flip=False)
    result = lifter.lift(coco, image_size=(400, 300), layout="coco")
    np.testing.assert_allclose(result.keypoints_2d, coco_to_h36m(coco[..., :2])[0], atol=1e-5)
    np.testing.assert_allclose(result.scores, 0.8, atol=1e-6)
    save_keypoints(tmp_path / "c.npz", coco[..., :2], coco[..., 2], 400, 300, "coco")
    np.testing.assert_array_equal(lifter.lift_file(tmp_path / "c.npz").poses_3d, result.poses_3d)
    assert result.passes == 1


def test_load_model_is_the_network(ckpt) -> None:
    net = hotpose.load_model(ckpt)
    assert isinstance(net, torch.nn.Module) and not net.training
    x = torch.zeros(2, 9, 17, 2)
    with torch.no_grad():
        assert net(x).pose.shape == (2, 9, 17, 3)


def test_bf16_and_int8_are_close(ckpt) -> None:
    points = walking_keypoints(9)
    exact = hotpose.Lifter.from_checkpoint(ckpt).lift(points, (640, 480), "h36m").poses_3d
    bf16 = hotpose.Lifter.from_checkpoint(ckpt, precision="bf16").lift(points, (640, 480), "h36m").poses_3d
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, exact)
    np.testing.assert_allclose(bf16, exact, atol=0.05 * np.abs(exact).max())
    int8 = hotpose.Lifter.from_checkpoint(ckpt, precision="int8").lift(points, (640, 480), "h36m").poses_3d
    assert int8.dtype == np.float32 and not np.array_equal(int8, exact)
    np.testing.assert_allclose(int8, exact, atol=0.05 * np.abs(exact).max())
    with pytest.raises(ValueError, match="choose one of float32, bf16, int8"):
        hotpose.Lifter.from_checkpoint(ckpt, precision="fp16")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"image_size": 640}, "image_size must be"),
    ({"image_size": (640, 0)}, "positive"),
    ({"layout": None}, "layout=h36m or layout=coco"),
    ({"layout": "blazepose"}, "33 joints"),
])
def test_bad_arguments_fail_clearly(ckpt, kwargs, message) -> None:
    lifter = hotpose.Lifter.from_checkpoint(ckpt)
    with pytest.raises(ValueError, match=message):
        lifter.lift(walking_keypoints(5), **{"image_size": (640, 480), "layout": "h36m", **kwargs})
    with pytest.raises(ValueError, match="does not exist"):
        hotpose.Lifter.from_checkpoint("no/such.ckpt")
