"""Live lifting: 2D keypoints pushed one frame at a time, 3D poses out with a chosen look-ahead.

    from hotpose import PoseStream
    stream = PoseStream("model.ckpt", image_size=(640, 480), layout="coco", delay=0)   # 0: causal
    for keypoints in detector_output:          # (17, 2|3) pixels, or None when nobody was found
        for frame, pose in stream.push(keypoints):
            ...                                # pose (17, 3), metres, root-relative camera frame
    rest = stream.flush()                      # the poses still waiting for their future frames

**Windows.** The pose of frame ``t`` comes from a window of the model's ``F`` frames centred on it (or on
the last frame of its group, below). With ``delay=k`` the window may use frames up to ``t + k``; the
frames after that are replaced by frame ``t + k`` (edge replication, as at the end of a track), and the
frames before the stream's first usable frame by that frame. ``delay="centre"`` is ``k = (F - 1) // 2``,
a complete window. ``k = 0`` is causal.

**Work reuse.** A run starts every ``stride`` new frames. A seq2seq model (one output per window frame)
then runs *one* window, centred on the newest frame of the group ``c`` and ending at ``c + k``, and gives
the poses of the ``stride`` frames ``c - stride + 1 .. c`` (positions ``h - stride + 1 .. h`` of the
window, so each has at least ``k`` real future frames). A seq2frame model runs one window per frame of the
group, all in one batch. Latency is therefore ``k .. k + stride - 1`` frames; ``stride=1`` gives every
frame exactly ``k``. Flip test-time augmentation runs the mirrored windows in the same call.

**Offline twin.** These windows are :func:`hotpose.inference.lifting.centred_windows`, run by the same
:func:`~hotpose.inference.lifting.run_windows`, so a stream's output equals offline lifting with
``plan="centred"`` (``python -m hotpose.infer lifting.plan=centred lifting.delay=k lifting.stride=s``);
for a seq2frame model at ``delay="centre"``, ``stride=1`` that is the offline default.

**Gaps.** A frame without a detection (``push(None)``) or with unknown joints (NaN) is filled from the
past only: each unknown joint holds its last detected value (no future frame is waited for), and the pose
is flagged (``detected``, ``filled``). Until every joint has been seen once there is nothing to hold: those
frames are emitted at once with a NaN pose, flagged, and the stream's windows start at the first usable
frame.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hotpose.data.skeleton import NUM_JOINTS
from hotpose.inference import checkpoint
from hotpose.inference.keypoints import LAYOUT_JOINTS, check_image_size, layout_of, to_h36m
from hotpose.inference.lifter import Lifter
from hotpose.inference.lifting import (
    check_per_frame_output,
    check_stream_plan,
    group_windows,
    model_inputs,
    run_windows,
    stitch,
)

CENTRE = "centre"


@dataclass
class StreamPose:
    """The 3D pose of one input frame. Unpacks as ``frame, pose``.

    Attributes:
        frame: the input frame's number (0 = the first pushed).
        pose: ``(17, 3)`` float32 metres, camera frame, root joint 0; NaN before the first usable frame.
        detected: the frame had a detection. filled: ``(17,)`` joints held from the past, not detected.
        lag: frames pushed after this one before it was emitted (its latency in frames).
        keypoints_2d: ``(17, 2)`` H36M pixels given to the model (after holding), NaN before the first
            usable frame.
    """

    frame: int
    pose: np.ndarray
    detected: bool
    filled: np.ndarray
    lag: int
    keypoints_2d: np.ndarray = field(repr=False, default_factory=lambda: np.full((NUM_JOINTS, 2), np.nan))

    def __iter__(self) -> Iterator[object]:
        return iter((self.frame, self.pose))


@dataclass
class _Pending:
    detected: bool
    filled: np.ndarray
    points: np.ndarray = field(repr=False)


class PoseStream:
    """A model lifting a live 2D stream (module docstring).

    Args:
        model: a checkpoint path, a :class:`~hotpose.inference.lifter.Lifter` (its device, precision, flip
            and score use are taken) or a :class:`~hotpose.inference.checkpoint.LoadedModel`.
        image_size: ``(width, height)`` pixels of the frames.
        delay: ``"centre"`` or look-ahead frames ``0 <= k <= (F - 1) // 2``.
        stride: new frames per model run (seq2seq: ``1 .. (F - 1) // 2 + 1``).
        layout: joint order of the pushed keypoints (``h36m``, ``coco``; 33 joints are BlazePose).
    """

    def __init__(self, model: str | Path | Lifter | checkpoint.LoadedModel, image_size: tuple[int, int],
                 delay: int | str = CENTRE, stride: int = 1, layout: str | None = None,
                 device: str | torch.device = "cpu", precision: str = "float32", flip: bool = True,
                 use_scores: bool = True, neck_nose: str = "nose", batch_size: int = 64) -> None:
        if not isinstance(model, Lifter):
            loaded = model if isinstance(model, checkpoint.LoadedModel) else checkpoint.load_model(model)
            model = Lifter(loaded, device=device, precision=precision, flip=flip, use_scores=use_scores)
        self.lifter = model
        if not isinstance(image_size, tuple | list) or len(image_size) != 2:
            raise ValueError(f"image_size must be (width, height) in pixels, got {image_size!r}")
        self.width, self.height = check_image_size(*image_size, where="PoseStream")
        self.frames, self.pipeline = int(model.net.frames), model.pipeline
        check_per_frame_output(model.net, self.pipeline)
        self.half = (self.frames - 1) // 2
        if delay == CENTRE:
            delay = self.half
        if isinstance(delay, bool) or not isinstance(delay, int | np.integer):
            raise ValueError(f"delay must be 'centre' or a whole number of frames in [0, {self.half}], "
                             f"got {delay!r}")
        if isinstance(stride, bool) or not isinstance(stride, int | np.integer):
            raise ValueError(f"stride must be a whole number of frames, got {stride!r}")
        self.delay, self.stride = int(delay), int(stride)
        check_stream_plan(self.frames, self.pipeline, self.delay, self.stride)
        if layout is not None and layout not in LAYOUT_JOINTS:
            raise ValueError(f"PoseStream: unknown layout {layout!r}; expected one of {tuple(LAYOUT_JOINTS)}")
        self.layout, self.neck_nose, self.batch_size = layout, neck_nose, int(batch_size)
        self.windows = 0  # model windows run so far (per pass)
        self.seconds = 0.0  # wall time of the model calls
        self._pushed = 0
        self._start: int | None = None
        self._known_points = np.full((NUM_JOINTS, 2), np.nan, dtype=np.float32)
        self._known_scores = np.full((NUM_JOINTS,), np.nan, dtype=np.float32)
        self._has_scores: bool | None = None
        self._inputs: list[np.ndarray] = []  # model inputs of frames _base, _base + 1, ...
        self._base = 0
        self._pending: dict[int, _Pending] = {}
        self._next_last = 0  # newest frame of the next group to run
        self._closed = False

    # -- input -----------------------------------------------------------------------------------------------
    def _frame_points(self, keypoints: np.ndarray | None, score: float | np.ndarray | None
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        """Pushed keypoints → H36M points ``(17, 2)`` (NaN unknown) and scores ``(17,)`` or None."""
        frame = self._pushed
        if keypoints is None:
            return np.full((NUM_JOINTS, 2), np.nan, dtype=np.float32), None
        array = np.asarray(keypoints, dtype=np.float64)
        if array.ndim != 2 or array.shape[-1] not in (2, 3):
            raise ValueError(f"PoseStream.push: frame {frame}: keypoints must be (joints, 2|3), got shape "
                             f"{array.shape}")
        layout = layout_of(array.shape[0], self.layout, f"PoseStream.push: frame {frame}")
        if np.isinf(array).any():
            raise ValueError(f"PoseStream.push: frame {frame}: keypoints contain infinite values; mark unknown "
                             "joints with NaN")
        if not np.isfinite(array[:, :2]).any():
            raise ValueError(f"PoseStream.push: frame {frame}: every keypoint is NaN; push(None) for a frame "
                             "without a detection")
        scores = array[:, 2] if array.shape[1] == 3 else None
        if score is not None:
            scores = np.broadcast_to(np.asarray(score, dtype=np.float64), (array.shape[0],)).copy() \
                if np.ndim(score) == 0 else np.asarray(score, dtype=np.float64)
            if scores.shape != (array.shape[0],):
                raise ValueError(f"PoseStream.push: frame {frame}: score must be one number or one per joint "
                                 f"({array.shape[0]},), got shape {scores.shape}")
        points, mapped = to_h36m(array[None, :, :2], None if scores is None else scores[None], layout,
                                 neck_nose=self.neck_nose)
        return points[0], None if mapped is None else mapped[0]

    def push(self, keypoints: np.ndarray | None, score: float | np.ndarray | None = None) -> list[StreamPose]:
        """Add the next frame's keypoints ``(J, 2|3)`` pixels (third channel: confidences; ``score``: one
        confidence or one per joint), or None for a frame without a detection. Returns the poses that became
        due, in frame order."""
        if self._closed:
            raise RuntimeError("PoseStream: push after flush()/close(): the stream has ended; start a new one")
        points, scores = self._frame_points(keypoints, score)
        if keypoints is not None:
            if self._has_scores is not None and self._has_scores != (scores is not None):
                raise ValueError(f"PoseStream.push: frame {self._pushed}: scores given for some frames and not "
                                 "for others; give them always or never")
            self._has_scores = scores is not None
        frame = self._pushed
        self._pushed += 1
        missing = ~np.isfinite(points).all(axis=-1)
        self._known_points[~missing] = points[~missing]
        if scores is not None:
            self._known_scores[~missing] = scores[~missing]
        detected = keypoints is not None and not missing.any()
        if self._start is None and np.isfinite(self._known_points).all():
            self._start = frame
            self._next_last = frame + self.stride - 1
            self._base = frame
        if self._start is None:  # nothing to hold yet: no pose, emitted at once
            return [StreamPose(frame, np.full((NUM_JOINTS, 3), np.nan, dtype=np.float32), False,
                               np.ones(NUM_JOINTS, dtype=bool), 0)]
        held = self._known_points.copy()
        held_scores = self._known_scores.copy() if self._has_scores else None
        self._inputs.append(model_inputs(held, held_scores, self.width, self.height, int(self.lifter.net.in_channels),
                                         self.lifter.use_scores))
        self._pending[frame] = _Pending(bool(detected), missing, held)
        return self._run_due(final=False)

    # -- output ----------------------------------------------------------------------------------------------
    def _run_due(self, final: bool) -> list[StreamPose]:
        newest = self._pushed - 1
        groups: list[tuple[np.ndarray, np.ndarray]] = []
        while self._start is not None and (self._next_last + self.delay <= newest
                                           or final and self._next_last - self.stride < newest):
            limit = min(self._next_last + self.delay, newest)
            groups.append(group_windows(self._next_last, self.frames, self.pipeline, self.stride, limit,
                                        self._start, newest + 1))
            self._next_last += self.stride
        if not groups:
            return []
        index = np.concatenate([g[0] for g in groups]) - self._base
        keep = np.concatenate([g[1] for g in groups])
        inputs = torch.as_tensor(np.stack(self._inputs))
        total = torch.zeros(len(inputs), NUM_JOINTS, 3, dtype=torch.float64)
        count = torch.zeros(len(inputs), dtype=torch.float64)
        lifter = self.lifter
        tick = time.perf_counter()
        run_windows(lifter.net, inputs, torch.as_tensor(index), torch.as_tensor(keep), total, count,
                    lifter.flip, self.batch_size, lifter.device, lifter.precision)
        self.seconds += time.perf_counter() - tick
        self.windows += len(index)
        done = sorted(f for f in self._pending if f <= self._next_last - self.stride)  # the groups' frames
        rows = torch.as_tensor([f - self._base for f in done])
        poses = stitch(total[rows], count[rows])
        out = []
        for f, pose in zip(done, poses, strict=True):
            info = self._pending.pop(f)
            out.append(StreamPose(f, pose, info.detected, info.filled, newest - f, info.points))
        self._drop_old()
        return out

    def _drop_old(self) -> None:
        """Forget inputs no future window reads (the oldest reaches ``half`` before the next group)."""
        assert self._start is not None
        oldest = max(self._start, self._next_last - self.stride + 1 - self.half)
        drop = min(oldest - self._base, len(self._inputs))
        if drop > 0:
            del self._inputs[:drop]
            self._base += drop

    def flush(self) -> list[StreamPose]:
        """End the stream: emit every pose still waiting (their missing future edge-replicated). A flushed
        stream takes no more frames."""
        if self._closed:
            return []
        out = self._run_due(final=True)
        self._closed = True
        return out

    close = flush

    @property
    def pushed(self) -> int:
        """Frames pushed so far."""
        return self._pushed

    @property
    def fps(self) -> float:
        """Frames lifted per second of model time."""
        return (self._pushed - len(self._pending)) / max(self.seconds, 1e-9)
