"""Load and validate VideoPose3D-format data: ``data_3d_<name>.npz``, ``data_2d_<name>_<kp>.npz``, cameras.

The output is one :class:`SequenceRecord` per (subject, action, camera): 2D keypoints in normalised screen
coordinates and 3D joints in that camera's frame, metres, root-relative with the root at 0. Every problem
with the files raises :class:`DataError` naming the file and what is wrong; nothing is dropped silently.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hotpose.data.camera import Camera, normalize_screen, normalize_screen_official, world_to_camera
from hotpose.data.errors import DataError
from hotpose.data.safe_npz import load_npz
from hotpose.data.skeleton import NUM_JOINTS, ROOT

log = logging.getLogger(__name__)

#: The folder of the embedded mini dataset (and of the published Human3.6M cameras it ships).
MINI_ROOT = Path(__file__).resolve().parent / "mini"
DEFAULT_CAMERAS_FILE = MINI_ROOT / "cameras_mini.json"

#: Valid keypoints names per dataset (the ``<keypoints>`` part of ``data_2d_<name>_<keypoints>.npz``).
KEYPOINTS: dict[str, tuple[str, ...]] = {"h36m": ("gt", "cpn_ft_h36m_dbb"), "mini": ("gt", "det")}
#: Joints the 3D files store per frame: Human3.6M's 32, the mini set's 17.
STORED_JOINTS: dict[str, int] = {"h36m": 32, "mini": NUM_JOINTS}
#: The 17 of Human3.6M's 32 joints that VideoPose3D keeps (the other 15 are static or duplicates).
H36M_KEPT_JOINTS: tuple[int, ...] = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
CAMERA_FIELDS = ("id", "res_w", "res_h", "center", "focal_length", "radial_distortion",
                 "tangential_distortion", "orientation", "translation")


@dataclass(frozen=True)
class SequenceRecord:
    """One (subject, action, camera) sequence, ready for windowing.

    ``pose_2d`` float32 ``(f, 17, 2)`` normalised screen coordinates; ``pose_3d`` float32 ``(f, 17, 3)``
    camera frame, metres, root-relative with the root joint at 0.
    """

    subject: str
    action: str  # full name, e.g. "Walk 1"
    camera: int  # index in the subject's camera list (0..3)
    pose_2d: np.ndarray
    pose_3d: np.ndarray
    res_w: int
    res_h: int

    @property
    def action_group(self) -> str:
        """The action without its take number: the name before the first space (``"Walk 1"`` → ``"Walk"``)."""
        return action_group(self.action)

    @property
    def num_frames(self) -> int:
        return int(self.pose_3d.shape[0])


def action_group(action: str) -> str:
    """``"Walking 1"`` → ``"Walking"``, as the per-action metrics of the literature group takes."""
    return action.split(" ")[0]


# --------------------------------------------------------------------------------------------- files


def data_file_names(dataset: str, keypoints: str) -> tuple[str, str]:
    """``(3D file, 2D file)`` names for a dataset and keypoints; unknown names raise :class:`DataError`."""
    if dataset not in KEYPOINTS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {sorted(KEYPOINTS)}")
    if keypoints not in KEYPOINTS[dataset]:
        raise DataError(f"unknown keypoints {keypoints!r} for dataset {dataset!r}; "
                        f"choose one of {list(KEYPOINTS[dataset])}")
    return f"data_3d_{dataset}.npz", f"data_2d_{dataset}_{keypoints}.npz"


def _load_npz_dict(path: Path, key: str) -> dict[str, Any]:
    """The pickled dict stored under ``key`` in a VideoPose3D npz file (a 0-d object array)."""
    # no np.load(allow_pickle=True): a crafted file would run code; load_npz admits only numpy's rebuilders
    value = load_npz(path, keys=[key])[key]
    if isinstance(value, np.ndarray) and value.dtype == object and value.shape == ():
        value = value.item()
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise DataError(f"{path}: {key!r} must hold a dict {{subject: {{action: ...}}}}, got {kind}")
    return value


def _check_array(path: Path, where: str, array: Any, joints: int, dims: int) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.ndim != 3:
        shape = getattr(array, "shape", None)
        raise DataError(f"{path}: {where} must be an array (frames, {joints}, {dims}), got {shape}")
    if array.shape[1] != joints:
        raise DataError(f"{path}: {where} has {array.shape[1]} joints, expected {joints} "
                        f"(shape {array.shape})")
    if array.shape[2] != dims:
        raise DataError(f"{path}: {where} has {array.shape[2]} coordinates per joint, expected {dims} "
                        f"(shape {array.shape})")
    if array.shape[0] < 1:
        raise DataError(f"{path}: {where} has no frames (shape {array.shape})")
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: {where} must hold floats, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0]
        raise DataError(f"{path}: {where} has NaN or inf (first at frame {bad[0]}, joint {bad[1]})")
    return array


#: No joint of a person is this far from the root, in metres: larger values are millimetres (or worse).
MAX_ROOT_DISTANCE_M = 5.0
#: 2D pixel coordinates of a person span more than this; all within it means already normalised.
MIN_PIXEL_SPAN = 4.0


def _check_metres(path: Path, where: str, array: np.ndarray) -> np.ndarray:
    """Refuse 3D joints in millimetres (VideoPose3D files are in metres)."""
    reach = float(np.median(np.abs(array - array[:, :1]).max(axis=(1, 2))))
    if reach > MAX_ROOT_DISTANCE_M:
        raise DataError(f"{path}: {where}: joints lie a median {reach:.1f} units from the root joint, so the file "
                        "looks like millimetres; VideoPose3D-format 3D files are in metres (divide by 1000)")
    return array


def _check_pixels(path: Path, where: str, array: np.ndarray) -> np.ndarray:
    """Refuse 2D keypoints that are already normalised (VideoPose3D-format 2D files are in pixels)."""
    span = float(np.abs(array).max())
    if span <= MIN_PIXEL_SPAN:
        raise DataError(f"{path}: {where}: every coordinate is within [-{MIN_PIXEL_SPAN:g}, {MIN_PIXEL_SPAN:g}], "
                        "so the keypoints look normalised already; VideoPose3D-format 2D files are in pixels")
    return array


def load_positions_3d(path: str | Path, dataset: str) -> dict[str, dict[str, np.ndarray]]:
    """``positions_3d`` of a 3D file: ``{subject: {action: (f, 17, 3)}}`` world frame, metres.

    Human3.6M files store 32 joints and are reduced to the 17 VideoPose3D keeps; mini files store 17.
    Arrays are validated, not copied (except the joint reduction).
    """
    path = Path(path)
    joints = STORED_JOINTS[dataset]
    raw = _load_npz_dict(path, "positions_3d")
    if not raw:
        raise DataError(f"{path}: positions_3d holds no subjects")
    out: dict[str, dict[str, np.ndarray]] = {}
    for subject, actions in raw.items():
        if not isinstance(actions, dict):
            raise DataError(f"{path}: positions_3d[{subject!r}] must be a dict of actions")
        if not actions:
            raise DataError(f"{path}: positions_3d[{subject!r}] has no actions (a subject cannot be left empty; "
                            "remove it from the file or fill it)")
        out[subject] = {}
        for action, array in actions.items():
            where = f"positions_3d[{subject!r}][{action!r}]"
            array = _check_metres(path, where, _check_array(path, where, array, joints, 3))
            if joints != NUM_JOINTS:
                array = array[:, H36M_KEPT_JOINTS]
            out[subject][action] = array
    return out


def load_positions_2d(path: str | Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """``positions_2d`` of a 2D file: ``{subject: {action: [per camera (f, 17, 2)]}}`` pixels.

    ``metadata`` must be present and, when it says, have 17 joints.
    """
    path = Path(path)
    meta = _load_npz_dict(path, "metadata")
    if meta.get("num_joints", NUM_JOINTS) != NUM_JOINTS:
        raise DataError(f"{path}: metadata num_joints is {meta.get('num_joints')}, expected {NUM_JOINTS}")
    raw = _load_npz_dict(path, "positions_2d")
    if not raw:
        raise DataError(f"{path}: positions_2d holds no subjects")
    out: dict[str, dict[str, list[np.ndarray]]] = {}
    for subject, actions in raw.items():
        if not isinstance(actions, dict):
            raise DataError(f"{path}: positions_2d[{subject!r}] must be a dict of actions")
        if not actions:
            raise DataError(f"{path}: positions_2d[{subject!r}] has no actions")
        out[subject] = {}
        for action, views in actions.items():
            if not isinstance(views, list | tuple) or len(views) == 0:
                raise DataError(f"{path}: positions_2d[{subject!r}][{action!r}] must be a list of "
                                "per-camera arrays")
            out[subject][action] = [
                _check_pixels(path, f"positions_2d[{subject!r}][{action!r}][camera {i}]",
                              _check_array(path, f"positions_2d[{subject!r}][{action!r}][camera {i}]", view,
                                           NUM_JOINTS, 2))
                for i, view in enumerate(views)
            ]
    return out


def load_cameras(path: str | Path | None = None) -> dict[str, list[Camera]]:
    """Cameras per subject from a JSON file like ``cameras_mini.json``: ``{"subjects": {S: [camera, ...]}}``.

    ``None`` loads the published Human3.6M calibration that ships with the package. Translations are
    converted from millimetres to metres.
    """
    path = Path(path) if path is not None else DEFAULT_CAMERAS_FILE
    if not path.is_file():
        raise DataError(f"{path}: camera file not found")
    try:
        content = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a readable JSON file ({err})") from err
    subjects = content.get("subjects") if isinstance(content, dict) else None
    if not isinstance(subjects, dict):
        raise DataError(f"{path}: expected a JSON object with a 'subjects' mapping")
    cameras: dict[str, list[Camera]] = {}
    for subject, entries in subjects.items():
        if not isinstance(entries, list) or not entries:
            raise DataError(f"{path}: subjects[{subject!r}] must be a non-empty list of cameras")
        cameras[subject] = []
        for i, entry in enumerate(entries):
            missing = [f for f in CAMERA_FIELDS if f not in entry]
            if missing:
                raise DataError(f"{path}: subjects[{subject!r}][{i}] lacks {missing}")
            try:
                cameras[subject].append(Camera(
                    id=str(entry["id"]), res_w=int(entry["res_w"]), res_h=int(entry["res_h"]),
                    center=entry["center"], focal_length=entry["focal_length"],
                    radial_distortion=entry["radial_distortion"],
                    tangential_distortion=entry["tangential_distortion"],
                    orientation=entry["orientation"],
                    translation=np.asarray(entry["translation"], dtype=np.float64) / 1000.0,
                ))
            except (TypeError, ValueError) as err:
                raise DataError(f"{path}: subjects[{subject!r}][{i}]: {err}") from err
    return cameras


# ------------------------------------------------------------------------------------------ sequences


def camera_view(
    world: np.ndarray, pixels: np.ndarray, camera: Camera, official_rounding: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """One camera's training pair: ``(pose_2d (f, 17, 2), pose_3d (f, 17, 3))`` float32.

    3D: world → camera frame, then root-relative with the root set to 0 (what losses and metrics use).
    2D: pixels → normalised screen coordinates (with ``official_rounding``, rounded as the official
    code does: :func:`~hotpose.data.camera.normalize_screen_official`).
    """
    cam = world_to_camera(world.astype(np.float64), camera.orientation, camera.translation)
    cam = cam - cam[:, ROOT : ROOT + 1]
    if official_rounding:
        pose_2d = normalize_screen_official(pixels, camera.res_w, camera.res_h)
    else:
        pose_2d = normalize_screen(pixels.astype(np.float64), camera.res_w, camera.res_h)
    return pose_2d.astype(np.float32), cam.astype(np.float32)


def _match_action(action: str, wanted: Sequence[str]) -> bool:
    return action in wanted or action_group(action) in wanted


def load_sequences(
    root: str | Path,
    dataset: str,
    keypoints: str,
    subjects: Sequence[str],
    actions: Sequence[str] | None = None,
    cameras: dict[str, list[Camera]] | str | Path | None = None,
    official_layout: bool = False,
) -> list[SequenceRecord]:
    """Every (subject, action, camera) sequence of ``subjects``, in file order.

    ``official_layout`` is the paper protocol's: each subject's actions in the 2D file's order (the
    official test iterates that file, and its batches, hence its P2, depend on the order) and the
    official rounding of the screen normalisation; otherwise the 3D file's order.

    ``actions`` filters by full name (``"Walk 1"``) or group (``"Walk"``); ``None`` keeps all. Each filter
    entry must match something. 2D sequences longer than the 3D one are truncated to it (Human3.6M's 2D
    detections can run a few frames past the motion capture), shorter ones are an error.
    ``cameras`` is a loaded camera dict, a JSON path, or ``None`` for the shipped calibration.
    """
    root = Path(root)
    name_3d, name_2d = data_file_names(dataset, keypoints)
    path_3d, path_2d = root / name_3d, root / name_2d
    if not isinstance(cameras, dict):
        cameras = load_cameras(cameras)
    poses_3d = load_positions_3d(path_3d, dataset)
    poses_2d = load_positions_2d(path_2d)

    records: list[SequenceRecord] = []
    matched: set[str] = set()
    skipped = 0
    for subject in subjects:
        if subject not in poses_3d:
            raise DataError(f"{path_3d}: subject {subject!r} not in the file (has {sorted(poses_3d)})")
        if subject not in poses_2d:
            raise DataError(f"{path_2d}: subject {subject!r} not in the file (has {sorted(poses_2d)})")
        if subject not in cameras:
            raise DataError(f"cameras: no calibration for subject {subject!r} (have {sorted(cameras)})")
        for action, world in poses_3d[subject].items():
            if actions is not None and not _match_action(action, actions):
                skipped += 1
                continue
            matched.update(a for a in actions or () if _match_action(action, [a]))
            if action not in poses_2d[subject]:
                raise DataError(f"{path_2d}: action {action!r} of subject {subject!r} not in the file")
            views = poses_2d[subject][action]
            if len(views) != len(cameras[subject]):
                raise DataError(f"{path_2d}: {subject}/{action} has {len(views)} camera views, "
                                f"the calibration has {len(cameras[subject])}")
            frames = world.shape[0]
            for index, (pixels, camera) in enumerate(zip(views, cameras[subject])):
                if pixels.shape[0] < frames:
                    raise DataError(f"{path_2d}: {subject}/{action} camera {index} has {pixels.shape[0]} 2D "
                                    f"frames, fewer than the {frames} 3D frames of {path_3d.name}")
                pose_2d, pose_3d = camera_view(world, pixels[:frames], camera, official_layout)
                records.append(SequenceRecord(subject, action, index, pose_2d, pose_3d,
                                              camera.res_w, camera.res_h))
    if official_layout:  # stable: cameras stay in order within an action
        rank = {(s, a): i for s in subjects for i, a in enumerate(poses_2d[s])}
        records.sort(key=lambda r: (subjects.index(r.subject), rank[r.subject, r.action]))
    if actions is not None:
        unknown = [a for a in actions if a not in matched]
        if unknown:
            raise DataError(f"{path_3d}: actions {unknown} not found for subjects {list(subjects)}")
    if skipped:
        log.info("%s: skipped %d (subject, action) sequences outside the action filter %s",
                 path_3d, skipped, list(actions or ()))
    return records
