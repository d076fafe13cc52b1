"""The Python API: a checkpoint in, 3D poses of 2D keypoint arrays, files or tracks out.

    from hotpose import Lifter
    lifter = Lifter.from_checkpoint("model.ckpt", device="cpu", precision="float32")
    result = lifter.lift(keypoints, image_size=(1920, 1080), layout="coco")   # keypoints (t, 17, 2|3) pixels
    result.poses_3d          # (t, 17, 3) metres, camera frame, root-relative
    result.filled_frames     # (t,) frames whose 2D was (partly) filled, not detected

``python -m hotpose.infer`` is this plus file handling and pictures; :func:`load_model` gives the network
alone. The model is always built from the configuration stored in the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hotpose.inference import checkpoint
from hotpose.inference.keypoints import KeypointTrack, load_keypoints, track_from_array
from hotpose.inference.lifting import PLANS, LiftResult, lift_track
from hotpose.inference.onnx_backend import check_backend, export_for_onnxruntime
from hotpose.precision import check_precision, prepare_model


def load_model(ckpt: str | Path, device: str | torch.device = "cpu", precision: str = "float32") -> nn.Module:
    """The network of a hotpose checkpoint (trained or converted), weights loaded strictly, in eval mode on
    ``device`` and prepared for ``precision``: ``net(x (b, F, 17, c))`` returns an
    :class:`~hotpose.models.hourglass.HourglassOutput` (``pose (b, f, 17, 3)``, ``frame_index``).
    At ``bf16`` call it under ``hotpose.precision.autocast("bf16", device)`` (on CPU its linear weights
    are stored in bfloat16)."""
    return prepare_model(checkpoint.load_model(ckpt).net, precision, device)


class Lifter:
    """A loaded model and how to run it: 2D keypoints of any length → one 3D pose per frame.

    Args:
        model: a :class:`~hotpose.inference.checkpoint.LoadedModel` (see :meth:`from_checkpoint`).
        device: where the model runs. precision: ``float32`` or ``bf16`` (:mod:`hotpose.precision`).
        flip: test-time flip augmentation. batch_size: windows per model call.
        stride: seq2seq window step (None: the frame count, no overlap; smaller overlaps and averages).
        use_scores: give detector confidences to 3-channel backbones.
        plan: ``tiled`` (default) or ``centred`` (the windows of a live stream,
            :func:`~hotpose.inference.lifting.centred_windows`), with ``delay`` frames of look-ahead.
        backend: ``torch``, or ``onnxruntime`` (the network exported to ONNX once, checked against
            PyTorch, run by ONNX Runtime; float32 on CPU; :mod:`hotpose.inference.onnx_backend`).
    """

    def __init__(self, model: checkpoint.LoadedModel, device: str | torch.device = "cpu",
                 precision: str = "float32", flip: bool = True, batch_size: int = 32, stride: int | None = None,
                 use_scores: bool = True, plan: str = "tiled", delay: int | None = None,
                 backend: str = "torch") -> None:
        if plan not in PLANS:
            raise ValueError(f"plan must be one of {PLANS}, got {plan!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model
        self.device = torch.device(device)
        check_precision(precision, device)
        check_backend(backend, precision, self.device)
        self.precision, self.backend = precision, backend
        if backend == "onnxruntime":
            self.net = export_for_onnxruntime(model.net)
        else:
            self.net = prepare_model(model.net, precision, self.device)
        self.flip, self.batch_size, self.stride = bool(flip), int(batch_size), stride
        self.use_scores, self.plan, self.delay = bool(use_scores), plan, delay

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", precision: str = "float32",
                        **options: Any) -> Lifter:
        """Build the checkpoint's model (its stored configuration) and wrap it; ``options`` as in the class."""
        return cls(checkpoint.load_model(path), device=device, precision=precision, **options)

    @property
    def frames(self) -> int:
        return self.model.frames

    @property
    def pipeline(self) -> str:
        return self.model.pipeline

    def describe(self) -> str:
        backend = "" if self.backend == "torch" else f" ({self.backend})"
        return f"{self.model.describe()}; {self.precision} on {self.device}{backend}"

    def lift_track(self, track: KeypointTrack) -> LiftResult:
        """3D poses of an H36M-17 :class:`~hotpose.inference.keypoints.KeypointTrack` (gaps filled, flagged)."""
        return lift_track(self.net, track, self.pipeline, flip=self.flip, batch_size=self.batch_size,
                          stride=self.stride, use_scores=self.use_scores, device=self.device,
                          precision=self.precision, plan=self.plan, delay=self.delay)

    def lift(self, keypoints: np.ndarray, image_size: tuple[int, int], layout: str | None = None,
             scores: np.ndarray | None = None, detected: np.ndarray | None = None,
             neck_nose: str = "nose") -> LiftResult:
        """3D poses of ``keypoints (t, J, 2|3)`` pixels (third channel: confidences) of ``layout`` (``h36m``,
        ``coco``, ``blazepose``; 33 joints need none, 17 must say) in an image of ``image_size = (w, h)``.

        NaN marks unknown joints or frames without a detection; they are filled from their neighbours and
        flagged (``result.filled``, ``result.filled_frames``). Returns a
        :class:`~hotpose.inference.lifting.LiftResult` (``poses_3d (t, 17, 3)``).
        """
        if not isinstance(image_size, tuple | list) or len(image_size) != 2:
            raise ValueError(f"image_size must be (width, height) in pixels, got {image_size!r}")
        track = track_from_array(keypoints, layout, image_size[0], image_size[1], scores=scores,
                                 detected=detected, neck_nose=neck_nose, where="Lifter.lift")
        return self.lift_track(track)

    def lift_file(self, path: str | Path, layout: str | None = None, image_size: tuple[int, int] | None = None,
                  person: int = 0, neck_nose: str = "nose") -> LiftResult:
        """3D poses of a keypoint file (``.npz``, ``.npy``, ``.json``; docs/inference.md)."""
        width, height = image_size if image_size is not None else (None, None)
        return self.lift_track(load_keypoints(path, layout=layout, width=width, height=height, person=person,
                                              neck_nose=neck_nose))
