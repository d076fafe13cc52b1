"""End to end: a keypoint file and a tiny checkpoint in, 3D poses npz and pictures out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import infer_config, save_checkpoint, tiny_mixste, walking_keypoints
from PIL import Image

from hotpose.infer import run_inference
from hotpose.inference.keypoints import coco_to_h36m, save_keypoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", tiny_mixste(frames=9, tokens=3))


def test_keypoint_file_to_poses_and_pictures(tmp_path, checkpoint) -> None:
    points = walking_keypoints(23)
    points[[0, 10, 11]] = np.nan  # frames without a detection
    path = save_keypoints(tmp_path / "k.npz", points, None, 640, 480, "h36m", fps=10.0)
    out = tmp_path / "out"
    summary = run_inference(infer_config(input=path, ckpt=checkpoint, output_dir=out, **{
        "render.animation": "gif", "render.sheet": 3, "render.size": 1.5, "render.dpi": 40}))
    with np.load(out / "poses_3d.npz") as result:
        assert result["poses_3d"].shape == (23, 17, 3) and np.isfinite(result["poses_3d"]).all()
        assert (result["poses_3d"][:, 0] == 0).all()
        assert np.flatnonzero(~result["detected"]).tolist() == [0, 10, 11]
        assert result["filled"][[0, 10, 11]].all() and not result["filled"][[1, 12]].any()
        np.testing.assert_allclose(result["keypoints_2d"][5], points[5], atol=1e-4)
        assert (int(result["width"]), int(result["height"]), float(result["fps"])) == (640, 480, 10.0)
        assert list(result["joint_names"])[:2] == ["pelvis", "r_hip"]
    assert summary["frames"] == 23 and summary["detected_frames"] == 20 and summary["windows"] == 3
    gif = Image.open(out / "poses.gif")
    assert gif.n_frames == 23
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.size[0] == 2 * gif.size[0] and sheet.size[1] == 2 * gif.size[1]  # 3 pictures, 2 columns
    assert json.loads((out / "summary.json").read_text())["frames"] == 23


def test_coco_file_uses_the_documented_mapping(tmp_path, checkpoint) -> None:
    coco = np.random.default_rng(0).uniform(100, 300, (6, 17, 2)).astype(np.float32)
    np.save(tmp_path / "coco.npy", coco)
    out = tmp_path / "out"
    run_inference(infer_config(input=tmp_path / "coco.npy", ckpt=checkpoint, output_dir=out, layout="coco",
                               width=400, height=300, **{"render.animation": "null", "render.sheet": 0}))
    with np.load(out / "poses_3d.npz") as result:
        np.testing.assert_allclose(result["keypoints_2d"], coco_to_h36m(coco)[0], atol=1e-4)
        assert result["poses_3d"].shape == (6, 17, 3)
    assert not (out / "contact_sheet.png").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": 0, "height": 480}, "positive"),
        ({"width": "null"}, "image size unknown"),
        ({"layout": "null"}, "layout=h36m or layout=coco"),
        ({"precision": "fp16"}, "choose one of float32, bf16, int8"),
        ({"precision": "int8", "device": "cuda"}, "CPU only"),
    ],
)
def test_bad_keypoint_input_fails_clearly(tmp_path, checkpoint, overrides, message) -> None:
    np.save(tmp_path / "k.npy", walking_keypoints(4))
    base = {"input": tmp_path / "k.npy", "ckpt": checkpoint, "output_dir": tmp_path / "out",
            "layout": "h36m", "width": 640, "height": 480}
    with pytest.raises(ValueError, match=message):
        run_inference(infer_config(**{**base, **overrides}))


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_lifts_close_to_float32(tmp_path, checkpoint, precision) -> None:
    np.save(tmp_path / "k.npy", walking_keypoints(12))
    base = {"input": tmp_path / "k.npy", "ckpt": checkpoint, "layout": "h36m", "width": 640, "height": 480,
            "render.animation": "null", "render.sheet": 0}
    poses = {}
    for p in ("float32", precision):
        summary = run_inference(infer_config(**base, output_dir=tmp_path / p, precision=p))
        assert summary["precision"] == p
        with np.load(tmp_path / p / "poses_3d.npz") as result:
            poses[p] = result["poses_3d"]
    deviation = np.linalg.norm(poses[precision] - poses["float32"]) / np.linalg.norm(poses["float32"])
    assert 0 < deviation < 0.1  # the tiny random-weight model; trained models: docs/performance.md


def test_command_line_reports_bad_input_in_one_line(tmp_path, checkpoint) -> None:
    np.save(tmp_path / "k.npy", np.zeros((4, 12, 2)))
    done = subprocess.run(
        [sys.executable, "-m", "hotpose.infer", f"input={tmp_path / 'k.npy'}", f"ckpt={checkpoint}",
         f"hydra.run.dir={tmp_path / 'run'}", "width=64", "height=48"],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "error:" in done.stderr and "12 joints" in done.stderr and "Traceback" not in done.stderr
