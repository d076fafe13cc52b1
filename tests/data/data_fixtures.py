"""Small VideoPose3D-format npz files, to test the loaders on good and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_3d(path: Path, positions: object) -> Path:
    np.savez_compressed(path, positions_3d=np.array(positions, dtype=object))
    return path


def write_2d(path: Path, positions: object, num_joints: int = 17) -> Path:
    meta = {"layout_name": "h36m", "num_joints": num_joints,
            "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
    np.savez_compressed(path, positions_2d=np.array(positions, dtype=object),
                        metadata=np.array(meta, dtype=object))
    return path


def random_world(frames: int, joints: int, seed: int = 0) -> np.ndarray:
    """A plausible world-frame pose sequence (metres, Z up) near the centre of the capture volume."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0.0, 0.3, (frames, joints, 3)) + np.array([0.0, 0.0, 1.0])
    return pose.astype(np.float32)


def pixels(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1000, (frames, 17, 2)).astype(np.float32)
