"""Load and validate MPI-INF-3DHP in the preprocessed format of P-STMO / MotionAGFormer.

Two files in one folder (facts and sources: docs/datasets.md):

- ``data_train_3dhp.npz``: key ``data`` = ``{"S1 Seq1": [{"0": {"data_2d": (f, 17, 2), "data_3d": (f, 17, 3)},
  "1": ..., ...}, fps], ...}``: subjects S1-S8, sequences Seq1/Seq2, one entry per camera (the key is the
  camera number as a string).
- ``data_test_3dhp.npz``: key ``data`` = ``{"TS1": {"data_2d": (f, 17, 2), "data_3d": (f, 17, 3),
  "valid": (f,)}, ...}`` for TS1-TS6; ``valid`` marks the frames the official evaluation scores.

2D is in pixels of the full frame (2048x2048 for training and TS1-TS4, 1920x1080 for TS5-TS6), 3D in
millimetres in the camera frame (``univ_annot3``), joints in the 3DHP order of
:data:`~hotpose.data.skeleton.MPI_INF_3DHP_JOINT_NAMES`. On loading, 2D is normalised to screen coordinates,
3D converted to metres and made root-relative (pelvis at 0), and the joints reordered to the Human3.6M-17
layout every hotpose model uses. Every problem raises :class:`~hotpose.data.sources.DataError` naming the
file and the entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hotpose.data.camera import normalize_screen
from hotpose.data.safe_npz import load_npz
from hotpose.data.skeleton import MPI_INF_3DHP_ROOT, MPI_INF_3DHP_TO_H36M, NUM_JOINTS
from hotpose.data.sources import DataError, SequenceRecord

TRAIN_FILE = "data_train_3dhp.npz"
TEST_FILE = "data_test_3dhp.npz"
TRAIN_SUBJECTS: tuple[str, ...] = tuple(f"S{i}" for i in range(1, 9))
TEST_SEQUENCES: tuple[str, ...] = tuple(f"TS{i}" for i in range(1, 7))
#: Every training camera records 2048x2048 images.
TRAIN_IMAGE_SIZE: tuple[int, int] = (2048, 2048)
#: (width, height) of each test sequence's images: the studio sequences 2048x2048, the outdoor ones full HD.
TEST_IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "TS1": (2048, 2048), "TS2": (2048, 2048), "TS3": (2048, 2048), "TS4": (2048, 2048),
    "TS5": (1920, 1080), "TS6": (1920, 1080),
}
#: The official scene grouping of the test sequences, under the names the literature's tables use.
SCENES: dict[str, tuple[str, ...]] = {
    "GS": ("TS1", "TS2"),        # studio with green screen
    "noGS": ("TS3", "TS4"),      # studio without green screen
    "Outdoor": ("TS5", "TS6"),
}
#: Valid frames per test sequence in the released annotation (the weights of the official scene averages).
OFFICIAL_VALID_FRAMES: dict[str, int] = {"TS1": 603, "TS2": 540, "TS3": 505, "TS4": 553, "TS5": 276, "TS6": 452}
MM_PER_M = 1000.0


@dataclass(frozen=True)
class TestSequence:
    """One test sequence: its record (normalised 2D, root-relative 3D in metres) and ``valid (f,)`` bool."""

    record: SequenceRecord
    valid: np.ndarray


def _read_pickled_npz(path: Path) -> Any:
    """The object stored under ``data`` in a pickled npz file: the one place this module opens one.

    The files are pickled dicts; :func:`~hotpose.data.safe_npz.load_npz` unpickles them with a restricted
    unpickler, so a crafted file cannot run code (it is refused, naming the file and the global).
    """
    value = load_npz(path, keys=["data"])["data"]
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        value = value.item()
    return value


def _mapping(path: Path, where: str, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DataError(f"{path}: {where} must be a dict of {what}, got {type(value).__name__}")
    if not value:
        raise DataError(f"{path}: {where} is empty (expected {what})")
    return value


def _poses(path: Path, where: str, entry: Mapping[str, Any], key: str, dims: int) -> np.ndarray:
    """``entry[key]`` checked to be finite floats ``(f, 17, dims)`` with at least one frame."""
    if key not in entry:
        raise DataError(f"{path}: {where} lacks key {key!r} (has {sorted(map(str, entry))})")
    array = entry[key]
    shape = getattr(array, "shape", None)
    if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[2] != dims:
        raise DataError(f"{path}: {where}[{key!r}] must be an array (frames, {NUM_JOINTS}, {dims}), got {shape}")
    if array.shape[1] != NUM_JOINTS:
        raise DataError(f"{path}: {where}[{key!r}] has {array.shape[1]} joints, expected the {NUM_JOINTS} "
                        f"MPI-INF-3DHP joints (shape {shape})")
    if array.shape[0] < 1:
        raise DataError(f"{path}: {where}[{key!r}] has no frames")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: {where}[{key!r}] must hold floats, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        frame, joint = np.argwhere(~np.isfinite(array))[0][:2]
        raise DataError(f"{path}: {where}[{key!r}] has NaN or inf (first at frame {frame}, joint {joint})")
    return array


def _convert(pixels: np.ndarray, joints_mm: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """File arrays → ``(pose_2d, pose_3d)`` float32 in the Human3.6M-17 order: screen coordinates, and
    metres relative to the pelvis (set to 0)."""
    order = list(MPI_INF_3DHP_TO_H36M)
    pose_2d = normalize_screen(pixels.astype(np.float64), width, height)[:, order]
    pose_3d = joints_mm.astype(np.float64) / MM_PER_M
    pose_3d = (pose_3d - pose_3d[:, MPI_INF_3DHP_ROOT : MPI_INF_3DHP_ROOT + 1])[:, order]
    return pose_2d.astype(np.float32), pose_3d.astype(np.float32)


def _frames_agree(path: Path, where: str, pose_2d: np.ndarray, pose_3d: np.ndarray) -> None:
    if len(pose_2d) != len(pose_3d):
        raise DataError(f"{path}: {where} has {len(pose_2d)} 2D frames but {len(pose_3d)} 3D frames")


def load_train_sequences(
    path: str | Path, subjects: Sequence[str] = TRAIN_SUBJECTS, cameras: Sequence[int] | None = None
) -> list[SequenceRecord]:
    """One record per (subject, sequence, camera) of ``data_train_3dhp.npz``, in file order.

    ``subjects`` picks the subjects (each must be in the file); ``cameras`` the camera numbers (``None``: every
    camera the file has; each listed one must be in every chosen sequence).
    """
    path = Path(path)
    data = _mapping(path, "'data'", _read_pickled_npz(path), '"<subject> <sequence>" entries')
    wanted_cameras = None if cameras is None else [int(c) for c in cameras]
    records: list[SequenceRecord] = []
    found: set[str] = set()
    width, height = TRAIN_IMAGE_SIZE
    for name, entry in data.items():
        parts = str(name).split(" ")
        if len(parts) != 2:
            raise DataError(f"{path}: entry {name!r} is not named '<subject> <sequence>' (e.g. 'S1 Seq1')")
        subject, sequence = parts
        if subject not in subjects:
            continue
        found.add(subject)
        if not isinstance(entry, list | tuple) or len(entry) != 2:
            raise DataError(f"{path}: data[{name!r}] must be [{{camera: arrays}}, fps], got "
                            f"{type(entry).__name__} of length {len(entry) if hasattr(entry, '__len__') else '?'}")
        views = _mapping(path, f"data[{name!r}][0]", entry[0], "cameras")
        try:
            by_number = {int(camera): view for camera, view in views.items()}
        except (TypeError, ValueError):
            raise DataError(f"{path}: data[{name!r}][0] camera keys must be numbers as strings, got "
                            f"{sorted(map(str, views))}") from None
        missing = [c for c in wanted_cameras or () if c not in by_number]
        if missing:
            raise DataError(f"{path}: data[{name!r}] has no camera {missing} (has {sorted(by_number)})")
        for camera in (wanted_cameras if wanted_cameras is not None else list(by_number)):
            where = f"data[{name!r}][0][{str(camera)!r}]"
            view = _mapping(path, where, by_number[camera], "arrays")
            pixels = _poses(path, where, view, "data_2d", 2)
            joints = _poses(path, where, view, "data_3d", 3)
            _frames_agree(path, where, pixels, joints)
            pose_2d, pose_3d = _convert(pixels, joints, width, height)
            records.append(SequenceRecord(subject, sequence, camera, pose_2d, pose_3d, width, height))
    absent = [s for s in subjects if s not in found]
    if absent:
        have = sorted({str(n).split(" ")[0] for n in data})
        raise DataError(f"{path}: subjects {absent} not in the file (has {have})")
    return records


def load_test_sequences(
    path: str | Path,
    sequences: Sequence[str] = TEST_SEQUENCES,
    image_sizes: Mapping[str, Sequence[int]] | None = None,
) -> list[TestSequence]:
    """The test sequences ``sequences`` of ``data_test_3dhp.npz`` (in that order), with their ``valid`` flags.

    ``image_sizes`` maps a sequence name to its ``(width, height)``; ``None`` uses :data:`TEST_IMAGE_SIZES`.
    The record's subject and action are the sequence name (``"TS1"``), its camera 0.
    """
    path = Path(path)
    sizes = {str(k): (int(v[0]), int(v[1])) for k, v in (image_sizes or TEST_IMAGE_SIZES).items()}
    data = _mapping(path, "'data'", _read_pickled_npz(path), "test sequences")
    out: list[TestSequence] = []
    for name in sequences:
        if name not in data:
            raise DataError(f"{path}: test sequence {name!r} not in the file (has {sorted(map(str, data))})")
        if name not in sizes:
            raise DataError(f"{path}: no image size known for test sequence {name!r}; give its (width, height) "
                            f"in data.image_sizes (known: {sorted(sizes)})")
        where = f"data[{name!r}]"
        entry = _mapping(path, where, data[name], "arrays")
        pixels = _poses(path, where, entry, "data_2d", 2)
        joints = _poses(path, where, entry, "data_3d", 3)
        _frames_agree(path, where, pixels, joints)
        valid = _valid_flags(path, where, entry, len(joints))
        width, height = sizes[name]
        pose_2d, pose_3d = _convert(pixels, joints, width, height)
        out.append(TestSequence(SequenceRecord(name, name, 0, pose_2d, pose_3d, width, height), valid))
    return out


def _valid_flags(path: Path, where: str, entry: Mapping[str, Any], frames: int) -> np.ndarray:
    if "valid" not in entry:
        raise DataError(f"{path}: {where} lacks key 'valid' (has {sorted(map(str, entry))})")
    raw = np.asarray(entry["valid"])
    if raw.dtype == object or not (np.issubdtype(raw.dtype, np.number) or raw.dtype == bool):
        raise DataError(f"{path}: {where}['valid'] must hold 0/1 flags, got dtype {raw.dtype}")
    raw = raw.reshape(-1) if raw.size == frames else raw
    if raw.ndim != 1 or len(raw) != frames:
        raise DataError(f"{path}: {where}['valid'] has {raw.size} flags (shape {raw.shape}) for {frames} frames")
    if not np.isin(raw, (0, 1)).all():
        bad = raw[~np.isin(raw, (0, 1))][:3].tolist()
        raise DataError(f"{path}: {where}['valid'] must hold only 0 and 1, found {bad}")
    valid = raw.astype(bool)
    if not valid.any():
        raise DataError(f"{path}: {where}['valid'] marks no frame as valid: nothing would be scored")
    return valid
