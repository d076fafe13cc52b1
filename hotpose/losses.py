"""Training losses on 3D poses: pure tensor functions and the composite :class:`PoseLoss`.

Every function takes ``pred`` and ``target`` of shape ``(b, f, j, 3)`` in metres and an optional
``valid`` mask ``(b, f)`` (True on real frames). With a mask, edge-replicated padding frames are left
out of the mean (a frame-to-frame term counts a pair only when both frames are real). The official
HoT/MixSTE/MHFormer training code has no mask: it averages over every frame of the window, padding
included. ``valid=None`` reproduces that.

Threshold-Adaptive Loss Scaling (TALS, TokenHMR): the per-joint position errors of the MPJPE-type terms are
multiplied by ``lam`` where they are below the joint's threshold (within the label or input noise) and left
as they are above it: small errors are down-weighted, not ignored (:class:`TALS`, ``loss.tals``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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


def tals_scale(errors: Tensor, thresholds: Tensor, lam: float) -> Tensor:
    """TALS on per-joint errors ``(..., j)``: ``errors · (1 if errors > thresholds[j] else lam)``.

    The factor is a step function of the error, so it carries no gradient of its own.
    """
    if thresholds.shape != (errors.shape[-1],):
        raise ValueError(f"TALS needs one threshold per joint ({errors.shape[-1]}), got {tuple(thresholds.shape)}")
    strong = errors.detach() > thresholds.to(errors.device, errors.dtype)
    return torch.where(strong, errors, lam * errors)


class TALS(nn.Module):
    """Threshold-Adaptive Loss Scaling of per-joint errors (``loss.tals``; configs/tals/).

    Args:
        enabled: False makes it the identity.
        lam: factor of the errors below their threshold (TokenHMR: 0.05); 1 = no effect.
        thresholds_mm: one threshold per joint (or one for all), millimetres.
        thresholds_file: a JSON file with ``"thresholds_mm"`` (written by ``scripts/estimate_tals_thresholds.py``);
            used when ``thresholds_mm`` is null.
        num_joints: joints of the poses (17).
    """

    def __init__(self, enabled: bool = False, lam: float = 1.0, thresholds_mm: float | Sequence[float] | None = None,
                 thresholds_file: str | None = None, num_joints: int = 17) -> None:
        super().__init__()
        self.enabled = bool(enabled)
        self.lam = float(lam)
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"loss.tals.lam must be in [0, 1], got {lam}")
        values: Any = thresholds_mm
        if self.enabled and values is None:
            if not thresholds_file:
                raise ValueError("loss.tals is enabled but has neither thresholds_mm nor thresholds_file")
            path = Path(thresholds_file)
            if not path.is_file():
                raise ValueError(f"loss.tals.thresholds_file {path} does not exist")
            values = json.loads(path.read_text()).get("thresholds_mm")
            if values is None:
                raise ValueError(f"{path} has no 'thresholds_mm' entry")
        t = torch.zeros(num_joints) if values is None else torch.as_tensor(values, dtype=torch.float32).flatten()
        if t.numel() == 1:
            t = t.expand(num_joints).clone()
        if t.shape != (num_joints,) or bool((t < 0).any()) or not bool(torch.isfinite(t).all()):
            raise ValueError(f"TALS thresholds must be {num_joints} finite values >= 0 (mm) or one, got "
                             f"{t.tolist()}")
        self.register_buffer("thresholds", t / 1000.0, persistent=False)  # metres, like the poses

    def forward(self, errors: Tensor) -> Tensor:
        """Per-joint errors ``(..., j)`` in metres → scaled errors (the input itself when disabled)."""
        return tals_scale(errors, self.thresholds, self.lam) if self.enabled else errors


def _joint_errors(pred: Tensor, target: Tensor, tals: TALS | None) -> Tensor:
    errors = torch.linalg.vector_norm(pred - target, dim=-1)
    return errors if tals is None else tals(errors)


def mpjpe(pred: Tensor, target: Tensor, valid: Tensor | None = None, tals: TALS | None = None) -> Tensor:
    """Mean per-joint position error: mean Euclidean distance over b, f, j (real frames with ``valid``);
    with ``tals`` the per-joint errors are scaled first."""
    _check_poses(pred, target, valid)
    return _masked_mean(_joint_errors(pred, target, tals), valid)


def weighted_mpjpe(pred: Tensor, target: Tensor, valid: Tensor | None = None,
                   weights: Tensor | Sequence[float] = JOINT_WEIGHTS, tals: TALS | None = None) -> Tensor:
    """``mean(w_j · ||pred - target||)`` over b, f, j (the weights are not normalised, as in MixSTE)."""
    _check_poses(pred, target, valid)
    w = _joint_weights(weights, pred)
    return _masked_mean(_joint_errors(pred, target, tals) * w, valid)


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


def scaled_mpjpe(pred: Tensor, target: Tensor, valid: Tensor | None = None, tals: TALS | None = None) -> Tensor:
    """MPJPE after scaling each predicted frame by ``<pred, target> / <pred, pred>`` (MotionBERT's loss)."""
    _check_poses(pred, target, valid)
    dot = (pred * target).sum(dim=(-2, -1), keepdim=True)
    scale = dot / (pred * pred).sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return mpjpe(scale * pred, target, valid, tals)


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
    ``valid`` mask is given; ``False`` averages over the whole window, as the official code does. ``tals``
    (:class:`TALS` arguments, ``configs/tals/``) scales the per-joint errors of the position terms (``mpjpe``,
    ``weighted_mpjpe``, ``scaled_mpjpe``); the velocity and smoothness terms are left as they are.
    """

    def __init__(self, mpjpe: float = 0.0, weighted_mpjpe: float = 0.0, temporal_consistency: float = 0.0,
                 velocity: float = 0.0, scaled_mpjpe: float = 0.0,
                 joint_weights: Sequence[float] = JOINT_WEIGHTS,
                 mask_padding: bool = True, tals: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.tals = TALS(**dict(tals)) if tals else None
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
        tals = self.tals if self.tals is not None and self.tals.enabled else None
        fns = {
            "mpjpe": lambda: mpjpe(pred, target, valid, tals),
            "weighted_mpjpe": lambda: weighted_mpjpe(pred, target, valid, jw, tals),
            "temporal_consistency": lambda: temporal_consistency(pred, valid, jw),
            "velocity": lambda: mean_velocity_error(pred, target, valid),
            "scaled_mpjpe": lambda: scaled_mpjpe(pred, target, valid, tals),
        }
        return {name: fns[name]() for name, w in self.weights.items() if w}

    def forward(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
        terms = self.terms(pred, target, valid)
        return sum(self.weights[name] * value for name, value in terms.items())
