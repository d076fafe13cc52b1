"""Live lifting speed: per-frame latency and frames per second of PoseStream, and the detector apart.

``python -m hotpose.bench stream [--models quickstart,"HoT w. MixSTE",MixSTE] [--threads 1,2]
[--strides 1,max] [--delay 0] [--windows 4] [--no-flip] [--detector-python PY] [--video CLIP] [--json OUT]
[--quick]``

Method: each model (random weights: speed does not depend on them; ``quickstart`` is the CPU preset's
27-frame HoT-MixSTE, the others the paper sizes, 243 frames) gets a smooth random 2D track pushed one
frame at a time into a :class:`~hotpose.inference.stream.PoseStream` (flip TTA on, ``--delay`` frames of
look-ahead), for every thread count and stride, all in one run. The first model run is warm-up; then
``--windows`` model runs are timed. Every ``push`` is timed; a frame's *latency* is the duration of the
push that emitted it (the compute the user waits for once the frame's look-ahead has arrived; the look-ahead
itself adds ``delay / camera fps``), reported as median and 95th percentile over the timed frames.
*frames/s* is timed frames over the summed push time. With ``stride=max`` (``(F - 1) // 2 + 1``) a seq2seq
model runs one window per ``stride`` frames, so the frames of a window share its latency and throughput
grows by ``stride``.

The detector is timed apart (per frame, median and p95): the cost of handing a frame to the long-lived
worker process (a detector that finds nobody, at the ``--video``'s size or 1280x720), and MediaPipe
itself when ``--detector-python`` names an interpreter that has it (or it is importable here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from hotpose.benchmarks.complexity import PAPER_MODELS, build_from_overrides, quick_overrides
from hotpose.inference.checkpoint import LoadedModel
from hotpose.inference.detectors import Detection
from hotpose.inference.lifter import Lifter
from hotpose.inference.stream import PoseStream

QUICKSTART = "quickstart"
DEFAULT_MODELS = (QUICKSTART, "HoT w. MixSTE", "MixSTE")
WIDTH, HEIGHT = 1280, 720


class NullDetector:
    """Finds nobody, instantly: timing it in a worker measures the frame hand-over alone."""

    layout = "h36m"

    def __call__(self, rgb: np.ndarray) -> Detection | None:
        return None

    def close(self) -> None:
        pass


def model_overrides(name: str, quick: bool) -> list[str]:
    if name == QUICKSTART:
        return ["experiment=quickstart"]
    if name not in PAPER_MODELS:
        raise SystemExit(f"unknown model {name!r}; choose from {QUICKSTART}, {', '.join(PAPER_MODELS)}")
    overrides = list(PAPER_MODELS[name].overrides)
    return overrides + (quick_overrides(PAPER_MODELS[name].backbone) if quick else [])


def build(name: str, quick: bool) -> LoadedModel:
    overrides = model_overrides(name, quick)
    net = build_from_overrides(overrides).eval()
    pipeline = next(o.split("=", 1)[1] for o in [*overrides, "pipeline=seq2seq"] if o.startswith("pipeline="))
    return LoadedModel(net, {"backbone": {"name": name}}, pipeline, None, Path("<random weights>"))


def random_track(frames: int, seed: int = 0) -> np.ndarray:
    """A smooth random 2D track ``(frames, 17, 2)`` in pixels of a WIDTH x HEIGHT image."""
    rng = np.random.default_rng(seed)
    pose = rng.uniform(-80, 80, (17, 2))
    drift = np.cumsum(rng.normal(0, 1.5, (frames, 17, 2)), axis=0)
    return (pose + drift + [WIDTH / 2, HEIGHT / 2]).astype(np.float32)


@dataclass
class StreamRow:
    model: str
    frames: int
    pipeline: str
    threads: int
    stride: int
    delay: int
    timed_frames: int
    windows: int
    latency_median_ms: float
    latency_p95_ms: float
    frames_per_second: float


def percentile(values: np.ndarray, q: float) -> float:
    """Nearest-rank percentile ``q`` in [0, 100] of ``values``."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    return float(ordered[max(int(np.ceil(q / 100 * len(ordered))) - 1, 0)])


def time_stream(name: str, model: LoadedModel, threads: int, stride: int, delay: int, windows: int,
                flip: bool = True) -> StreamRow:
    """Push frames until ``windows`` timed model runs are done (after one untimed run)."""
    torch.set_num_threads(threads)
    stream = PoseStream(Lifter(model, flip=flip), (WIDTH, HEIGHT), delay=delay, stride=stride, layout="h36m")
    groups = windows + 1
    track = random_track(delay + groups * stride)
    latencies: list[float] = []
    timed_seconds = 0.0
    warm = False
    runs_before = 0
    with torch.inference_mode():
        for points in track:
            start = time.perf_counter()
            emitted = stream.push(points)
            seconds = time.perf_counter() - start
            if warm:
                timed_seconds += seconds
                latencies += [seconds * 1e3] * len(emitted)
            elif emitted:
                warm, runs_before = True, stream.windows
    return StreamRow(name, stream.frames, stream.pipeline, threads, stride, delay, len(latencies),
                     stream.windows - runs_before, float(np.median(latencies)), percentile(np.array(latencies), 95),
                     len(latencies) / max(timed_seconds, 1e-9))


def strides_for(spec: str, model: LoadedModel) -> list[int]:
    half = (model.frames - 1) // 2
    out = []
    for item in spec.split(","):
        if item == "max":
            if model.pipeline == "seq2seq":
                out.append(half + 1)
        else:
            out.append(int(item))
    return sorted(set(out))


def time_detector(detector, frames: list[np.ndarray], warmup: int = 3) -> dict[str, float]:
    for rgb in frames[:warmup]:
        detector(rgb)
    seconds = []
    for rgb in frames[warmup:]:
        start = time.perf_counter()
        detector(rgb)
        seconds.append((time.perf_counter() - start) * 1e3)
    values = np.array(seconds)
    return {"median_ms": float(np.median(values)), "p95_ms": percentile(values, 95), "frames": len(values),
            "width": frames[0].shape[1], "height": frames[0].shape[0]}


def detector_frames(video: Path | None, count: int) -> list[np.ndarray]:
    if video is not None:
        from hotpose.inference.detectors import open_video

        _, stream = open_video(video)
        frames = [f for _, f in zip(range(count), stream, strict=False)]
        if frames:
            return frames
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def detector_rows(python: str | None, video: Path | None, count: int) -> dict[str, dict[str, float] | str]:
    from hotpose.inference.detector_worker import DetectorWorker

    frames = detector_frames(video, count)
    rows: dict[str, dict[str, float] | str] = {}
    with DetectorWorker(sys.executable, "hotpose.benchmarks.stream:NullDetector") as worker:
        rows["frame hand-over to the worker"] = time_detector(worker, frames)
    if python:
        with DetectorWorker(python, "mediapipe") as worker:
            rows["MediaPipe Pose (worker)"] = time_detector(worker, frames)
    elif importlib.util.find_spec("mediapipe") is not None:
        from hotpose.inference.detectors import build_detector

        detector = build_detector("mediapipe")
        try:
            rows["MediaPipe Pose (in process)"] = time_detector(detector, frames)
        finally:
            detector.close()
    else:
        rows["MediaPipe Pose"] = ("not timed: mediapipe is not installed here and no --detector-python was given "
                                  "(docs/inference.md)")
    return rows


def format_table(rows: Sequence[StreamRow], detectors: dict[str, dict[str, float] | str]) -> str:
    lines = ["| model | frames | threads | stride | delay | latency median (ms) | latency p95 (ms) | frames/s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.model} | {r.frames} | {r.threads} | {r.stride} | {r.delay} | {r.latency_median_ms:.1f} "
                     f"| {r.latency_p95_ms:.1f} | {r.frames_per_second:.3g} |")
    lines += ["", "| detector | frame size | per frame median (ms) | p95 (ms) |", "|---|---|---|---|"]
    for name, row in detectors.items():
        if isinstance(row, str):
            lines.append(f"| {name} | | {row} | |")
        else:
            lines.append(f"| {name} | {row['width']}x{row['height']} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hotpose.bench stream", description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--strides", default="1,max", help="comma list; max = (F-1)//2+1 for seq2seq models")
    parser.add_argument("--delay", type=int, default=0)
    parser.add_argument("--windows", type=int, default=4, help="timed model runs per row")
    parser.add_argument("--no-flip", action="store_true")
    parser.add_argument("--detector-python", default=None)
    parser.add_argument("--video", type=Path, default=None, help="frames for the detector timing")
    parser.add_argument("--detector-frames", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny models: checks the machinery only")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    threads = [int(t) for t in args.threads.split(",")]
    previous = torch.get_num_threads()
    rows: list[StreamRow] = []
    try:
        for name in names:
            model = build(name, args.quick)
            for t in threads:
                for stride in strides_for(args.strides, model):
                    row = time_stream(name, model, t, stride, args.delay, args.windows, not args.no_flip)
                    rows.append(row)
                    print(f"{name}: {t} thread(s), stride {stride}: median {row.latency_median_ms:.1f} ms, "
                          f"p95 {row.latency_p95_ms:.1f} ms, {row.frames_per_second:.3g} frames/s", flush=True)
    finally:
        torch.set_num_threads(previous)
    detectors = detector_rows(args.detector_python, args.video, args.detector_frames)
    table = format_table(rows, detectors)
    if args.quick:
        table = "(--quick: tiny models, not the paper's sizes)\n" + table
    print(table)
    try:
        load = f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        load = "n/a"
    print(f"\nload average (1 min) at the end: {load}; flip TTA {'off' if args.no_flip else 'on'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in rows], "detectors": detectors}, indent=2))
    return 0
