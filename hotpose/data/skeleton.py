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


# ------------------------------------------------------------------------------------------ MPI-INF-3DHP
# The 17 joints of MPI-INF-3DHP's test annotation (``mpii_get_joints('relevant')``) in the order the
# preprocessed files ``data_train_3dhp.npz`` / ``data_test_3dhp.npz`` store them. They are the Human3.6M-17
# joints in another order, so hotpose reorders them to the layout above on loading: one joint order for every
# model, flip and picture. Sources and the mapping are in docs/datasets.md.

MPI_INF_3DHP_JOINT_NAMES: tuple[str, ...] = (
    "head_top", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "pelvis", "spine", "head",
)
#: The root in the file order: the pelvis, which every 3DHP evaluation subtracts.
MPI_INF_3DHP_ROOT = 14
#: Parents in the file order (``joint_parents_o1`` of the official ``mpii_get_joints('relevant')``, 0-based).
MPI_INF_3DHP_PARENTS: tuple[int, ...] = (1, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1)
MPI_INF_3DHP_JOINTS_LEFT: tuple[int, ...] = (5, 6, 7, 11, 12, 13)
MPI_INF_3DHP_JOINTS_RIGHT: tuple[int, ...] = (2, 3, 4, 8, 9, 10)
#: ``file_pose[..., MPI_INF_3DHP_TO_H36M, :]`` is the pose in the Human3.6M-17 order of ``JOINT_NAMES``:
#: pelvis→pelvis, hips/knees/ankles, spine→spine, neck→thorax, head→neck_nose, head_top→head, arms.
MPI_INF_3DHP_TO_H36M: tuple[int, ...] = (14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)
#: The 14 joints the official evaluation scores (``mpii_get_pck_auc_joint_groups.m``: head top, neck,
#: shoulders, elbows, wrists, hips, knees, ankles; not pelvis, spine, head), as indices in ``JOINT_NAMES``.
MPI_INF_3DHP_EVAL_JOINTS: tuple[int, ...] = tuple(
    sorted(MPI_INF_3DHP_TO_H36M.index(j) for j in range(14))
)
