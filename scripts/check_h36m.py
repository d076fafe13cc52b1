#!/usr/bin/env python
"""Check a Human3.6M data folder in the VideoPose3D format before training on it.

Usage: ``python scripts/check_h36m.py DIR [--cameras FILE]``

Looks for ``data_3d_h36m.npz``, ``data_2d_h36m_gt.npz`` and ``data_2d_h36m_cpn_ft_h36m_dbb.npz``, loads each
with the same code the DataModule uses (hotpose.data.sources), prints the subjects, actions and frames found
and everything that is missing or wrong. Exits 1 when anything required is missing or unreadable, else 0.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hotpose.data.sources import (
    KEYPOINTS,
    DataError,
    data_file_names,
    load_cameras,
    load_positions_2d,
    load_positions_3d,
    load_sequences,
)

#: Subjects of the standard protocol (train S1, S5-S8; test S9, S11).
REQUIRED_SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


def check(root: Path, cameras_file: Path | None = None) -> list[str]:
    """Print what ``root`` holds; return the problems found (empty when the folder is complete)."""
    problems: list[str] = []
    try:
        cameras = load_cameras(cameras_file)
    except DataError as err:
        return [str(err)]
    name_3d, _ = data_file_names("h36m", "gt")
    try:
        poses_3d = load_positions_3d(root / name_3d, "h36m")
    except DataError as err:
        problems.append(str(err))
        poses_3d = {}
    if poses_3d:
        total = sum(a.shape[0] for actions in poses_3d.values() for a in actions.values())
        print(f"{name_3d}: {len(poses_3d)} subjects, {total:,} frames (32 joints, reduced to 17)")
        for subject, actions in poses_3d.items():
            frames = sum(a.shape[0] for a in actions.values())
            names = ", ".join(sorted(actions))
            print(f"  {subject:4s} {len(actions):3d} actions {frames:8,d} frames: {names}")
    missing = [s for s in REQUIRED_SUBJECTS if poses_3d and s not in poses_3d]
    if missing:
        problems.append(f"{root / name_3d}: subjects {missing} missing")

    for keypoints in KEYPOINTS["h36m"]:
        _, name_2d = data_file_names("h36m", keypoints)
        try:
            poses_2d = load_positions_2d(root / name_2d)
        except DataError as err:
            problems.append(str(err))
            continue
        views = sum(len(v) for actions in poses_2d.values() for v in actions.values())
        print(f"{name_2d}: {len(poses_2d)} subjects, {views:,} camera sequences")
        absent = [s for s in REQUIRED_SUBJECTS if s not in poses_2d]
        if absent:
            problems.append(f"{root / name_2d}: subjects {absent} missing")
        present = [s for s in REQUIRED_SUBJECTS if s in poses_2d and s in poses_3d]
        if poses_3d and present:
            try:  # the full pipeline: actions present in both, camera count, 2D at least as long as 3D
                records = load_sequences(root, "h36m", keypoints, present, cameras=cameras)
                print(f"  aligned with the 3D file: {len(records)} (subject, action, camera) sequences")
            except DataError as err:
                problems.append(str(err))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder with the Human3.6M npz files")
    parser.add_argument("--cameras", type=Path, default=None,
                        help="camera JSON (default: the published calibration shipped with hotpose)")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"MISSING: {args.root} is not a folder", file=sys.stderr)
        return 1
    problems = check(args.root, args.cameras)
    for problem in problems:
        print(f"MISSING or WRONG: {problem}", file=sys.stderr)
    print("ok: the folder is complete" if not problems else f"{len(problems)} problem(s) found")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
