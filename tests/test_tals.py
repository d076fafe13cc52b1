"""TALS: hand-checked scaling, identity cases, config wiring, and the threshold estimator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from hotpose.losses import TALS, PoseLoss, mpjpe, tals_scale, weighted_mpjpe
from hotpose.tals_thresholds import lifted_gap, weak_perspective_scale

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 4, 17, 3, generator=g) * 0.1, torch.randn(2, 4, 17, 3, generator=g) * 0.1


def test_tals_scale_by_hand() -> None:
    errors = torch.tensor([[0.01, 0.05], [0.03, 0.02]])
    thresholds = torch.tensor([0.02, 0.04])
    expected = torch.tensor([[0.1 * 0.01, 0.05], [0.03, 0.1 * 0.02]])
    torch.testing.assert_close(tals_scale(errors, thresholds, 0.1), expected)
    with pytest.raises(ValueError, match="one threshold per joint"):
        tals_scale(errors, torch.zeros(3), 0.1)


def test_tals_is_the_plain_loss_when_lambda_is_one_or_every_error_is_above() -> None:
    pred, target = _pair()
    plain = {"mpjpe": mpjpe(pred, target), "w": weighted_mpjpe(pred, target)}
    lam_one = TALS(enabled=True, lam=1.0, thresholds_mm=1000.0)  # every error below, but lambda 1
    tiny = TALS(enabled=True, lam=0.05, thresholds_mm=0.0)  # every error above
    for tals in (lam_one, tiny):
        torch.testing.assert_close(mpjpe(pred, target, tals=tals), plain["mpjpe"])
        torch.testing.assert_close(weighted_mpjpe(pred, target, tals=tals), plain["w"])
    # all below with lambda 0.05: exactly 0.05 x the plain loss
    torch.testing.assert_close(mpjpe(pred, target, tals=TALS(enabled=True, lam=0.05, thresholds_mm=1e4)),
                               0.05 * plain["mpjpe"])


def test_tals_gradient_is_scaled_below_threshold() -> None:
    pred = torch.tensor([[[[0.0, 0.0, 0.01]] * 17]], requires_grad=True)  # 10 mm error on every joint
    target = torch.zeros(1, 1, 17, 3)
    thresholds = [20.0] * 8 + [5.0] * 9  # joints 0-7 below their threshold, 8-16 above
    mpjpe(pred, target, tals=TALS(enabled=True, lam=0.25, thresholds_mm=thresholds)).backward()
    z = pred.grad[0, 0, :, 2]
    torch.testing.assert_close(z[:8], torch.full((8,), 0.25 / 17))
    torch.testing.assert_close(z[8:], torch.full((9,), 1.0 / 17))


def test_pose_loss_with_tals_config(tmp_path: Path) -> None:
    pred, target = _pair(1)
    base = {"mpjpe": 1.0, "velocity": 2.0}
    plain = PoseLoss(**base)
    disabled = OmegaConf.to_container(OmegaConf.load(CONFIGS / "tals" / "disabled.yaml"))
    torch.testing.assert_close(PoseLoss(**base, tals=disabled)(pred, target), plain(pred, target))
    enabled = OmegaConf.to_container(OmegaConf.load(CONFIGS / "tals" / "enabled.yaml"))
    assert enabled["enabled"] and len(enabled["thresholds_mm"]) == 17
    loss = PoseLoss(**base, tals=enabled)
    terms, plain_terms = loss.terms(pred, target), plain.terms(pred, target)
    torch.testing.assert_close(terms["velocity"], plain_terms["velocity"])  # not a position term
    assert terms["mpjpe"] < plain_terms["mpjpe"]
    path = tmp_path / "tau.json"
    path.write_text(json.dumps({"thresholds_mm": enabled["thresholds_mm"]}))
    from_file = PoseLoss(**base, tals={**enabled, "thresholds_mm": None, "thresholds_file": str(path)})
    torch.testing.assert_close(from_file.terms(pred, target)["mpjpe"], terms["mpjpe"])
    with pytest.raises(ValueError, match="neither thresholds_mm nor thresholds_file"):
        TALS(enabled=True, lam=0.05)
    with pytest.raises(ValueError, match="17 finite values"):
        TALS(enabled=True, lam=0.05, thresholds_mm=[1.0, 2.0])
    with pytest.raises(ValueError, match="lam"):
        TALS(enabled=True, lam=2.0, thresholds_mm=1.0)


def test_weak_perspective_lifting_by_hand() -> None:
    pose_3d = np.zeros((1, 17, 3))
    pose_3d[0, :, 0] = np.arange(17) * 0.1  # any skeleton: only the 2D/3D ratio matters
    pose_2d = pose_3d[..., :2] / 2.0  # the same skeleton at half size in 2D
    assert weak_perspective_scale(pose_2d, pose_3d) == pytest.approx([2.0])
    det = pose_2d.copy()
    det[0, 5, 1] += 0.01  # joint 5 detected 0.01 normalised units off
    gap = lifted_gap(det, pose_2d, pose_3d)
    assert gap[0, 5] == pytest.approx(0.02) and np.delete(gap[0], 5).max() == 0
