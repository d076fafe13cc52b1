"""Training losses on 3D poses: pure tensor functions and the composite :class:`PoseLoss`.

Every function takes ``pred`` and ``target`` of shape ``(b, f, j, 3)`` in metres and an optional
``valid`` mask ``(b, f)`` (True on real frames). With a mask, edge-replicated padding frames are left
out of the mean (a frame-to-frame term counts a pair only when both frames are real). The official
HoT/MixSTE/MHFormer training code has no mask: it averages over every frame of the window, padding
included. ``valid=None`` reproduces that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

#: Per-joint weights of the weighted MPJPE (MixSTE's recipe; H36M-17 joint order of ``skeleton.py``):
#: knees/ankles 2.5, elbows/wrists 4, head/shoulders 1.5, trunk 1.
JOINT_WEIGHTS: tuple[float, ...] = (1, 1, 2.5, 2.5, 1, 2.5, 2.5, 1, 1, 1, 1.5, 1.5, 4, 4, 1.5, 4, 4)


def _check_poses(pred: Tensor, target: Tensor | None, valid: Tensor | None) -> None:
    if pred.ndim != 4 or pred.shape[-1] != 3:
        raise ValueError(f"poses must be (b, f, j, 3), got prediction shape {tuple(pred.shape)}")
    if target is not None and target.shape != pred.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
    if valid is not None and tuple(valid.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"valid mask must be (b, f) = {tuple(pred.shape[:2])}, got {tuple(valid.shape)}")


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of ``values (b, f, ...)`` over everything, or over the ``(b, f)`` entries where ``mask``."""
    if mask is None:
        return values.mean()
    per_frame = values.reshape(*values.shape[:2], -1).mean(dim=-1)
    m = mask.to(per_frame.dtype)
    # clamp: an all-padding batch gives 0, not NaN
    return (per_frame * m).sum() / m.sum().clamp_min(1.0)


def _pair_mask(valid: Tensor | None) -> Tensor | None:
    """``(b, f)`` frame mask → ``(b, f-1)`` mask of consecutive pairs whose two frames are real."""
    return None if valid is None else valid[:, 1:] & valid[:, :-1]


def _joint_weights(weights: Tensor | Sequence[float], like: Tensor) -> Tensor:
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != (like.shape[2],):
        raise ValueError(f"need one weight per joint ({like.shape[2]}), got {tuple(w.shape)}")
    return w


def mpjpe(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Mean per-joint position error: mean Euclidean distance over b, f, j (real frames with ``valid``)."""
    _check_poses(pred, target, valid)
    return _masked_mean(torch.linalg.vector_norm(pred - target, dim=-1), valid)


def weighted_mpjpe(pred: Tensor, target: Tensor, valid: Tensor | None = None,
                   weights: Tensor | Sequence[float] = JOINT_WEIGHTS) -> Tensor:
    """``mean(w_j · ||pred - target||)`` over b, f, j (the weights are not normalised, as in MixSTE)."""
    _check_poses(pred, target, valid)
    w = _joint_weights(weights, pred)
    return _masked_mean(torch.linalg.vector_norm(pred - target, dim=-1) * w, valid)


def temporal_consistency(pred: Tensor, valid: Tensor | None = None,
                         weights: Tensor | Sequence[float] = JOINT_WEIGHTS) -> Tensor:
    """``mean(w_j · (pred[:, t+1] - pred[:, t])²)`` over b, f-1, j and the 3 coordinates.

    A smoothness prior on the prediction alone (the target plays no part, as in MixSTE).
    """
    _check_poses(pred, None, valid)
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    w = _joint_weights(weights, pred)
    squared_step = (pred[:, 1:] - pred[:, :-1]) ** 2 * w[:, None]
    return _masked_mean(squared_step, _pair_mask(valid))


def scaled_mpjpe(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """MPJPE after scaling each predicted frame by ``<pred, target> / <pred, pred>`` (MotionBERT's loss)."""
    _check_poses(pred, target, valid)
    dot = (pred * target).sum(dim=(-2, -1), keepdim=True)
    scale = dot / (pred * pred).sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return mpjpe(scale * pred, target, valid)


def mean_velocity_error(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """MPJVE: mean Euclidean distance between predicted and true frame-to-frame displacements."""
    _check_poses(pred, target, valid)
    if pred.shape[1] < 2:
        return pred.new_zeros(())
    err = (pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])
    return _masked_mean(torch.linalg.vector_norm(err, dim=-1), _pair_mask(valid))


class PoseLoss(nn.Module):
    """Weighted sum of the losses above; a weight of 0 skips its term.

    ``loss/mixste.yaml``: ``weighted_mpjpe 1, temporal_consistency 0.5, velocity 2``;
    ``loss/mpjpe.yaml``: ``mpjpe 1`` (MHFormer); ``loss/motionbert.yaml``: ``mpjpe 1, velocity 20,
    scaled_mpjpe 0.5`` (MotionBERT / MotionAGFormer). ``mask_padding`` leaves padding frames out when a
    ``valid`` mask is given; ``False`` averages over the whole window, as the official code does.
    """

    def __init__(self, mpjpe: float = 0.0, weighted_mpjpe: float = 0.0, temporal_consistency: float = 0.0,
                 velocity: float = 0.0, scaled_mpjpe: float = 0.0,
                 joint_weights: Sequence[float] = JOINT_WEIGHTS,
                 mask_padding: bool = True) -> None:
        super().__init__()
        self.mask_padding = bool(mask_padding)
        self.weights = {"mpjpe": float(mpjpe), "weighted_mpjpe": float(weighted_mpjpe),
                        "temporal_consistency": float(temporal_consistency), "velocity": float(velocity),
                        "scaled_mpjpe": float(scaled_mpjpe)}
        bad = {k: v for k, v in self.weights.items() if v < 0}
        if bad:
            raise ValueError(f"loss weights must be >= 0, got {bad}")
        if not any(self.weights.values()):
            raise ValueError("every loss weight is 0: set at least one of " + ", ".join(self.weights))
        self.register_buffer("joint_weights", torch.tensor(joint_weights, dtype=torch.float32),
                             persistent=False)

    def terms(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> dict[str, Tensor]:
        """The unweighted value of every term with a non-zero weight."""
        jw = self.joint_weights.to(pred.dtype)
        if not self.mask_padding:
            valid = None
        fns = {
            "mpjpe": lambda: mpjpe(pred, target, valid),
            "weighted_mpjpe": lambda: weighted_mpjpe(pred, target, valid, jw),
            "temporal_consistency": lambda: temporal_consistency(pred, valid, jw),
            "velocity": lambda: mean_velocity_error(pred, target, valid),
            "scaled_mpjpe": lambda: scaled_mpjpe(pred, target, valid),
        }
        return {name: fns[name]() for name, w in self.weights.items() if w}

    def forward(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
        terms = self.terms(pred, target, valid)
        return sum(self.weights[name] * value for name, value in terms.items())
