"""Pose transforms shared by data augmentation and test-time augmentation."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from hotpose.data.skeleton import FLIP_PERMUTATION, NUM_JOINTS

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def flip_pose(pose: ArrayT) -> ArrayT:
    """Mirror poses ``(..., 17, c)``: negate x and swap left/right joints. An involution.

    Works for normalised 2D keypoints (x is centred on the image, so mirroring is ``-x``; a third
    confidence channel is kept) and for root-relative 3D joints in the camera frame.
    """
    if pose.shape[-2] != NUM_JOINTS:
        raise ValueError(f"flip_pose expects {NUM_JOINTS} joints on dim -2, got shape {tuple(pose.shape)}")
    if isinstance(pose, torch.Tensor):
        out = pose[..., torch.as_tensor(FLIP_PERMUTATION, device=pose.device), :].clone()
    else:
        out = pose[..., FLIP_PERMUTATION, :].copy()
    out[..., 0] = -out[..., 0]
    return out
