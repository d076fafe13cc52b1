"""The Human3.6M 17-joint skeleton (VideoPose3D order): the one place that defines joints and symmetry."""

from __future__ import annotations

import numpy as np

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax",
    "neck_nose", "head", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist",
)
NUM_JOINTS = len(JOINT_NAMES)
ROOT = 0
PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
JOINTS_LEFT: tuple[int, ...] = (4, 5, 6, 11, 12, 13)
JOINTS_RIGHT: tuple[int, ...] = (1, 2, 3, 14, 15, 16)


def _flip_permutation() -> np.ndarray:
    perm = np.arange(NUM_JOINTS)
    perm[list(JOINTS_LEFT)] = JOINTS_RIGHT
    perm[list(JOINTS_RIGHT)] = JOINTS_LEFT
    return perm


#: ``pose[..., FLIP_PERMUTATION, :]`` swaps every left joint with its right counterpart.
FLIP_PERMUTATION: np.ndarray = _flip_permutation()
