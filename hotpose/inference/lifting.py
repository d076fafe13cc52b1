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
   ``plan="centred"`` uses the windows of a live stream instead (:func:`centred_windows`: each frame from a
   window centred on it, or on the last frame of its group of ``stride``, the future beyond ``delay``
   frames edge-replicated), so that :class:`~hotpose.inference.stream.PoseStream` has an offline twin.
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


PLANS = ("tiled", "centred")


def window_index(length: int, frames: int, pipeline: str, stride: int | None = None, plan: str = "tiled",
                 delay: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Frame numbers ``(n, frames)`` of the inference windows over a track of ``length`` (clamped, i.e.
    edge-padded) and ``keep (n, frames)``: which window positions give a frame's output.

    ``plan="tiled"`` (the offline default): ``seq2seq`` windows tile the track every ``stride`` (default
    ``frames``), keeping the real frames; ``seq2frame`` runs a window centred on every frame and keeps its
    centre. ``plan="centred"``: the windows of a live stream (:func:`centred_windows`) with ``delay`` frames
    of look-ahead (default: the full half window) and ``stride`` (default 1).
    """
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    if plan not in PLANS:
        raise ValueError(f"window plan must be one of {PLANS}, got {plan!r}")
    if plan == "centred":
        return centred_windows(length, frames, pipeline, (frames - 1) // 2 if delay is None else delay,
                               stride or 1)
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


def check_stream_plan(frames: int, pipeline: str, delay: int, stride: int) -> None:
    """ValueError unless ``0 <= delay <= (frames - 1) // 2`` and ``1 <= stride`` (``<= half + 1`` for seq2seq)."""
    half = (frames - 1) // 2
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
    if not 0 <= delay <= half:
        raise ValueError(f"delay must be 'centre' or a whole number of frames in [0, {half}] for a "
                         f"{frames}-frame model, got {delay!r}")
    if stride < 1 or (pipeline == "seq2seq" and stride > half + 1):
        top = half + 1 if pipeline == "seq2seq" else "any"
        raise ValueError(f"stride must be in [1, {top}] for a {frames}-frame {pipeline} model, got {stride!r}")


def group_windows(last: int, frames: int, pipeline: str, stride: int, limit: int, first: int = 0,
                  end: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The windows that give frames ``last - stride + 1 .. last`` of a stream whose newest usable frame is
    ``limit`` and whose track starts at ``first`` (frames outside ``[first, limit]`` are edge-replicated).

    Every window is centred (position ``h = (frames - 1) // 2``): ``seq2seq`` runs one window centred on
    ``last`` and keeps positions ``h - stride + 1 .. h`` (so each of those frames has at least
    ``limit - last`` real future frames); ``seq2frame`` runs one window centred on each frame and keeps the
    centre. Frames ``>= end`` (past the end of a finished track) are not kept.
    """
    half = (frames - 1) // 2
    offsets = np.arange(frames) - half
    targets = np.arange(last - stride + 1, last + 1)
    targets = targets[targets >= first]
    if end is not None:
        targets = targets[targets < end]
    if pipeline == "seq2seq":
        index = np.clip(last + offsets, first, limit)[None]
        keep = np.isin(last + offsets, targets)[None]
    else:
        index = np.clip(targets[:, None] + offsets[None], first, limit)
        keep = np.zeros_like(index, dtype=bool)
        keep[:, half] = True
    return index, keep


def centred_windows(length: int, frames: int, pipeline: str, delay: int, stride: int = 1
                    ) -> tuple[np.ndarray, np.ndarray]:
    """All windows a stream with ``delay`` frames of look-ahead and ``stride`` runs over a track of
    ``length`` (:func:`group_windows` for each group of ``stride`` frames, the future beyond
    ``last + delay`` edge-replicated): the offline twin of :class:`hotpose.inference.stream.PoseStream`."""
    check_stream_plan(frames, pipeline, delay, stride)
    groups = [group_windows(last, frames, pipeline, stride, min(last + delay, length - 1), 0, length)
              for last in range(stride - 1, length + stride - 1, stride)]
    return np.concatenate([g[0] for g in groups]), np.concatenate([g[1] for g in groups])


def model_inputs(points: np.ndarray, scores: np.ndarray | None, width: int, height: int, in_channels: int,
                 use_scores: bool = True) -> np.ndarray:
    """Pixels ``(..., 17, 2)`` → the model's input ``(..., 17, 2|3)`` float32: normalised screen coordinates,
    plus the scores as a third channel for a 3-channel backbone (without scores the hourglass appends 1)."""
    inputs = normalize_screen(points.astype(np.float32), width, height)
    if in_channels == 3 and use_scores and scores is not None:
        inputs = np.concatenate([inputs, scores[..., None].astype(np.float32)], axis=-1)
    return inputs.astype(np.float32)


@torch.no_grad()
def run_windows(net: nn.Module, inputs: torch.Tensor, index: torch.Tensor, keep: torch.Tensor, total: torch.Tensor,
                count: torch.Tensor, flip: bool = True, batch_size: int = 64, device: str | torch.device = "cpu",
                precision: str = "float32", show_progress: bool = False) -> int:
    """Run the windows ``inputs[index]`` (``index (n, F)`` rows of ``inputs (t, 17, c)``) in batches and add
    every kept output frame (``keep (n, F)``) to ``total[frame]`` / ``count[frame]`` (in place); with
    ``flip`` the mirrored windows too; ``show_progress`` draws a bar on a terminal (offline lifting, not
    the stream's small calls). Returns the number of passes (1 or 2)."""
    from hotpose.precision import autocast

    batches = range(0, len(index), batch_size)
    description = f"lifting {len(index)} windows, {batch_size} per batch"
    for lo in track_progress(batches, description, enabled=None if show_progress else False):
        rows = index[lo:lo + batch_size]
        x = inputs[rows].to(device)
        passes = [(x, False)] + ([(flip_pose(x), True)] if flip else [])
        for x_pass, mirrored in passes:
            with autocast(precision, device):
                out = net(x_pass)
            pose = out.pose.float()
            pose = flip_pose(pose) if mirrored else pose
            position = out.frame_index.cpu()
            source = torch.gather(rows, 1, position)  # input frame of each output frame
            use = torch.gather(keep[lo:lo + batch_size], 1, position)
            total.index_add_(0, source[use], pose.cpu().double()[use])
            count.index_add_(0, source[use], torch.ones(int(use.sum()), dtype=torch.float64))
    return 2 if flip else 1


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
    def filled_frames(self) -> np.ndarray:
        """``(t,)`` bool: frames with at least one joint not detected (interpolated or held)."""
        return self.filled.any(axis=1)

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
               stride: int | None = None, use_scores: bool = True, device: str | torch.device = "cpu",
               precision: str = "float32", plan: str = "tiled", delay: int | None = None) -> LiftResult:
    """Lift ``track`` with the hourglass ``net`` (eval mode): see the module docstring. ``plan`` / ``delay``
    choose the windows (:func:`window_index`); ``precision`` is one of :data:`hotpose.precision.PRECISIONS`."""
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
    inputs = model_inputs(points, scores, track.width, track.height, in_channels, use_scores)
    index, keep = window_index(len(track), frames, pipeline, stride, plan, delay)
    total = torch.zeros(len(track), inputs.shape[1], 3, dtype=torch.float64)
    count = torch.zeros(len(track), dtype=torch.float64)
    net = net.to(device)
    start = time.perf_counter()
    passes = run_windows(net, torch.as_tensor(inputs), torch.as_tensor(index), torch.as_tensor(keep), total,
                         count, flip, batch_size, device, precision, show_progress=True)
    seconds = time.perf_counter() - start
    return LiftResult(stitch(total, count), points.astype(np.float32), scores, track.detected.copy(), missing,
                      len(index), passes, seconds)


def stitch(total: torch.Tensor, count: torch.Tensor) -> np.ndarray:
    """Per-frame mean ``total / count`` as float32 numpy with the root joint set to 0; ValueError naming the
    frames that received no prediction."""
    if bool((count == 0).any()):
        lost = torch.nonzero(count == 0).flatten()[:10].tolist()
        raise ValueError(f"frames {lost} received no prediction (does the pruner keep the centre frame?)")
    poses = (total / count[:, None, None]).float().numpy()
    poses[:, ROOT] = 0.0
    return poses
