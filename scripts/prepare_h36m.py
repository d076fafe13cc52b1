#!/usr/bin/env python
"""Build ``data_3d_h36m.npz`` and ``data_2d_h36m_gt.npz`` from the raw Human3.6M release.

Usage: ``python scripts/prepare_h36m.py RAW_DIR OUT_DIR [--subjects S1 S5 ...] [--force]``

``RAW_DIR`` holds the official pose files, one folder per subject::

    S1/MyPoseFeatures/D3_Positions/<action>.cdf              3D joints, world frame, mm
    S1/MyPoseFeatures/D2_Positions/<action>.<camera>.cdf     2D joints of each camera, pixels

Each CDF file stores the variable ``Pose``: 32 joints per frame (x, y, z or x, y). The output is the
VideoPose3D format that ``data=h36m`` reads (hotpose.data.sources): 3D in metres, 32 joints
(the loader keeps 17); 2D ground truth with the 17 kept joints, one array per camera in the order of
hotpose's published calibration (54138969, 55011271, 58860488, 60457274). Action names follow
VideoPose3D's convention (``TakingPhoto`` → ``Photo``, ``WalkingDog`` → ``WalkDog``), and S11's
``Directions`` take is left out, as every paper does (its video is corrupted). The 2D ground truth is
the released D2_Positions, not a re-projection of the 3D joints. Needs ``cdflib``
(``pip install 'hotpose[prepare]'``). Check the result with ``python scripts/check_h36m.py OUT_DIR``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hotpose.data.skeleton import JOINTS_LEFT, JOINTS_RIGHT, NUM_JOINTS
from hotpose.data.sources import H36M_KEPT_JOINTS, DataError, load_cameras

#: the subjects of the standard protocol (train S1, S5-S8; test S9, S11)
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
#: joints per frame in the release's pose files
RAW_JOINTS = 32
#: takes every paper leaves out: (subject, action); S11's Directions video is corrupted
SKIPPED = {("S11", "Directions")}
#: the release's file names → the names VideoPose3D's npz files use
RENAMES = (("TakingPhoto", "Photo"), ("WalkingDog", "WalkDog"))
#: files per subject in a complete release (15 actions x 2 takes)
TAKES_PER_SUBJECT = 30


def canonical_action(name: str) -> str:
    """Release file stem → the action name of the npz files (``"TakingPhoto 1"`` → ``"Photo 1"``)."""
    for old, new in RENAMES:
        name = name.replace(old, new)
    return name


def read_pose(path: Path, dims: int) -> np.ndarray:
    """The ``Pose`` variable of one release file → ``(frames, 32, dims)`` float64, as stored (mm or pixels)."""
    try:
        import cdflib
    except ImportError:
        raise SystemExit("error: reading the Human3.6M CDF files needs cdflib: pip install 'hotpose[prepare]'") \
            from None
    try:
        pose = np.asarray(cdflib.CDF(str(path)).varget("Pose"), dtype=np.float64)
    except Exception as err:  # cdflib raises many kinds of errors on broken or foreign files
        raise DataError(f"{path}: cannot read the variable 'Pose' ({type(err).__name__}: {err})") from err
    per_frame = RAW_JOINTS * dims
    if pose.size == 0 or pose.size % per_frame:
        raise DataError(f"{path}: 'Pose' has shape {pose.shape}, not a multiple of {RAW_JOINTS} joints x {dims} "
                        "coordinates per frame")
    pose = pose.reshape(-1, RAW_JOINTS, dims)
    if not np.isfinite(pose).all():
        frame = int(np.argwhere(~np.isfinite(pose))[0][0])
        raise DataError(f"{path}: 'Pose' has NaN or inf (first at frame {frame})")
    return pose


def _pose_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found (expected <RAW_DIR>/<subject>/MyPoseFeatures/...)")
    files = sorted(folder.glob("*.cdf"))
    if not files:
        raise DataError(f"{folder}: no .cdf files")
    return files


def collect_3d(raw: Path, subjects: list[str]) -> dict[str, dict[str, np.ndarray]]:
    """``{subject: {action: (frames, 32, 3)}}`` float32, world frame, metres."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject in subjects:
        files = _pose_files(raw / subject / "MyPoseFeatures" / "D3_Positions")
        if len(files) != TAKES_PER_SUBJECT:
            print(f"warning: {subject} has {len(files)} D3_Positions files, a complete release has "
                  f"{TAKES_PER_SUBJECT}", file=sys.stderr)
        out[subject] = {}
        for path in files:
            if (subject, path.stem) in SKIPPED:
                continue
            out[subject][canonical_action(path.stem)] = (read_pose(path, 3) / 1000.0).astype(np.float32)
    return out


def collect_2d(raw: Path, positions_3d: dict[str, dict[str, np.ndarray]],
               cameras: dict[str, list[str]]) -> dict[str, dict[str, list[np.ndarray]]]:
    """``{subject: {action: [per camera (frames, 17, 2)]}}`` float32 pixels, for every 3D take."""
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, actions in positions_3d.items():
        folder = raw / subject / "MyPoseFeatures" / "D2_Positions"
        by_take: dict[tuple[str, str], Path] = {}
        for path in _pose_files(folder):
            take, _, camera = path.stem.rpartition(".")  # "Walking 1.54138969"
            by_take[(canonical_action(take), camera)] = path
        out[subject] = {}
        for action, pose_3d in actions.items():
            views = []
            for camera in cameras[subject]:
                path = by_take.get((action, camera))
                if path is None:
                    raise DataError(f"{folder}: no 2D file for action {action!r} and camera {camera} "
                                    f"(expected '<action>.{camera}.cdf')")
                pose = read_pose(path, 2)
                if len(pose) < len(pose_3d):
                    raise DataError(f"{path}: {len(pose)} frames, fewer than the {len(pose_3d)} of its 3D file")
                views.append(pose[:, H36M_KEPT_JOINTS].astype(np.float32))
            out[subject][action] = views
    return out


def camera_ids(subjects: list[str]) -> dict[str, list[str]]:
    """Camera ids per subject, in the order of the calibration that ``data=h36m`` uses."""
    calibration = load_cameras()
    missing = [s for s in subjects if s not in calibration]
    if missing:
        raise DataError(f"subjects {missing} have no cameras in the shipped calibration ({sorted(calibration)})")
    return {s: [str(c.id) for c in calibration[s]] for s in subjects}


def prepare(raw: Path, out: Path, subjects: Sequence[str] = SUBJECTS, force: bool = False) -> tuple[Path, Path]:
    """Write the two npz files into ``out``; returns their paths."""
    path_3d, path_2d = out / "data_3d_h36m.npz", out / "data_2d_h36m_gt.npz"
    existing = [str(p) for p in (path_3d, path_2d) if p.exists()]
    if existing and not force:
        raise DataError(f"{', '.join(existing)} already exist; pass --force to overwrite")
    if not raw.is_dir():
        raise DataError(f"{raw}: not a folder")
    positions_3d = collect_3d(raw, list(subjects))
    positions_2d = collect_2d(raw, positions_3d, camera_ids(list(subjects)))
    metadata = {"layout_name": "h36m", "num_joints": NUM_JOINTS,
                "keypoints_symmetry": [list(JOINTS_LEFT), list(JOINTS_RIGHT)]}
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path_3d, positions_3d=np.array(positions_3d, dtype=object))
    np.savez_compressed(path_2d, positions_2d=np.array(positions_2d, dtype=object),
                        metadata=np.array(metadata, dtype=object))
    return path_3d, path_2d


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("raw", type=Path, help="the raw release: <raw>/<subject>/MyPoseFeatures/D3_Positions/...")
    parser.add_argument("out", type=Path, help="folder for data_3d_h36m.npz and data_2d_h36m_gt.npz")
    parser.add_argument("--subjects", nargs="+", default=list(SUBJECTS), help="subjects to convert")
    parser.add_argument("--force", action="store_true", help="overwrite existing npz files")
    args = parser.parse_args(argv)
    try:
        path_3d, path_2d = prepare(args.raw, args.out, args.subjects, args.force)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {path_3d} and {path_2d}; check them with: python scripts/check_h36m.py {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
