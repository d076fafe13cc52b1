"""Video inputs: a synthetic video with a stub detector that misses frames, bad videos, and (opt-in) the
real demo video through MediaPipe.

The opt-in test runs when ``HOTPOSE_DEMO_VIDEO`` names a video file (``scripts/demo_video.py --fetch-only``
fetches one) and MediaPipe is importable here or ``HOTPOSE_DETECTOR_PYTHON`` names an interpreter that has it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
from inference_helpers import infer_config, save_checkpoint, tiny_mixste

from hotpose.infer import run_inference
from hotpose.inference import detectors
from hotpose.inference.detectors import Detection, DetectorUnavailable, detect_video, open_video
from hotpose.inference.keypoints import BLAZEPOSE_JOINT_NAMES, blazepose_to_h36m

cv2 = pytest.importorskip("cv2", reason="OpenCV (opencv-python-headless) is needed to write a test video")

FRAMES, WIDTH, HEIGHT = 12, 64, 48
MISSED = {0, 5, 6}


def write_video(path: Path) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (WIDTH, HEIGHT))
    for t in range(FRAMES):
        frame = np.full((HEIGHT, WIDTH, 3), 20 * t % 255, dtype=np.uint8)
        cv2.circle(frame, (10 + 3 * t, 24), 5, (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def blazepose_person(shift: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    points = rng.uniform(15, 35, (33, 2)) + [shift, 0]
    for name, value in {"l_hip": (36, 30), "r_hip": (28, 30), "l_eye": (33, 8), "r_eye": (31, 8),
                        "mouth_l": (33, 12), "mouth_r": (31, 12)}.items():
        points[BLAZEPOSE_JOINT_NAMES.index(name)] = np.add(value, [shift, 0])
    return points.astype(np.float32)


class StubDetector:
    """Finds the same BlazePose person moving right, except on the frames in ``MISSED``."""

    layout = "blazepose"

    def __init__(self, **_: object) -> None:
        self.calls = 0
        self.shapes: list[tuple[int, ...]] = []

    def __call__(self, rgb: np.ndarray) -> Detection | None:
        t, self.calls = self.calls, self.calls + 1
        self.shapes.append(rgb.shape)
        if t in MISSED:
            return None
        return Detection(blazepose_person(float(t)), np.full(33, 0.9, dtype=np.float32))

    def close(self) -> None:
        pass


def test_stub_detector_on_a_video_with_empty_frames(tmp_path) -> None:
    video = write_video(tmp_path / "v.avi")
    detector = StubDetector()
    result = detect_video(video, detector)
    assert detector.shapes == [(HEIGHT, WIDTH, 3)] * FRAMES
    assert np.flatnonzero(~result.detected).tolist() == sorted(MISSED)
    assert (result.info.width, result.info.height) == (WIDTH, HEIGHT)
    assert np.isnan(result.points[list(MISSED)]).all()
    track = result.to_track()
    np.testing.assert_allclose(track.points[3], blazepose_to_h36m(blazepose_person(3.0))[0], atol=1e-4)
    assert np.isnan(track.points[5]).all() and track.scores[3, 0] == pytest.approx(0.9)


def test_video_end_to_end_with_a_stub_detector(tmp_path, monkeypatch) -> None:
    video = write_video(tmp_path / "v.avi")
    ckpt = save_checkpoint(tmp_path / "m.ckpt", tiny_mixste(frames=9, tokens=3))
    monkeypatch.setattr(detectors, "build_detector", lambda name, **options: StubDetector())
    out = tmp_path / "out"
    summary = run_inference(infer_config(input=video, ckpt=ckpt, output_dir=out, **{
        "render.size": 1.0, "render.dpi": 40, "render.sheet": 2}))
    with np.load(out / "poses_3d.npz") as result:
        assert result["poses_3d"].shape == (FRAMES, 17, 3) and np.isfinite(result["poses_3d"]).all()
        assert np.flatnonzero(~result["detected"]).tolist() == sorted(MISSED)
        # frame 0 is held from frame 1; frames 5 and 6 are interpolated between 4 and 7
        k = result["keypoints_2d"]
        np.testing.assert_allclose(k[0], k[1], atol=1e-4)
        np.testing.assert_allclose(k[5], k[4] + (k[7] - k[4]) / 3, atol=1e-4)
        assert str(result["source_layout"]) == "blazepose"
    with np.load(out / "detections.npz") as raw:
        assert raw["keypoints"].shape == (FRAMES, 33, 2)
    assert summary["detected_frames"] == FRAMES - len(MISSED) and summary["detection_fps"] > 0
    info, frames = open_video(out / "poses.mp4")
    assert sum(1 for _ in frames) == FRAMES


def test_unreadable_video_fails_clearly(tmp_path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video" * 10)
    with pytest.raises(ValueError, match="cannot be read"):
        open_video(tmp_path / "broken.mp4")
    with pytest.raises(ValueError, match="does not exist"):
        open_video(tmp_path / "none.mp4")
    ckpt = save_checkpoint(tmp_path / "m.ckpt", tiny_mixste())
    with pytest.raises(ValueError, match="cannot be read"):
        detect_video(tmp_path / "broken.mp4", StubDetector())
    with pytest.raises(ValueError, match="unknown type"):
        run_inference(infer_config(input=ckpt, ckpt=ckpt, output_dir=tmp_path / "out"))


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="mediapipe is installed here")
def test_missing_mediapipe_says_how_to_get_it() -> None:
    with pytest.raises(DetectorUnavailable, match="'mediapipe' extra"):
        detectors.build_detector("mediapipe")


def _real_video_setup() -> tuple[Path, str | None] | None:
    video = os.environ.get("HOTPOSE_DEMO_VIDEO")
    if not video or not Path(video).is_file():
        return None
    python = os.environ.get("HOTPOSE_DETECTOR_PYTHON")
    if python or importlib.util.find_spec("mediapipe") is not None:
        return Path(video), python
    return None


@pytest.mark.skipif(_real_video_setup() is None,
                    reason="opt-in: set HOTPOSE_DEMO_VIDEO to a real video (scripts/demo_video.py --fetch-only) "
                           "and install mediapipe here or set HOTPOSE_DETECTOR_PYTHON to an interpreter with it")
def test_real_video_through_mediapipe(tmp_path) -> None:
    video, python = _real_video_setup()
    ckpt = save_checkpoint(tmp_path / "m.ckpt", tiny_mixste(frames=9, tokens=3))
    out = tmp_path / "out"
    summary = run_inference(infer_config(
        input=video, ckpt=ckpt, output_dir=out, **{"detector.python": python or "null",
                                                   "detector.max_frames": 40, "render.animation": "null",
                                                   "render.sheet": 2, "render.dpi": 40}))
    with np.load(out / "poses_3d.npz") as result:
        assert result["poses_3d"].shape == (40, 17, 3)
        detected = result["detected"]
        assert detected.mean() > 0.5, "MediaPipe found a person in fewer than half of the frames"
        k = result["keypoints_2d"][detected]
        inside = (k[..., 0] > -0.1 * result["width"]) & (k[..., 0] < 1.1 * result["width"])
        assert inside.mean() > 0.95
    assert summary["detection_fps"] > 0 and (out / "contact_sheet.png").is_file()
