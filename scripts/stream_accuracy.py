"""Accuracy vs look-ahead of live lifting: P1 on a test set for several ``delay`` values, through PoseStream.

    python scripts/stream_accuracy.py --ckpt HOT.ckpt --ckpt BASE.ckpt [--delays 0,1,2,4,7,10,centre]
                                      [--subjects S9,S11] [--keypoints det] [--threads 1] [--json out.json]

Every test sequence (subject, action, camera) is turned back into pixels and lifted with the windows of a
:class:`~hotpose.inference.stream.PoseStream` (flip TTA on, stride 1, so every frame has exactly ``delay``
frames of look-ahead). For speed the table uses the stream's offline twin (``plan="centred"``, the same
windows in batches; tests/inference/test_stream.py checks they are equal); for the ``--stream-delays`` the
sequences are also pushed frame by frame through a PoseStream, and the script fails unless both P1 agree.
The poses are scored against the ground truth like ``eval_mode=exact``:
P1 (MPJPE, mm) averaged over the frames of each action, then over actions; ``pooled`` over all frames.
The row ``offline`` is ``hotpose.infer``'s default (tiled windows, the whole sequence known), which is
what ``hotpose.eval`` reports. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from hotpose.data.camera import denormalize_screen
from hotpose.data.sources import MINI_ROOT, load_sequences
from hotpose.inference.keypoints import KeypointTrack
from hotpose.inference.lifter import Lifter
from hotpose.inference.stream import PoseStream
from hotpose.metrics import mpjpe


def stream_poses(lifter: Lifter, pixels: np.ndarray, size: tuple[int, int], delay: int | str) -> np.ndarray:
    stream = PoseStream(lifter, size, delay=delay, layout="h36m")
    emitted = [p for frame in pixels for p in stream.push(frame)] + stream.flush()
    assert [p.frame for p in emitted] == list(range(len(pixels)))
    return np.stack([p.pose for p in emitted])


def frame_errors(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    return mpjpe(torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)).numpy() * 1e3


def summarise(errors: dict[str, list[np.ndarray]]) -> dict[str, float]:
    per_action = {a: float(np.concatenate(e).mean()) for a, e in errors.items()}
    pooled = float(np.concatenate([x for e in errors.values() for x in e]).mean())
    return {"p1_mm": float(np.mean(list(per_action.values()))), "pooled_p1_mm": pooled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", required=True, type=Path)
    parser.add_argument("--name", action="append", default=None, help="a table name per --ckpt")
    parser.add_argument("--delays", default="0,1,2,4,7,10,centre")
    parser.add_argument("--stream-delays", default="0", help="also pushed frame by frame (slow); '' for none")
    parser.add_argument("--data-root", type=Path, default=MINI_ROOT)
    parser.add_argument("--dataset", default="mini")
    parser.add_argument("--keypoints", default="det")
    parser.add_argument("--subjects", default="S9,S11")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=256, help="windows per model call (offline twin)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1126)
    records = load_sequences(args.data_root, args.dataset, args.keypoints, args.subjects.split(","))
    delays = [d if d == "centre" else int(d) for d in args.delays.split(",")]
    names = args.name or [p.parent.parent.name for p in args.ckpt]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, ckpt in zip(names, args.ckpt, strict=True):
        lifter = Lifter.from_checkpoint(ckpt, flip=True)
        results[name] = {}
        print(f"{name}: {lifter.describe()}, {len(records)} sequences, "
              f"{sum(r.num_frames for r in records)} frames", flush=True)
        half = (lifter.frames - 1) // 2
        streamed = [half if d == "centre" else int(d) for d in args.stream_delays.split(",") if d]
        for delay in [*delays, "offline", *[("stream", d) for d in streamed]]:
            errors: dict[str, list[np.ndarray]] = defaultdict(list)
            start = time.perf_counter()
            k = half if delay == "centre" else delay
            twin = Lifter(lifter.model, flip=True, plan="centred", delay=k, batch_size=args.batch_size) \
                if isinstance(k, int) else lifter
            for record in records:
                size = (record.res_w, record.res_h)
                pixels = denormalize_screen(record.pose_2d.astype(np.float64), *size).astype(np.float32)
                if isinstance(delay, tuple):
                    pred = stream_poses(lifter, pixels, size, delay[1])
                else:
                    track = KeypointTrack(pixels, None, np.ones(len(pixels), dtype=bool), *size)
                    pred = twin.lift_track(track).poses_3d
                errors[record.action_group].append(frame_errors(pred, record.pose_3d))
            row = summarise(errors)
            if isinstance(delay, tuple):
                twin_p1 = results[name][str(delay[1])]["p1_mm"]
                print(f"  delay {delay[1]} pushed frame by frame: P1 {row['p1_mm']:.4f} mm (twin {twin_p1:.4f}; "
                      f"{time.perf_counter() - start:.0f} s)", flush=True)
                if abs(row["p1_mm"] - twin_p1) > 1e-3:
                    raise SystemExit(f"stream and offline twin disagree at delay {delay[1]}")
                results[name][str(delay[1])]["streamed_p1_mm"] = row["p1_mm"]
                continue
            results[name][str(k)] = row
            print(f"  delay {delay}: P1 {row['p1_mm']:.2f} mm ({time.perf_counter() - start:.0f} s)", flush=True)
    keys = list(next(iter(results.values())))  # the same delays for every model (same frame count)
    print("\n| delay (frames) | " + " | ".join(f"{n} P1 (mm)" for n in results) + " |")
    print("|---|" + "---|" * len(results))
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{results[n][key]['p1_mm']:.1f}" for n in results) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
