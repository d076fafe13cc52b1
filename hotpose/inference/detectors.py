"""2D pose detectors behind one small interface, video reading, and a detection CLI (numpy + OpenCV only).

A detector is any callable ``detector(rgb (h, w, 3) uint8) -> Detection | None`` with a ``layout``
attribute (``"blazepose"``, ``"coco"`` or ``"h36m"``, see :mod:`hotpose.inference.keypoints`) and a
``close()`` method; None means nobody was found in that frame. :class:`MediaPipePose` is the bundled
one: MediaPipe's legacy Pose solution (BlazePose, 33 landmarks), whose ``model_complexity=1`` model
ships inside the ``mediapipe`` 0.10.14 / 0.10.21 wheels, so it runs with no network. It tracks one
person.

No torch here: the module also runs as a CLI in a separate "detector" environment (mediapipe needs
``protobuf<5``, which the training stack's wandb does not accept)::

    python -m hotpose.inference.detectors VIDEO OUT.npz [--max-frames N]

writes the raw landmarks (``layout``, ``width``, ``height``, ``fps``, ``detected``, timings) for
``python -m hotpose.infer input=OUT.npz``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from hotpose.inference.keypoints import LAYOUT_JOINTS, KeypointTrack, save_keypoints, to_h36m


class Detection(NamedTuple):
    """One person in one frame: ``points (J, 2)`` pixels, ``scores (J,)`` in [0, 1]."""

    points: np.ndarray
    scores: np.ndarray


class PoseDetector(Protocol):
    """What :func:`detect_video` needs from a detector."""

    layout: str

    def __call__(self, rgb: np.ndarray) -> Detection | None: ...

    def close(self) -> None: ...


class DetectorUnavailable(RuntimeError):
    """The detector's package is missing or unusable here (the message says how to get it)."""


MEDIAPIPE_HINT = (
    "MediaPipe Pose needs the 'mediapipe' package (0.10.14 or 0.10.21: later versions no longer ship the "
    "pose model) and OpenCV. It cannot share an environment with wandb >= 0.28.1 (protobuf < 5 versus >= 5): "
    "install the project's 'mediapipe' extra (pip resolves wandb down to 0.28.0), or run "
    "'python -m hotpose.inference.detectors VIDEO OUT.npz' in a detector environment and give OUT.npz to "
    "hotpose.infer (see docs/inference.md)."
)


class MediaPipePose:
    """MediaPipe's legacy Pose solution (BlazePose-33, full model, bundled in the wheel).

    Args:
        min_detection_confidence, min_tracking_confidence: MediaPipe's thresholds.
        smooth: MediaPipe's temporal landmark smoothing (video mode).
    """

    layout = "blazepose"

    def __init__(self, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 smooth: bool = True) -> None:
        try:
            from mediapipe.python.solutions import pose as mp_pose
        except ImportError as error:
            raise DetectorUnavailable(f"{MEDIAPIPE_HINT} (import failed: {error})") from None
        # model_complexity 1 is the only pose model inside the wheel; 0 and 2 are downloaded at run time.
        self._pose = mp_pose.Pose(static_image_mode=False, model_complexity=1, smooth_landmarks=smooth,
                                  enable_segmentation=False,
                                  min_detection_confidence=min_detection_confidence,
                                  min_tracking_confidence=min_tracking_confidence)

    def __call__(self, rgb: np.ndarray) -> Detection | None:
        h, w = rgb.shape[:2]
        result = self._pose.process(rgb)
        if result.pose_landmarks is None:
            return None
        marks = result.pose_landmarks.landmark
        points = np.array([[m.x * w, m.y * h] for m in marks], dtype=np.float32)
        scores = np.array([m.visibility for m in marks], dtype=np.float32)
        return Detection(points, scores)

    def close(self) -> None:
        self._pose.close()


def build_detector(name: str, **options: float | bool) -> PoseDetector:
    """A detector by name (``mediapipe``) or by ``module:factory`` (your own :class:`PoseDetector`, called
    with ``options``); raises :class:`DetectorUnavailable` when it cannot run here."""
    if name == "mediapipe":
        return MediaPipePose(**options)
    if ":" in name:
        import importlib

        module, _, attribute = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as error:
            raise ValueError(f"detector {name!r} cannot be imported: {error}") from None
        return factory(**options)
    raise ValueError(f"unknown detector {name!r}; available: mediapipe, or module:factory of your own PoseDetector")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video."""

    width: int
    height: int
    fps: float | None
    frames: int | None


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DetectorUnavailable("reading a video needs OpenCV: pip install opencv-python-headless") from None
    return cv2


def open_video(path: str | Path) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """The video's :class:`VideoInfo` and an iterator over its frames as RGB ``(h, w, 3)`` uint8.

    Raises ValueError when the file is missing or OpenCV cannot decode a first frame from it.
    """
    cv2 = _cv2()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video {str(path)!r} does not exist")
    capture = cv2.VideoCapture(str(path))
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok or first is None:
        capture.release()
        raise ValueError(f"video {str(path)!r} cannot be read (not a video, or a codec OpenCV lacks)")
    fps = float(capture.get(cv2.CAP_PROP_FPS)) or None
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    info = VideoInfo(width=first.shape[1], height=first.shape[0], fps=fps, frames=count)

    return info, _rgb_frames(capture, first)


def _rgb_frames(capture: Any, first: np.ndarray) -> Iterator[np.ndarray]:
    """RGB frames of an opened OpenCV ``capture`` whose first frame was ``first`` (read to check it opens);
    releases the capture when the frames run out or the caller stops."""
    cv2 = _cv2()
    try:
        frame = first
        while frame is not None:
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            ok, frame = capture.read()
            if not ok:
                frame = None
    finally:
        capture.release()


def open_camera(index: int) -> tuple[VideoInfo, Iterator[np.ndarray]]:
    """A camera (OpenCV device ``index``) as :func:`open_video` gives a file: its info and RGB frames,
    until the camera stops delivering."""
    cv2 = _cv2()
    capture = cv2.VideoCapture(int(index))
    ok, first = capture.read() if capture.isOpened() else (False, None)
    if not ok or first is None:
        capture.release()
        raise ValueError(f"camera {index} cannot be opened or gives no picture (input=N is an OpenCV camera index)")
    info = VideoInfo(width=first.shape[1], height=first.shape[0],
                     fps=float(capture.get(cv2.CAP_PROP_FPS)) or None, frames=None)

    return info, _rgb_frames(capture, first)


@dataclass
class VideoDetections:
    """Raw detector output over a video, in the detector's own layout.

    ``points (t, J, 2)`` pixels and ``scores (t, J)``, NaN on frames without a detection;
    ``detected (t,)``; timings in seconds (decoding and the detector calls, measured apart).
    """

    points: np.ndarray
    scores: np.ndarray
    detected: np.ndarray
    layout: str
    info: VideoInfo
    decode_seconds: float
    detect_seconds: float

    def to_track(self, neck_nose: str = "nose") -> KeypointTrack:
        """The H36M-17 :class:`KeypointTrack` (missing frames stay NaN, flagged in ``detected``)."""
        points, scores = to_h36m(self.points, self.scores, self.layout, neck_nose=neck_nose)
        return KeypointTrack(points, scores, self.detected.copy(), self.info.width, self.info.height,
                             self.info.fps, self.layout)

    def save(self, path: str | Path) -> Path:
        """A keypoint npz :func:`hotpose.inference.keypoints.load_keypoints` reads (plus the timings)."""
        path = save_keypoints(path, self.points, self.scores, self.info.width, self.info.height, self.layout,
                              self.detected, self.info.fps)
        with np.load(path) as data:
            fields = dict(data)
        np.savez(path, **fields, decode_seconds=self.decode_seconds, detect_seconds=self.detect_seconds)
        return path


def detect_video(path: str | Path, detector: PoseDetector, max_frames: int | None = None,
                 frames: list[np.ndarray] | None = None) -> VideoDetections:
    """Run ``detector`` on every frame of the video (the first ``max_frames``).

    ``frames``, when given a list, receives the decoded RGB frames (for rendering afterwards).
    """
    joints = LAYOUT_JOINTS.get(detector.layout)
    if joints is None:
        raise ValueError(f"detector layout {detector.layout!r} is not one of {list(LAYOUT_JOINTS)}")
    info, stream = open_video(path)
    points, scores, detected = [], [], []
    decode = detect = 0.0
    missing_points = np.full((joints, 2), np.nan, dtype=np.float32)
    missing_scores = np.full((joints,), np.nan, dtype=np.float32)
    tick = time.perf_counter()
    for rgb in stream:
        now = time.perf_counter()
        decode += now - tick
        found = detector(rgb)
        tick = time.perf_counter()
        detect += tick - now
        if frames is not None:
            frames.append(rgb)
        if found is None:
            points.append(missing_points)
            scores.append(missing_scores)
            detected.append(False)
        else:
            p, s = np.asarray(found.points, dtype=np.float32), np.asarray(found.scores, dtype=np.float32)
            if p.shape != (joints, 2) or s.shape != (joints,):
                raise ValueError(f"detector returned points {p.shape} and scores {s.shape}; its layout "
                                 f"{detector.layout!r} needs ({joints}, 2) and ({joints},)")
            points.append(p)
            scores.append(s)
            detected.append(True)
        if max_frames is not None and len(points) >= max_frames:
            break
    return VideoDetections(np.stack(points), np.stack(scores), np.array(detected, dtype=bool), detector.layout,
                           info, decode, detect)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="2D pose detection on a video → keypoint npz (raw layout)")
    parser.add_argument("video")
    parser.add_argument("output")
    parser.add_argument("--detector", default="mediapipe")
    parser.add_argument("--max-frames", type=int, default=None)
    args = parser.parse_args(argv)
    detector = build_detector(args.detector)
    try:
        result = detect_video(args.video, detector, max_frames=args.max_frames)
    finally:
        detector.close()
    out = result.save(args.output)
    n = len(result.detected)
    print(f"{n} frames, {int(result.detected.sum())} with a detection; detection "
          f"{n / max(result.detect_seconds, 1e-9):.1f} fps, decoding {n / max(result.decode_seconds, 1e-9):.1f} "
          f"fps -> {out}")


if __name__ == "__main__":
    main()
