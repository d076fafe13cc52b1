"""``python -m hotpose.infer input=VIDEO|KEYPOINTS ckpt=PATH``: 3D poses from a video or a 2D keypoint file.

Writes to ``output_dir`` (the Hydra run folder by default):

- ``poses_3d.npz`` — ``poses_3d (t, 17, 3)`` metres, camera frame, root-relative (root = 0), one per input
  frame; ``keypoints_2d (t, 17, 2)`` pixels given to the model, ``scores``, ``detected (t,)``,
  ``filled (t, 17)``, image size, fps, joint names and parents, the checkpoint and model description;
- ``poses.mp4`` (or ``.gif``) — the 2D overlay beside the 3D skeleton, and ``contact_sheet.png``;
- ``detections.npz`` (video inputs) — the detector's raw keypoints; ``summary.json`` — counts and speeds.

See ``docs/inference.md`` for the keypoint file format and the joint mappings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

import hotpose.cli_help  # noqa: F401  (registers the resolver of the --help text)
from hotpose.data.skeleton import JOINT_NAMES, PARENTS
from hotpose.errors import check_required, user_errors_exit, writable_folder
from hotpose.host_memory import keep_freed_memory
from hotpose.inference.checkpoint import LoadedModel
from hotpose.inference.keypoints import KeypointTrack, load_keypoints
from hotpose.inference.lifter import Lifter
from hotpose.inference.lifting import LiftResult
from hotpose.progress import track as track_progress

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
KEYPOINT_SUFFIXES = (".npz", ".npy", ".json")
DEFAULT_FPS = 25.0

log = logging.getLogger(__name__)


def input_kind(path: str | Path) -> str:
    """``video`` or ``keypoints`` by file suffix; ValueError for anything else or a missing file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"input {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in KEYPOINT_SUFFIXES:
        return "keypoints"
    raise ValueError(f"input {path}: unknown type {suffix!r}; videos {VIDEO_SUFFIXES}, "
                     f"keypoint files {KEYPOINT_SUFFIXES}")


def detect_in_subprocess(python: str, video: Path, output: Path, cfg: DictConfig) -> Path:
    """Run the detector CLI with another interpreter (a detector environment) → keypoint npz."""
    if shutil.which(os.path.expanduser(python)) is None:
        raise ValueError(f"detector.python={python!r}: no such interpreter (give the python of an environment "
                         "with the detector, e.g. /path/to/venv/bin/python)")
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    command = [os.path.expanduser(python), "-m", "hotpose.inference.detectors", str(video), str(output),
               "--detector", str(cfg.detector.name)]
    if cfg.detector.get("max_frames"):
        command += ["--max-frames", str(int(cfg.detector.max_frames))]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"detector command {' '.join(command)} failed:\n{done.stderr[-2000:]}")
    print(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "detector done")
    return output


def warn_frame_count(video: Path, container: int | None, decoded: int, limit: int | None) -> None:
    """Say so when the decoder stopped short of the frame count the container declares (a damaged file)."""
    expected = min(container, int(limit)) if container and limit else container
    if expected and decoded < expected:
        log.warning("%s: the container declares %d frames but only %d could be decoded (a truncated or damaged "
                    "file?); the outputs cover the %d decoded frames", video, container, decoded, decoded)


def detect(cfg: DictConfig, video: Path, out_dir: Path) -> tuple[KeypointTrack, dict[str, float]]:
    """2D keypoints of a video, in this process or in ``detector.python``; also the detection timings."""
    raw = out_dir / "detections.npz"
    if cfg.detector.get("python"):
        detect_in_subprocess(str(cfg.detector.python), video, raw, cfg)
    else:
        from hotpose.inference.detectors import build_detector, detect_video, open_video

        _, frames = open_video(video)  # a corrupt, text or empty file fails here, before the detector starts
        frames.close()
        detector = build_detector(str(cfg.detector.name),
                                  min_detection_confidence=float(cfg.detector.min_detection_confidence),
                                  min_tracking_confidence=float(cfg.detector.min_tracking_confidence))
        try:
            detections = detect_video(video, detector, max_frames=cfg.detector.get("max_frames"))
        finally:
            detector.close()
        detections.save(raw)
        warn_frame_count(video, detections.info.frames, len(detections.points), cfg.detector.get("max_frames"))
    with np.load(raw) as data:
        timings = {k: float(data[k]) for k in ("decode_seconds", "detect_seconds") if k in data.files}
    track = load_keypoints(raw, neck_nose=str(cfg.neck_nose))
    return track, timings


def save_result(path: Path, result: LiftResult, track: KeypointTrack, fps: float, model: LoadedModel) -> Path:
    """The output npz (see the module docstring)."""
    fields: dict[str, Any] = {
        "poses_3d": result.poses_3d, "keypoints_2d": result.keypoints_2d, "detected": result.detected,
        "filled": result.filled, "width": track.width, "height": track.height, "fps": fps,
        "joint_names": np.array(JOINT_NAMES), "parents": np.array(PARENTS),
        "source_layout": track.source_layout, "checkpoint": str(model.path), "model": model.describe(),
        "units": "metres; camera frame (x right, y down, z forward); root-relative, root joint = 0",
    }
    if result.scores is not None:
        fields["scores"] = result.scores
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **fields)
    return path


def _frames_for_render(video: Path | None, limit: int):
    """Decoded RGB frames of ``video`` (None forever when there is none or it cannot be read here)."""
    if video is not None:
        try:
            from hotpose.inference.detectors import open_video

            _, stream = open_video(video)
            for i, frame in enumerate(stream):
                if i >= limit:
                    return
                yield frame
            return
        except Exception as error:  # rendering on a blank canvas still shows the result
            print(f"note: drawing on a blank canvas, the video cannot be read here ({error})")
    while True:
        yield None


def render_outputs(cfg: DictConfig, result: LiftResult, track: KeypointTrack, video: Path | None,
                   out_dir: Path, fps: float) -> dict[str, Any]:
    """Animation and contact sheet; returns their paths and the rendering speed."""
    from hotpose.inference.render import SideBySideRenderer, contact_sheet, sheet_frames, write_animation

    kind = cfg.render.get("animation")
    t = len(result.poses_3d)
    limit = min(t, int(cfg.render.max_frames)) if cfg.render.get("max_frames") else t
    wanted = set(sheet_frames(t, int(cfg.render.sheet))) if cfg.render.sheet else set()
    if not kind:
        limit = max(wanted, default=-1) + 1
    renderer = SideBySideRenderer(track.width, track.height, size=float(cfg.render.size), dpi=int(cfg.render.dpi))
    sheet: list[np.ndarray] = []
    start = time.perf_counter()

    def pictures():
        frames = zip(range(limit), _frames_for_render(video, limit))
        for i, image in track_progress(frames, f"rendering {limit} frames", total=limit):
            picture = renderer.render(result.keypoints_2d[i], result.poses_3d[i], image,
                                      detected=bool(result.detected[i]), title=f"frame {i}",
                                      follow=bool(cfg.render.get("follow", False)))
            if i in wanted:
                sheet.append(picture)
            yield picture

    outputs: dict[str, Any] = {}
    if kind:
        outputs["animation"] = str(write_animation(pictures(), out_dir / f"poses.{kind}", fps))
    else:
        for _ in pictures():
            pass
    if sheet:
        outputs["contact_sheet"] = str(contact_sheet(sheet, out_dir / "contact_sheet.png",
                                                     int(cfg.render.sheet_columns)))
    outputs["render_fps"] = limit / max(time.perf_counter() - start, 1e-9)
    return outputs


def lifter_from_config(cfg: DictConfig) -> Lifter:
    """The :class:`~hotpose.inference.lifter.Lifter` of ``ckpt``, ``device``, ``precision``, ``backend`` and
    ``lifting.*``."""
    lifting = cfg.lifting
    return Lifter.from_checkpoint(str(cfg.ckpt), device=str(cfg.device), precision=str(cfg.get("precision", "float32")),
                                  flip=bool(lifting.flip), batch_size=int(lifting.batch_size),
                                  stride=lifting.get("stride"), use_scores=bool(lifting.use_scores),
                                  plan=str(lifting.get("plan", "tiled")), delay=lifting.get("delay"),
                                  backend=str(cfg.get("backend", "torch")))


def run_inference(cfg: DictConfig) -> dict[str, Any]:
    """The whole pipeline for one input; returns the summary also written to ``summary.json``."""
    keep_freed_memory()  # reuse freed activation memory (hotpose/host_memory.py)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    source = Path(str(cfg.input))
    kind = input_kind(source)
    out_dir = writable_folder(Path(str(cfg.output_dir)), "output_dir")
    lifter = lifter_from_config(cfg)  # before detection: a bad checkpoint fails fast
    model = lifter.model
    print(f"model: {lifter.describe()}")
    timings: dict[str, float] = {}
    if kind == "video":
        track, timings = detect(cfg, source, out_dir)
        video: Path | None = source
    else:
        track = load_keypoints(source, layout=cfg.get("layout"), width=cfg.get("width"),
                               height=cfg.get("height"), person=int(cfg.person), neck_nose=str(cfg.neck_nose))
        video = Path(str(cfg.video)) if cfg.get("video") else None
    fps = float(cfg.fps or track.fps or DEFAULT_FPS)
    torch.manual_seed(int(cfg.seed))
    result = lifter.lift_track(track)
    npz = save_result(out_dir / "poses_3d.npz", result, track, fps, model)
    t = len(result.poses_3d)
    summary: dict[str, Any] = {
        "input": str(source), "checkpoint": str(cfg.ckpt), "model": model.describe(), "frames": t,
        "detected_frames": int(result.detected.sum()), "windows": result.windows, "passes": result.passes,
        "lifting_fps": result.fps, "precision": lifter.precision, "poses_3d": str(npz),
    }
    if "detect_seconds" in timings:
        summary["detection_fps"] = t / max(timings["detect_seconds"], 1e-9)
        summary["decode_fps"] = t / max(timings.get("decode_seconds", 0.0), 1e-9)
    if cfg.render.get("animation") or cfg.render.get("sheet"):
        summary.update(render_outputs(cfg, result, track, video, out_dir, fps))
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    speeds = ", ".join(f"{k.replace('_fps', '')} {summary[k]:.1f} fps"
                       for k in ("detection_fps", "lifting_fps", "render_fps") if k in summary)
    print(f"{t} frames ({summary['detected_frames']} detected); {speeds}; outputs in {out_dir}")
    return summary


@hydra.main(version_base="1.3", config_path="../configs", config_name="infer")
def main(cfg: DictConfig) -> None:
    from hotpose.inference.detectors import DetectorUnavailable

    with user_errors_exit(ValueError, DetectorUnavailable):  # bad input: one clear line, exit 2
        check_required(cfg)
        run_inference(cfg)


if __name__ == "__main__":
    main()
