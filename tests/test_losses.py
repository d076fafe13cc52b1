"""Losses against hand-computed values and direct loops."""

from __future__ import annotations

import math

import pytest
import torch

from hotpose.losses import (
    JOINT_WEIGHTS,
    PoseLoss,
    mean_velocity_error,
    mpjpe,
    temporal_consistency,
    weighted_mpjpe,
)


def _zeros(b: int = 1, f: int = 2) -> torch.Tensor:
    return torch.zeros(b, f, 17, 3)


def test_mpjpe_hand_case() -> None:
    pred, target = _zeros(), _zeros()
    pred[0, 0, 3] = torch.tensor([3.0, 4.0, 0.0])  # one joint 5 away in one of 2 frames
    assert mpjpe(pred, target).item() == pytest.approx(5 / 34)
    # frame 1 is padding: only frame 0 (17 joints) counts
    valid = torch.tensor([[True, False]])
    assert mpjpe(pred, target, valid).item() == pytest.approx(5 / 17)


def test_weighted_mpjpe_uses_joint_weights() -> None:
    pred, target = _zeros(f=1), _zeros(f=1)
    pred[0, 0, :, 0] = 1.0  # every joint 1 away
    assert weighted_mpjpe(pred, target).item() == pytest.approx(sum(JOINT_WEIGHTS) / 17)
    pred = _zeros(f=1)
    pred[0, 0, 12, 2] = 2.0  # left elbow, weight 4
    assert weighted_mpjpe(pred, target).item() == pytest.approx(4 * 2 / 17)


def test_temporal_consistency_hand_case() -> None:
    pred = _zeros(f=3)
    pred[0, 1, 13, 1] = 1.0  # left wrist (w=4) jumps by 1 at t=1 and back at t=2
    # 2 pairs x 17 joints x 3 coords entries; two non-zero entries of 4 * 1^2
    assert temporal_consistency(pred).item() == pytest.approx(8 / (2 * 17 * 3))
    valid = torch.tensor([[True, True, False]])  # only the pair (0, 1) is real
    assert temporal_consistency(pred, valid).item() == pytest.approx(4 / (17 * 3))


def test_velocity_error_matches_loop() -> None:
    torch.manual_seed(1)
    pred, target = torch.randn(2, 5, 17, 3), torch.randn(2, 5, 17, 3)
    total, n = 0.0, 0
    for b in range(2):
        for t in range(4):
            for j in range(17):
                d = (pred[b, t + 1, j] - pred[b, t, j]) - (target[b, t + 1, j] - target[b, t, j])
                total += math.sqrt(float((d**2).sum()))
                n += 1
    assert mean_velocity_error(pred, target).item() == pytest.approx(total / n, rel=1e-5)
    # a constant offset between prediction and target has no velocity error
    assert mean_velocity_error(target + 0.3, target).item() == pytest.approx(0.0, abs=1e-6)


def test_mask_excludes_padding_exactly() -> None:
    torch.manual_seed(2)
    pred, target = torch.randn(2, 6, 17, 3), torch.randn(2, 6, 17, 3)
    valid = torch.tensor([[False, True, True, True, True, True], [True, True, True, True, False, False]])
    # same as the loss on the real frames only, window by window, weighted by their frame counts
    real = [(0, slice(1, 6)), (1, slice(0, 4))]
    expected = sum(mpjpe(pred[b : b + 1, s], target[b : b + 1, s]) * (s.stop - s.start) for b, s in real) / 9
    assert mpjpe(pred, target, valid).item() == pytest.approx(expected.item(), rel=1e-6)
    pairs = sum(mean_velocity_error(pred[b : b + 1, s], target[b : b + 1, s]) * (s.stop - s.start - 1)
                for b, s in real) / 7
    assert mean_velocity_error(pred, target, valid).item() == pytest.approx(pairs.item(), rel=1e-6)


def test_pose_loss_composite_and_mask_switch() -> None:
    torch.manual_seed(3)
    pred, target = torch.randn(2, 4, 17, 3), torch.randn(2, 4, 17, 3)
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    loss = PoseLoss(weighted_mpjpe=1.0, temporal_consistency=0.5, velocity=2.0)
    expected = (weighted_mpjpe(pred, target, valid) + 0.5 * temporal_consistency(pred, valid)
                + 2.0 * mean_velocity_error(pred, target, valid))
    assert loss(pred, target, valid).item() == pytest.approx(expected.item(), rel=1e-6)
    unmasked = PoseLoss(mpjpe=1.0, mask_padding=False)
    assert unmasked(pred, target, valid).item() == pytest.approx(mpjpe(pred, target).item(), rel=1e-6)
    assert set(loss.terms(pred, target)) == {"weighted_mpjpe", "temporal_consistency", "velocity"}


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="target shape"):
        mpjpe(_zeros(f=2), _zeros(f=3))
    with pytest.raises(ValueError, match="valid mask"):
        mpjpe(_zeros(), _zeros(), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="every loss weight is 0"):
        PoseLoss()
    with pytest.raises(ValueError, match=">= 0"):
        PoseLoss(mpjpe=-1.0)
