"""``python -m hotpose.stream``: keypoint files and videos (a fake detector in a worker process) frame by frame."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_detector import person_at
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from inference_helpers import CONFIGS, save_checkpoint, tiny_mixste, walking_keypoints

from hotpose.inference import detector_worker
from hotpose.inference.checkpoint import load_model
from hotpose.inference.keypoints import blazepose_to_h36m, save_keypoints
from hotpose.inference.stream import PoseStream
from hotpose.stream import percentiles, run_stream

HERE = Path(__file__).resolve().parent


def stream_config(**overrides: object):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
            return compose("stream", overrides=[f"{k}={v}" for k, v in overrides.items()])
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", tiny_mixste(frames=9, tokens=3))


def test_keypoint_file_streams_like_the_api(tmp_path, ckpt) -> None:
    points = walking_keypoints(21)
    points[[7, 8]] = np.nan
    save_keypoints(tmp_path / "k.npz", points, None, 640, 480, "h36m", fps=30.0)
    out = io.StringIO()
    summary = run_stream(stream_config(input=tmp_path / "k.npz", ckpt=ckpt, output_dir=tmp_path / "out",
                                       delay=1, stride=2, json_lines="true", display="false"), out=out)
    stream = PoseStream(load_model(ckpt), (640, 480), delay=1, stride=2, layout="h36m")
    expected = [p for k in points for p in stream.push(None if np.isnan(k).all() else k)] + stream.flush()
    with np.load(tmp_path / "out" / "poses_3d.npz") as result:
        np.testing.assert_allclose(result["poses_3d"], np.stack([p.pose for p in expected]), atol=1e-6)
        assert np.flatnonzero(~result["detected"]).tolist() == [7, 8]
        assert result["lag_frames"][:15].min() >= 1 and result["latency_ms"].shape == (21,)
        assert float(result["fps"]) == 30.0 and int(result["delay"]) == 1
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["frame"] for line in lines] == list(range(21))
    np.testing.assert_allclose(lines[3]["pose_3d"], expected[3].pose, atol=1e-4)
    assert lines[7]["detected"] is False and len(lines[7]["filled"]) == 17
    assert summary["frames"] == 21 and summary["latency_ms"]["p95"] >= summary["latency_ms"]["median"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["stride"] == 2


def write_video(path: Path, frames: int, dark: set[int]) -> Path:
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 64))
    for t in range(frames):
        frame = np.zeros((64, 96, 3), dtype=np.uint8)
        if t not in dark:
            frame[28:33, 20 + 3 * t:25 + 3 * t] = 255
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize("in_worker", [True, False])
def test_video_through_one_detector_worker(tmp_path, ckpt, monkeypatch, in_worker) -> None:
    video = write_video(tmp_path / "v.avi", 14, dark={0, 6})
    starts: list[int] = []
    original = detector_worker.DetectorWorker.__init__

    def counting(self, *args, **kwargs):
        starts.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(detector_worker.DetectorWorker, "__init__", counting)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])))
    summary = run_stream(stream_config(input=video, ckpt=ckpt, output_dir=tmp_path / "out", delay=0,
                                       display="auto", **{"detector.name": "fake_detector:FakeDetector",
                                                          "detector.python": sys.executable if in_worker
                                                          else "null"}), out=io.StringIO())
    assert starts == ([1] if in_worker else [])  # one worker process for the whole video
    with np.load(tmp_path / "out" / "poses_3d.npz") as result:
        assert result["poses_3d"].shape == (14, 17, 3)
        assert np.flatnonzero(~result["detected"]).tolist() == [0, 6]
        assert np.isnan(result["poses_3d"][0]).all()  # nothing seen yet: no pose
        assert np.isfinite(result["poses_3d"][1:]).all()
        expected = blazepose_to_h36m(person_at(20 + 3 * 4 + 2, 30))[0]
        np.testing.assert_allclose(result["keypoints_2d"][4], expected, atol=3.0)
        np.testing.assert_allclose(result["keypoints_2d"][6], result["keypoints_2d"][5])  # held
        assert str(result["source_layout"]) == "blazepose"
    assert summary["detection_ms_per_frame"]["median"] > 0 and summary["kind"] == "video"


def test_command_line_json_lines_and_errors(tmp_path, ckpt) -> None:
    save_keypoints(tmp_path / "k.npz", walking_keypoints(10), None, 640, 480, "h36m")
    common = [sys.executable, "-m", "hotpose.stream", f"input={tmp_path / 'k.npz'}", f"ckpt={ckpt}",
              f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(common + ["json_lines=true", "delay=0"], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    frames = [json.loads(line)["frame"] for line in done.stdout.splitlines()]
    assert frames == list(range(10)) and "latency median" in done.stderr
    bad = subprocess.run(common + ["delay=7"], capture_output=True, text=True, timeout=180)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("error: delay must be 'centre' or a whole number")


def test_bad_inputs_fail_clearly(tmp_path, ckpt) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        run_stream(stream_config(input=tmp_path / "none.npz", ckpt=ckpt, output_dir=tmp_path / "o"))
    with pytest.raises(ValueError, match="camera 97 cannot be opened"):
        pytest.importorskip("cv2")
        run_stream(stream_config(input=97, ckpt=ckpt, output_dir=tmp_path / "o", display="false"))


def test_percentiles_by_hand() -> None:
    values = [float(v) for v in range(1, 21)]  # 1 .. 20
    assert percentiles(values) == {"median": 10.5, "p95": 19.0}
    assert np.isnan(percentiles([])["median"])


def test_realtime_paces_a_file(tmp_path, ckpt) -> None:
    save_keypoints(tmp_path / "k.npz", walking_keypoints(6), None, 640, 480, "h36m", fps=20.0)
    summary = run_stream(stream_config(input=tmp_path / "k.npz", ckpt=ckpt, output_dir=tmp_path / "o",
                                       realtime="true", delay=2), out=io.StringIO())
    # 6 frames paced at 20 frames/s span at least 5 intervals of 50 ms: never faster than 6 / 0.25 s
    assert summary["throughput_fps"] < 6 / 0.25 * 1.02
    # frames wait for their 2 look-ahead frames at 20 frames/s: at least 100 ms (the last ones are flushed)
    assert summary["latency_ms"]["p95"] >= 100.0


def _demo_setup():
    from test_video import _real_video_setup

    return _real_video_setup()


@pytest.mark.skipif(_demo_setup() is None,
                    reason="opt-in: set HOTPOSE_DEMO_VIDEO to the Sports2D clip (scripts/demo_video.py --fetch-only) "
                           "and install mediapipe here or set HOTPOSE_DETECTOR_PYTHON to an interpreter with it")
def test_demo_clip_streamed_as_if_live(tmp_path, ckpt) -> None:
    video, python = _demo_setup()
    out = io.StringIO()
    summary = run_stream(stream_config(input=video, ckpt=ckpt, output_dir=tmp_path / "out", delay=0, realtime="true",
                                       json_lines="true", display="false", max_frames=60,
                                       **{"detector.python": python or "null"}), out=out)
    assert [json.loads(line)["frame"] for line in out.getvalue().splitlines()] == list(range(60))
    with np.load(tmp_path / "out" / "poses_3d.npz") as result:
        detected = result["detected"]
        assert result["poses_3d"].shape == (60, 17, 3) and detected.mean() > 0.5
        k = result["keypoints_2d"][detected]
        assert ((k[..., 0] > -0.1 * result["width"]) & (k[..., 0] < 1.1 * result["width"])).mean() > 0.95
        assert np.isfinite(result["poses_3d"][detected]).all()
    assert summary["detection_ms_per_frame"]["median"] > 0 and summary["kind"] == "video"
