"""Per-joint TALS thresholds estimated from data: the detector's 2D error, lifted to 3D scale.

TALS (:class:`hotpose.losses.TALS`) down-weights per-joint errors that are smaller than what the input
itself cannot resolve. For a lifting model that bound is set by the 2D detector: a joint detected ``e``
normalised units away from its true 2D position carries an uncertainty of about ``e`` times the image-to-world
scale of the person in 3D. The method (``weak perspective``):

1. per frame, the scale ``s = Σ_bones |B_3D| / Σ_bones |B_2D,gt|`` (metres per normalised 2D unit): total 3D
   bone length over the total length of the same bones in the ground-truth 2D (both from the data files);
2. per frame and joint, the lifted gap ``g_j = s · |p_det,j - p_gt,j|``;
3. ``τ_j`` = the ``quantile`` (default: median) of ``g_j`` over every frame of the training subjects.

Foreshortening makes 2D bones shorter than 3D ones, so ``s`` (and ``τ``) lean to the high side for bones that
point at the camera; the median over many frames and views keeps that bias small. Only training subjects are
read, so the thresholds never see the test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hotpose.data.skeleton import PARENTS
from hotpose.data.sources import MINI_ROOT, load_sequences


def weak_perspective_scale(pose_2d: np.ndarray, pose_3d: np.ndarray) -> np.ndarray:
    """``(n, 17, 2)`` ground-truth 2D and ``(n, 17, 3)`` 3D → ``(n,)`` metres per normalised 2D unit."""
    child = [j for j, p in enumerate(PARENTS) if p >= 0]
    parent = [PARENTS[j] for j in child]
    length_3d = np.linalg.norm(pose_3d[:, child] - pose_3d[:, parent], axis=-1).sum(axis=-1)
    length_2d = np.linalg.norm(pose_2d[:, child] - pose_2d[:, parent], axis=-1).sum(axis=-1)
    return length_3d / np.maximum(length_2d, 1e-9)


def lifted_gap(det_2d: np.ndarray, gt_2d: np.ndarray, pose_3d: np.ndarray) -> np.ndarray:
    """Per-frame, per-joint detector error at 3D scale (metres): ``(n, 17)``."""
    if det_2d.shape != gt_2d.shape or det_2d.shape[:2] != pose_3d.shape[:2]:
        raise ValueError(f"lifted_gap: shapes disagree: det {det_2d.shape}, gt {gt_2d.shape}, 3D {pose_3d.shape}")
    return weak_perspective_scale(gt_2d, pose_3d)[:, None] * np.linalg.norm(det_2d - gt_2d, axis=-1)


def estimate_thresholds(root: str | Path | None = None, dataset: str = "mini", detector: str = "det",
                        subjects: Sequence[str] = ("S1", "S5", "S6", "S7", "S8"), quantile: float = 0.5,
                        cameras_file: str | Path | None = None) -> np.ndarray:
    """``τ_j`` in millimetres ``(17,)`` from the ``detector`` 2D file against the ``gt`` one (module docstring).

    ``dataset="h36m"`` with ``detector="cpn_ft_h36m_dbb"`` uses CPN detections, as the published models do.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    root = MINI_ROOT if root is None else Path(root)
    det = load_sequences(root, dataset, detector, list(subjects), cameras=cameras_file)
    gt = load_sequences(root, dataset, "gt", list(subjects), cameras=cameras_file)
    if [(r.subject, r.action, r.camera) for r in det] != [(r.subject, r.action, r.camera) for r in gt]:
        raise ValueError(f"{root}: the {detector!r} and 'gt' 2D files hold different sequences")
    gaps = np.concatenate([lifted_gap(d.pose_2d, g.pose_2d, g.pose_3d) for d, g in zip(det, gt)])
    return np.quantile(gaps, quantile, axis=0) * 1000.0
