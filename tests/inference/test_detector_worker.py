"""The long-lived detector process: one worker and one detector for all frames, frames in, keypoints out."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_detector import person_at

from hotpose.inference.detector_worker import DetectorWorker

HERE = str(Path(__file__).resolve().parent)


@pytest.fixture
def on_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")])))


def frame_with_dot(x: int, y: int, width: int = 80, height: int = 60) -> np.ndarray:
    rgb = np.zeros((height, width, 3), dtype=np.uint8)
    rgb[y, x] = 255
    return rgb


def test_one_worker_serves_every_frame(on_path) -> None:
    with DetectorWorker(sys.executable, "fake_detector:FakeDetector") as worker:
        assert (worker.layout, worker.joints) == ("blazepose", 33)
        pid = worker.pid
        for t in range(6):
            found = worker(frame_with_dot(10 + 5 * t, 20 + t))
            assert found is not None
            np.testing.assert_allclose(found.points, person_at(10 + 5 * t, 20 + t))
            assert found.scores[0] == pytest.approx((t + 1) / 1000)  # the same detector's 1st, 2nd, ... call
        assert worker(np.zeros((60, 80, 3), dtype=np.uint8)) is None
        assert worker.pid == pid and worker.frames == 7
        process = worker._process
    assert process.poll() == 0  # exited cleanly on close


def test_worker_errors_are_clear(on_path) -> None:
    with DetectorWorker(sys.executable, "fake_detector:FakeDetector", fail_on=1) as worker:
        worker(frame_with_dot(1, 1))
        with pytest.raises(RuntimeError, match="detector failed on frame 1: RuntimeError: fake failure"):
            worker(frame_with_dot(1, 1))
        assert worker(frame_with_dot(2, 2)) is not None  # the worker survives a failed frame
        with pytest.raises(ValueError, match="RGB"):
            worker(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="did not start.*cannot be imported"):
        DetectorWorker(sys.executable, "no_such_module:Detector")
    with pytest.raises(ValueError, match="cannot be started"):
        DetectorWorker("/no/such/python")
