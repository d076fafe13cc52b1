"""A small synthetic MPI-INF-3DHP pair in the exact field format (P-STMO's ``data_to_npz_3dhp*.py`` output).

Real motion (the embedded mini set), placed 4 m in front of pinhole cameras with plausible 3DHP intrinsics
(2048x2048 studio cameras, 1920x1080 outdoor ones), 3D in camera millimetres and 2D in pixels, both in the 3DHP
joint order; the test sequences carry a ``valid`` flag with invalid frames inside and at the ends.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hotpose.data.mpi_inf_3dhp import TEST_IMAGE_SIZES
from hotpose.data.skeleton import MPI_INF_3DHP_TO_H36M
from hotpose.data.sources import MINI_ROOT, load_positions_3d

#: file order ← hotpose order
H36M_TO_FILE = np.argsort(MPI_INF_3DHP_TO_H36M)


def _mini_motion(frames: int, index: int) -> np.ndarray:
    """``frames`` frames (repeated if needed) of the ``index``-th mini sequence: world metres, Z up, H36M order."""
    motions = [a for actions in load_positions_3d(MINI_ROOT / "data_3d_mini.npz", "mini").values()
               for a in actions.values()]
    motion = motions[index % len(motions)].astype(np.float64)
    reps = -(-frames // len(motion))
    return np.concatenate([motion] * reps)[:frames]


def camera_view(world: np.ndarray, angle_deg: float, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels (f, 17, 2), camera_mm (f, 17, 3))`` in the 3DHP file order, from world poses in metres."""
    theta = np.deg2rad(angle_deg)
    centred = world - np.array([*world[:, 0, :2].mean(axis=0), 0.0])
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    w = centred @ rot.T
    # camera 4 m away on -y at 1 m height, looking along +y: x right, y down (-z), z forward (+y)
    cam = np.stack([w[..., 0], -(w[..., 2] - 1.0), w[..., 1] + 4.0], axis=-1)
    width, height = size
    focal = 1500.0 if width == height else 1680.0
    pixels = focal * cam[..., :2] / cam[..., 2:] + np.array([width / 2, height / 2])
    return pixels[:, H36M_TO_FILE].astype(np.float32), (cam * 1000.0)[:, H36M_TO_FILE].astype(np.float32)


def valid_flags(frames: int, seed: int) -> np.ndarray:
    """Mostly valid, with an invalid block at the start, one at the end and scattered single frames."""
    rng = np.random.default_rng(seed)
    valid = rng.random(frames) > 0.15
    valid[: max(1, frames // 10)] = False
    valid[-3:] = False
    valid[frames // 2] = True
    return valid.astype(np.float64)  # the h5 export holds doubles


def make_train_data(subjects: tuple[str, ...] = ("S1", "S2"), cameras: tuple[int, ...] = (0, 2),
               frames: int = 40) -> dict[str, Any]:
    """``{"S1 Seq1": [{"0": {"data_2d", "data_3d"}, ...}, fps], ...}`` two sequences per subject."""
    data: dict[str, Any] = {}
    k = 0
    for subject in subjects:
        for seq in ("Seq1", "Seq2"):
            world = _mini_motion(frames + 3 * k, k)
            views = {}
            for camera in cameras:
                pixels, joints = camera_view(world, 40.0 * camera, (2048, 2048))
                views[str(camera)] = {"data_2d": pixels, "data_3d": joints}
            data[f"{subject} {seq}"] = [views, 25 if seq == "Seq1" else 50]
            k += 1
    return data


def make_test_data(sequences: tuple[str, ...] = ("TS1", "TS2", "TS3", "TS4", "TS5", "TS6"),
              frames: int = 30) -> dict[str, Any]:
    """``{"TS1": {"data_2d", "data_3d", "valid"}, ...}`` with each sequence's image size."""
    data: dict[str, Any] = {}
    for i, name in enumerate(sequences):
        world = _mini_motion(frames + 4 * i, 7 + i)
        pixels, joints = camera_view(world, 25.0 * i, TEST_IMAGE_SIZES.get(name, (2048, 2048)))
        data[name] = {"data_2d": pixels, "data_3d": joints, "valid": valid_flags(len(world), i)}
    return data


def write_pickled(path: Path, data: Any) -> Path:
    """As the reference scripts write them: ``np.savez_compressed(path, data=dict)`` (a 0-d object array)."""
    np.savez_compressed(path, data=np.array(data, dtype=object))
    return path


def write_3dhp(root: Path, train: Any = None, test: Any = None) -> Path:
    """Both files into ``root`` (the default synthetic content unless given); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    write_pickled(root / "data_train_3dhp.npz", make_train_data() if train is None else train)
    write_pickled(root / "data_test_3dhp.npz", make_test_data() if test is None else test)
    return root
