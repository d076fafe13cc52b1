"""Lift a 2D keypoint track of any length to one root-relative 3D pose per input frame.

Steps (:func:`lift_track`):

1. **Gaps.** Unknown joints (NaN: frames without a detection, or single joints) are filled per joint by
   linear interpolation in time and held constant before the first / after the last known value
   (:func:`fill_missing`); they are flagged in the result. A track with no detection at all is refused.
2. **Normalisation.** Pixels → ``x / w * 2 - [1, h / w]`` with the image size (as in training).
3. **Confidence.** A 3-channel backbone (MotionBERT, MotionAGFormer) gets the scores as the third
   channel; without scores the hourglass appends a constant 1 (its documented rule). A 2-channel
   backbone ignores scores.
4. **Windows** of the model's ``F`` frames, frames beyond the ends edge-replicated
   (:mod:`hotpose.data.windows`): ``seq2seq`` tiles the track with ``stride`` (default ``F``, no overlap)
   and keeps every real frame of every window; ``seq2frame`` (models that keep the centre frame) runs one
   window centred on every frame and keeps its centre. A sequence shorter than ``F`` is one padded window.
5. **Flip TTA** (optional): the mirrored windows are run too and their mirrored-back outputs enter the same
   per-frame average; each pass selects its own tokens.
6. **Stitching.** Every output frame is added to the input frame it came from (``frame_index``); frames
   predicted more than once (overlapping windows, flip) are averaged. The root joint is set to 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hotpose.data.camera import normalize_screen
from hotpose.data.skeleton import JOINT_NAMES, ROOT
from hotpose.data.transforms import flip_pose
from hotpose.data.windows import seq2frame_table, seq2seq_table, window_frames
from hotpose.inference.keypoints import KeypointTrack
from hotpose.models.recoverers import NoRecovery
from hotpose.progress import track as track_progress

PIPELINES = ("seq2seq", "seq2frame")


def fill_missing(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN entries of ``values (t, j, c)`` per joint along time → ``(filled, was_missing (t, j))``.

    A joint unknown in some frames is interpolated linearly between its known frames and held at the
    ends. A joint known in no frame makes the whole track unusable (ValueError naming the joint).
    """
    if values.ndim != 3:
        raise ValueError(f"fill_missing expects (t, joints, channels), got shape {values.shape}")
    missing = ~np.isfinite(values).all(axis=-1)
    if not missing.any():
        return values.copy(), missing
    if missing.all():
        raise ValueError("no frame has a detection: nothing to lift")
    never = np.flatnonzero(missing.all(axis=0))
    if len(never):
        names = [JOINT_NAMES[j] if values.shape[1] == len(JOINT_NAMES) else str(j) for j in never]
        raise ValueError(f"joints {names} are missing in every frame")
    filled = values.astype(np.float64, copy=True)
    time_axis = np.arange(len(values))
    for j in np.flatnonzero(missing.any(axis=0)):
        known = ~missing[:, j]
        for c in range(values.shape[2]):
            # np.interp holds the first / last known value outside the known range.
            filled[:, j, c] = np.interp(time_axis, time_axis[known], filled[known, j, c])
    return filled.astype(values.dtype), missing


def window_index(length: int, frames: int, pipeline: str, stride: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Frame numbers ``(n, frames)`` of the inference windows over a track of ``length`` (clamped, i.e.
    edge-padded) and ``keep (n, frames)``: which window positions give a frame's output.

    ``seq2seq``: windows tiling the track every ``stride`` (default ``frames``), keeping the real frames;
    ``seq2frame``: a window centred on every frame, keeping only its centre.
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    lengths = np.array([length])
    if pipeline == "seq2seq":
        table = seq2seq_table(lengths, frames, stride)
        index, keep = window_frames(table, lengths, frames)
    else:
        table = seq2frame_table(lengths, frames)
        index, _ = window_frames(table, lengths, frames)
        keep = np.zeros_like(index, dtype=bool)
        keep[:, (frames - 1) // 2] = True
    return index, keep


@dataclass
class LiftResult:
    """One 3D pose per input frame.

    Attributes:
        poses_3d: ``(t, 17, 3)`` float32, metres, camera frame (x right, y down, z forward), root joint 0.
        keypoints_2d: ``(t, 17, 2)`` float32 pixels given to the model (after gap filling).
        scores: ``(t, 17)`` float32 confidences after gap filling, or None.
        detected: ``(t,)`` bool, the frame had a detection.
        filled: ``(t, 17)`` bool, the joint's 2D was interpolated / held (not detected).
        windows: number of model windows run (per pass), passes: 1 or 2 (flip).
        seconds: wall time of the model calls.
    """

    poses_3d: np.ndarray
    keypoints_2d: np.ndarray
    scores: np.ndarray | None
    detected: np.ndarray
    filled: np.ndarray
    windows: int
    passes: int
    seconds: float

    @property
    def fps(self) -> float:
        return len(self.poses_3d) / max(self.seconds, 1e-9)


def check_per_frame_output(net: nn.Module, pipeline: str) -> None:
    """A seq2seq model that prunes without recovery predicts only its kept frames: no pose for the others."""
    recoverer = getattr(net, "recoverer", None)
    if pipeline == "seq2seq" and getattr(net, "stages", None) and (recoverer is None
                                                                  or isinstance(recoverer, NoRecovery)):
        raise ValueError("this model prunes frames without a recoverer and is not seq2frame: it predicts only "
                         "the kept frames of each window, so it cannot give one pose per input frame")


@torch.no_grad()
def lift_track(net: nn.Module, track: KeypointTrack, pipeline: str, flip: bool = True, batch_size: int = 64,
               stride: int | None = None, use_scores: bool = True, device: str | torch.device = "cpu"
               ) -> LiftResult:
    """Lift ``track`` with the hourglass ``net`` (eval mode): see the module docstring."""
    check_per_frame_output(net, pipeline)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    frames, in_channels = int(net.frames), int(net.in_channels)
    points, missing = fill_missing(track.points)
    scores = None
    if track.scores is not None:
        raw_scores = track.scores.astype(np.float32).copy()
        raw_scores[missing] = np.nan  # a filled joint's score is interpolated like its position
        scores = fill_missing(raw_scores[..., None])[0][..., 0]
    inputs = normalize_screen(points.astype(np.float32), track.width, track.height)
    if in_channels == 3 and use_scores and scores is not None:
        inputs = np.concatenate([inputs, scores[..., None]], axis=-1)
    index, keep = window_index(len(track), frames, pipeline, stride)
    x_all = torch.as_tensor(inputs, dtype=torch.float32)
    total = torch.zeros(len(track), inputs.shape[1], 3, dtype=torch.float64)
    count = torch.zeros(len(track), dtype=torch.float64)
    index_t, keep_t = torch.as_tensor(index), torch.as_tensor(keep)
    net = net.to(device)
    start = time.perf_counter()
    for lo in track_progress(range(0, len(index), batch_size), f"lifting {len(index)} windows, {batch_size} per batch"):
        rows = index_t[lo:lo + batch_size]
        x = x_all[rows].to(device)
        passes = [(x, False)] + ([(flip_pose(x), True)] if flip else [])
        for x_pass, mirrored in passes:
            out = net(x_pass)
            pose = flip_pose(out.pose) if mirrored else out.pose
            position = out.frame_index.cpu()
            source = torch.gather(rows, 1, position)  # input frame of each output frame
            use = torch.gather(keep_t[lo:lo + batch_size], 1, position)
            total.index_add_(0, source[use], pose.cpu().double()[use])
            count.index_add_(0, source[use], torch.ones(int(use.sum()), dtype=torch.float64))
    seconds = time.perf_counter() - start
    if bool((count == 0).any()):
        lost = torch.nonzero(count == 0).flatten()[:10].tolist()
        raise ValueError(f"frames {lost} received no prediction (does the pruner keep the centre frame?)")
    poses = (total / count[:, None, None]).float().numpy()
    poses[:, ROOT] = 0.0
    return LiftResult(poses, points.astype(np.float32), scores, track.detected.copy(), missing, len(index),
                      len(passes), seconds)
