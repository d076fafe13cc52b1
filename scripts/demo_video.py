"""Real video in, 3D poses out: fetch a public demo video, detect 2D with MediaPipe, lift, draw, time it.

    python scripts/demo_video.py [--ckpt CKPT] [--detector-python /path/to/detector-venv/bin/python]
                                 [--frame-png docs/demo_frame.png] [--paper-model-fps]
    python scripts/demo_video.py --fetch-only          # print the cached video's path

The video is not ours and is never committed: by default the Sports2D demo clip (BSD-3-Clause, 230 frames,
1768×994, two people) taken from the ``sports2d`` wheel (``pip download --no-deps``, the package is not
installed); ``--source opencv-doc`` takes ``vtest.avi`` from Debian's ``opencv-doc`` package instead.
Both are cached under ``--cache`` (default ``~/.cache/hotpose/demo``).

The checkpoint defaults to the newest ``outputs/quickstart/runs/*/checkpoints/last.ckpt``
(``python -m hotpose.train experiment=quickstart`` makes one in a few minutes; a tiny model trained on the
embedded mini data, so its 3D is rough). MediaPipe runs in this interpreter when it is importable, else in
``--detector-python`` (mediapipe needs protobuf < 5, which recent wandb does not accept: see
docs/inference.md).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPORTS2D = ("sports2d==0.8.34", "Sports2D/Demo/demo.mp4", "sports2d_demo.mp4")
OPENCV_DOC = ("opencv-doc", "usr/share/doc/opencv-doc/examples/data/vtest.avi", "vtest.avi")


def fetch_video(source: str, cache: Path) -> Path:
    """The demo video, downloaded once into ``cache`` with pip (sports2d) or apt-get (opencv-doc)."""
    package, member, name = SPORTS2D if source == "sports2d" else OPENCV_DOC
    target = cache / name
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if source == "sports2d":
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", package, "-d", tmp],
                           check=True)
            wheel = next(Path(tmp).glob("*.whl"))
            with zipfile.ZipFile(wheel) as archive:
                target.write_bytes(archive.read(member))
        else:
            subprocess.run(["apt-get", "download", package], cwd=tmp, check=True)
            deb = next(Path(tmp).glob("*.deb"))
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
            target.write_bytes((Path(tmp) / "x" / member).read_bytes())
    return target


def newest_quickstart() -> Path:
    found = sorted(ROOT.glob("outputs/quickstart/runs/*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit("no checkpoint: pass --ckpt, or train one with "
                         "'python -m hotpose.train experiment=quickstart' (a few minutes on a CPU)")
    return found[-1]


def compose(config: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        return hydra_compose(config, overrides=overrides)


def paper_model_fps(track, threads: int) -> float:
    """Lifting speed of a paper-size HoT-MixSTE (243 frames, 81 tokens, width 512; random weights)."""
    import torch
    from omegaconf import OmegaConf

    from hotpose.inference.checkpoint import MODEL_KEYS, build_from_config
    from hotpose.inference.lifting import lift_track

    cfg = compose("train", ["backbone=mixste", "pruner=tpc", "recoverer=tra", "paths.output_dir=/tmp"])
    net = build_from_config({k: OmegaConf.to_container(cfg[k], resolve=True) for k in MODEL_KEYS}).eval()
    torch.set_num_threads(threads)
    return lift_track(net, track, "seq2seq", flip=True, batch_size=1).fps


def save_frame_png(out_dir: Path, video: Path, frame: int, path: Path) -> Path:
    """One side-by-side picture of the result as a small PNG (for the README)."""
    import numpy as np
    from PIL import Image

    from hotpose.inference.detectors import open_video
    from hotpose.inference.render import SideBySideRenderer

    with np.load(out_dir / "poses_3d.npz") as result:
        keypoints, poses, detected = result["keypoints_2d"], result["poses_3d"], result["detected"]
        width, height = int(result["width"]), int(result["height"])
    _, frames = open_video(video)
    image = next(img for i, img in enumerate(frames) if i == frame)
    picture = SideBySideRenderer(width, height, size=3.0, dpi=80).render(
        keypoints[frame], poses[frame], image, bool(detected[frame]), title=f"frame {frame}", follow=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path, optimize=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=("sports2d", "opencv-doc"), default="sports2d")
    parser.add_argument("--video", type=Path, default=None, help="use this video instead of fetching one")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "hotpose" / "demo")
    parser.add_argument("--fetch-only", action="store_true")
    parser.add_argument("--ckpt", type=Path, default=None)
    parser.add_argument("--detector-python", default=None)
    parser.add_argument("--output", type=Path, default=ROOT / "outputs" / "demo_video")
    parser.add_argument("--animation", default="mp4", choices=("mp4", "gif", "null"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--frame-png", type=Path, default=None, help="also save one frame as a small PNG")
    parser.add_argument("--frame", type=int, default=62)
    parser.add_argument("--paper-model-fps", action="store_true",
                        help="also time the lifting with a paper-size HoT-MixSTE (random weights)")
    args = parser.parse_args()

    video = args.video or fetch_video(args.source, args.cache)
    if args.fetch_only:
        print(video)
        return
    from hotpose.infer import run_inference

    ckpt = args.ckpt or newest_quickstart()
    overrides = [f"input={video}", f"ckpt={ckpt}", f"output_dir={args.output}", f"threads={args.threads}",
                 f"render.animation={args.animation}", "paths.output_dir=/tmp"]
    if args.detector_python:
        overrides.append(f"detector.python={args.detector_python}")
    start = time.perf_counter()
    summary = run_inference(compose("infer", overrides))
    print(f"end to end {time.perf_counter() - start:.1f} s")
    if args.paper_model_fps:
        from hotpose.inference.keypoints import load_keypoints

        track = load_keypoints(args.output / "detections.npz")
        print(f"lifting with a paper-size HoT-MixSTE (243 frames, 81 tokens, flip TTA, {args.threads} thread): "
              f"{paper_model_fps(track, args.threads):.1f} fps")
    if args.frame_png:
        path = save_frame_png(args.output, video, args.frame, args.frame_png)
        print(f"frame {args.frame} -> {path} ({path.stat().st_size / 1024:.0f} KB)")
    print({k: round(v, 1) if isinstance(v, float) else v for k, v in summary.items()})


if __name__ == "__main__":
    main()
