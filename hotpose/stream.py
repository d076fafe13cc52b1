"""``python -m hotpose.stream input=0|clip.mp4|keypoints.npz ckpt=PATH delay=centre|K``: live 3D poses.

Frames are read one at a time: a camera (``input=N``, an OpenCV device index) or a video through the 2D
detector (in this process, or in one long-lived worker of ``detector.python``:
:mod:`hotpose.inference.detector_worker`), or the frames of a keypoint file. Each frame's keypoints go to a
:class:`~hotpose.inference.stream.PoseStream`; every pose it gives back is

- shown in a window (the 2D overlay beside the 3D skeleton) when a display exists (``display=auto``),
- printed as one JSON line on stdout with ``json_lines=true`` (the human-readable lines then go to stderr),
- kept for ``poses_3d.npz`` and ``summary.json`` in ``output_dir``, written at the end (also on Ctrl-C).

``realtime=true`` plays a file at its frame rate, as a camera would deliver it.

Timings: *latency* is the wall time from reading a frame to its pose (it includes waiting for the
``delay`` future frames, so at a camera's rate it is at least ``delay / fps``); *lifting* and *detection*
are the model and detector time per frame; *throughput* is frames per second of the whole loop.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from hotpose.data.skeleton import JOINT_NAMES, PARENTS
from hotpose.host_memory import keep_freed_memory
from hotpose.infer import DEFAULT_FPS, input_kind
from hotpose.inference.keypoints import load_keypoints
from hotpose.inference.lifter import Lifter
from hotpose.inference.stream import PoseStream, StreamPose


@dataclass
class Source:
    """Frames to stream: ``frames`` yields ``(rgb or None, keypoints (J, 2|3) or None, scores or None)``."""

    kind: str
    width: int
    height: int
    fps: float | None
    layout: str
    frames: Iterator[tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]]
    detector: Any = None
    detect_seconds: list[float] = field(default_factory=list)

    def close(self) -> None:
        if self.detector is not None:
            self.detector.close()


def camera_index(text: Any) -> int | None:
    """The camera index of ``input`` (an int or a string of digits), else None."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    return int(text) if isinstance(text, str) and text.isdigit() else None


def make_detector(cfg: DictConfig):
    """The configured detector: a long-lived worker of ``detector.python``, or one in this process."""
    options = {"min_detection_confidence": float(cfg.detector.min_detection_confidence),
               "min_tracking_confidence": float(cfg.detector.min_tracking_confidence)}
    name = str(cfg.detector.name)
    if name != "mediapipe":
        options = dict(cfg.detector.get("options") or {})
    if cfg.detector.get("python"):
        from hotpose.inference.detector_worker import DetectorWorker

        return DetectorWorker(str(cfg.detector.python), name, **options)
    from hotpose.inference.detectors import build_detector

    return build_detector(name, **options)


def paced(frames: Iterator, fps: float | None) -> Iterator:
    """``frames`` delivered no faster than ``fps`` (a file played as if it were a camera); as is without fps."""
    start = time.perf_counter()
    for t, item in enumerate(frames):
        if fps:
            wait = start + t / fps - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        yield item


def open_source(cfg: DictConfig) -> Source:
    """The frames of ``cfg.input`` (module docstring); ValueError for a bad input."""
    index = camera_index(cfg.input)
    kind = "camera" if index is not None else input_kind(str(cfg.input))

    def pace(fps: float | None) -> float | None:
        return float(fps or DEFAULT_FPS) if cfg.get("realtime") and kind != "camera" else None

    if kind == "keypoints":
        track = load_keypoints(str(cfg.input), layout=cfg.get("layout"), width=cfg.get("width"),
                               height=cfg.get("height"), person=int(cfg.person), neck_nose=str(cfg.neck_nose))
        scores = track.scores

        def from_file():
            for t in paced(range(len(track)), pace(track.fps)):
                points = None if not np.isfinite(track.points[t]).any() else track.points[t]
                yield None, points, None if scores is None or points is None else scores[t]

        return Source(kind, track.width, track.height, track.fps, "h36m", from_file())
    from hotpose.inference.detectors import open_camera, open_video

    info, frames = open_camera(index) if kind == "camera" else open_video(str(cfg.input))
    detector = make_detector(cfg)
    source = Source(kind, info.width, info.height, info.fps, detector.layout, iter(()), detector)
    limit = cfg.get("max_frames")

    def detected():
        for t, rgb in enumerate(paced(frames, pace(info.fps))):
            if limit is not None and t >= int(limit):
                return
            tick = time.perf_counter()
            found = detector(rgb)
            source.detect_seconds.append(time.perf_counter() - tick)
            yield rgb, None if found is None else found.points, None if found is None else found.scores

    source.frames = detected()
    return source


class LiveWindow:
    """An OpenCV window of the 2D overlay beside the 3D skeleton; ``show`` returns False once the user
    pressed q or Esc."""

    def __init__(self, width: int, height: int, title: str = "hotpose.stream") -> None:
        import cv2

        from hotpose.inference.render import SideBySideRenderer

        self.cv2, self.title = cv2, title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)  # raises cv2.error without a GUI backend / display
        self.renderer = SideBySideRenderer(width, height, size=3.0, dpi=80)

    def show(self, pose: StreamPose, rgb: np.ndarray | None, latency_ms: float) -> bool:
        picture = self.renderer.render(pose.keypoints_2d, pose.pose, rgb, pose.detected,
                                       title=f"frame {pose.frame}  latency {latency_ms:.0f} ms")
        self.cv2.imshow(self.title, self.cv2.cvtColor(picture, self.cv2.COLOR_RGB2BGR))
        return (self.cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        self.cv2.destroyWindow(self.title)


def open_window(setting: Any, width: int, height: int, log: TextIO) -> LiveWindow | None:
    """A :class:`LiveWindow` when ``display`` is true, or ``auto`` and a display exists; else None."""
    if setting is False or str(setting).lower() in ("false", "off", "none"):
        return None
    has_display = sys.platform in ("win32", "darwin") or bool(os.environ.get("DISPLAY")
                                                               or os.environ.get("WAYLAND_DISPLAY"))
    if str(setting).lower() == "auto" and not has_display:
        return None
    try:
        return LiveWindow(width, height)
    except Exception as error:  # cv2 headless builds have no GUI: run headless rather than fail
        print(f"note: no live window ({type(error).__name__}: {str(error).splitlines()[0][:120]}); headless",
              file=log)
        return None


def percentiles(values: list[float]) -> dict[str, float]:
    """Median and 95th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return {"median": float("nan"), "p95": float("nan")}
    array = np.sort(np.asarray(values, dtype=np.float64))
    return {"median": float(np.median(array)), "p95": float(array[int(np.ceil(0.95 * len(array))) - 1])}


def json_line(pose: StreamPose, latency_ms: float) -> str:
    """One emitted pose as a JSON object (NaN → null)."""
    values = np.where(np.isfinite(pose.pose), pose.pose, np.nan).round(5)
    return json.dumps({"frame": pose.frame, "pose_3d": [[None if np.isnan(v) else float(v) for v in joint]
                                                        for joint in values],
                       "detected": pose.detected, "filled": np.flatnonzero(pose.filled).tolist(),
                       "lag_frames": pose.lag, "latency_ms": round(latency_ms, 2)})


def run_stream(cfg: DictConfig, out: TextIO = sys.stdout) -> dict[str, Any]:
    """The whole loop for one input; returns the summary also written to ``summary.json``."""
    keep_freed_memory()  # reuse freed activation memory (hotpose/host_memory.py)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    log = sys.stderr if cfg.json_lines else out
    out_dir = Path(str(cfg.output_dir))
    lifter = Lifter.from_checkpoint(str(cfg.ckpt), device=str(cfg.device), precision=str(cfg.precision),
                                    flip=bool(cfg.flip), use_scores=bool(cfg.use_scores),
                                    backend=str(cfg.get("backend", "torch")))
    print(f"model: {lifter.describe()}", file=log)
    source = open_source(cfg)
    try:
        stream = PoseStream(lifter, (source.width, source.height), delay=cfg.delay, stride=int(cfg.stride),
                            layout=source.layout, neck_nose=str(cfg.neck_nose))
        print(f"{source.kind} {source.width}x{source.height}; delay {stream.delay} frames, stride {stream.stride}, "
              f"{stream.frames}-frame {stream.pipeline} model", file=log)
        window = open_window(cfg.display, source.width, source.height, log)
        results = _loop(cfg, source, stream, window, out, log)
    finally:
        source.close()
    return _finish(cfg, results, source, stream, lifter, out_dir, log)


def _loop(cfg: DictConfig, source: Source, stream: PoseStream, window: LiveWindow | None, out: TextIO,
          log: TextIO) -> dict[str, Any]:
    arrivals: dict[int, float] = {}
    images: dict[int, np.ndarray | None] = {}
    emitted: list[StreamPose] = []
    latency_ms: list[float] = []
    lift_ms: list[float] = []
    every = int(cfg.print_every or 0)
    start = time.perf_counter()
    stopped = False

    def handle(poses: list[StreamPose]) -> bool:
        now = time.perf_counter()
        keep_going = True
        for pose in poses:
            latency = (now - arrivals.pop(pose.frame)) * 1e3
            emitted.append(pose)
            latency_ms.append(latency)
            image = images.pop(pose.frame, None)
            if cfg.json_lines:
                print(json_line(pose, latency), file=out, flush=True)
            if window is not None:
                keep_going &= window.show(pose, image, latency)
            if every and pose.frame % every == 0:
                fps = len(emitted) / max(now - start, 1e-9)
                print(f"frame {pose.frame}: latency {latency:.1f} ms ({pose.lag} frames), {fps:.1f} frames/s",
                      file=log, flush=True)
        return keep_going

    try:
        for frame, (rgb, keypoints, scores) in enumerate(source.frames):
            arrivals[frame] = time.perf_counter() if not source.detect_seconds else \
                time.perf_counter() - source.detect_seconds[-1]  # read before detection
            if window is not None:
                images[frame] = rgb
            tick = time.perf_counter()
            poses = stream.push(keypoints, scores)
            lift_ms.append((time.perf_counter() - tick) * 1e3)
            if not handle(poses):
                stopped = True
                break
    except KeyboardInterrupt:
        stopped = True
        print("interrupted: writing what was lifted", file=log)
    tick = time.perf_counter()
    rest = stream.flush()
    flush_ms = (time.perf_counter() - tick) * 1e3
    handle(rest)
    if window is not None:
        window.close()
    return {"emitted": emitted, "latency_ms": latency_ms, "lift_ms": lift_ms, "flush_ms": flush_ms,
            "seconds": time.perf_counter() - start, "stopped": stopped}


def _finish(cfg: DictConfig, results: dict[str, Any], source: Source, stream: PoseStream, lifter: Lifter,
            out_dir: Path, log: TextIO) -> dict[str, Any]:
    emitted: list[StreamPose] = results["emitted"]
    t = len(emitted)
    if t == 0:
        raise ValueError(f"input {cfg.input}: no frame was read")
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = float(cfg.get("fps") or source.fps or DEFAULT_FPS)
    npz = out_dir / "poses_3d.npz"
    np.savez(npz, poses_3d=np.stack([p.pose for p in emitted]),
             keypoints_2d=np.stack([p.keypoints_2d for p in emitted]).astype(np.float32),
             detected=np.array([p.detected for p in emitted]), filled=np.stack([p.filled for p in emitted]),
             lag_frames=np.array([p.lag for p in emitted]), latency_ms=np.array(results["latency_ms"]),
             width=source.width, height=source.height, fps=fps, delay=stream.delay, stride=stream.stride,
             joint_names=np.array(JOINT_NAMES), parents=np.array(PARENTS), source_layout=source.layout,
             checkpoint=str(cfg.ckpt), model=lifter.describe(),
             units="metres; camera frame (x right, y down, z forward); root-relative, root joint = 0")
    latency, lift = percentiles(results["latency_ms"]), percentiles(results["lift_ms"])
    detect = percentiles([s * 1e3 for s in source.detect_seconds])
    summary: dict[str, Any] = {
        "input": str(cfg.input), "kind": source.kind, "checkpoint": str(cfg.ckpt), "model": lifter.describe(),
        "frames": t, "detected_frames": int(sum(p.detected for p in emitted)), "delay_frames": stream.delay,
        "stride": stream.stride, "windows": stream.windows, "stopped_early": results["stopped"],
        "latency_ms": latency, "lifting_ms_per_frame": lift, "flush_ms": results["flush_ms"],
        "detection_ms_per_frame": detect, "throughput_fps": t / max(results["seconds"], 1e-9),
        "lifting_fps": stream.fps, "poses_3d": str(npz),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    detection = (f"; detection median {detect['median']:.1f} ms, p95 {detect['p95']:.1f} ms"
                 if source.detect_seconds else "")
    print(f"{t} frames ({summary['detected_frames']} detected); latency median {latency['median']:.1f} ms, "
          f"p95 {latency['p95']:.1f} ms; lifting median {lift['median']:.1f} ms, p95 {lift['p95']:.1f} ms per "
          f"frame{detection}; throughput {summary['throughput_fps']:.1f} frames/s; outputs in {out_dir}", file=log)
    return summary


@hydra.main(version_base="1.3", config_path="../configs", config_name="stream")
def main(cfg: DictConfig) -> None:
    try:
        run_stream(cfg)
    except (ValueError, RuntimeError) as error:  # bad input, a detector that cannot run: one clear line
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
