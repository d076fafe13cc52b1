"""Metrics against an independent NumPy reference and hand-computed protocol cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hotpose.metrics import (
    PoseErrorMetric,
    mpjpe,
    mpjve,
    n_mpjpe,
    official_p2,
    p_mpjpe,
    per_action_table,
    procrustes_align,
)


def _np_p_mpjpe(pred: np.ndarray, target: np.ndarray) -> float:
    """Umeyama (1991) for one pose, written from the paper's formulas: target ≈ c R pred + t."""
    mu_x, mu_y = pred.mean(0), target.mean(0)
    x, y = pred - mu_x, target - mu_y
    sigma_x2 = (x**2).sum() / len(x)
    cov = y.T @ x / len(x)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2, 2] = -1
    r = u @ s @ vt
    c = np.trace(np.diag(d) @ s) / sigma_x2
    t = mu_y - c * r @ mu_x
    aligned = (c * (r @ pred.T)).T + t
    return float(np.linalg.norm(aligned - target, axis=-1).mean())


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def test_mpjpe_and_mpjve_hand_cases() -> None:
    pred, target = torch.zeros(1, 2, 17, 3), torch.zeros(1, 2, 17, 3)
    pred[0, 1, :, 0] = 0.34  # frame 1: every joint 0.34 off
    assert mpjpe(pred, target)[0].tolist() == pytest.approx([0.0, 0.34])
    assert mpjve(pred, target)[0].tolist() == pytest.approx([0.34])


def test_p_mpjpe_of_similar_copy_is_zero() -> None:
    rng = np.random.default_rng(0)
    target = rng.normal(size=(4, 17, 3))
    pred = np.stack([1.7 * t @ _random_rotation(rng).T + rng.normal(size=3) for t in target])
    err = p_mpjpe(torch.tensor(pred, dtype=torch.float32), torch.tensor(target, dtype=torch.float32))
    assert err.dtype == torch.float64
    assert err.max().item() < 1e-5
    aligned = procrustes_align(torch.tensor(pred), torch.tensor(target))
    np.testing.assert_allclose(aligned.numpy(), target, atol=1e-9)


def test_p_mpjpe_refuses_reflection_and_matches_numpy() -> None:
    rng = np.random.default_rng(1)
    target = rng.normal(size=(6, 17, 3))
    pred = target + 0.3 * rng.normal(size=target.shape)
    pred[0] = target[0] * np.array([-1.0, 1.0, 1.0])  # a mirror image cannot be rotated onto its original
    ours = p_mpjpe(torch.tensor(pred), torch.tensor(target)).numpy()
    ref = np.array([_np_p_mpjpe(p, t) for p, t in zip(pred, target)])
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)
    assert ours[0] > 0.1
    # P2 never exceeds P1: the identity is one of the transforms it optimises over
    assert (ours <= mpjpe(torch.tensor(pred), torch.tensor(target)).numpy() + 1e-12).all()


def test_n_mpjpe_removes_scale_only() -> None:
    rng = np.random.default_rng(2)
    target = torch.tensor(rng.normal(size=(3, 17, 3)))
    assert n_mpjpe(0.5 * target, target).max().item() < 1e-12
    # hand case: target = 2 · pred on one joint → scale 2 → error 0; a shift is not removed
    assert n_mpjpe(target + 0.1, target).min().item() > 0
    p, t = target[0].numpy(), (target[0] + 0.1).numpy()
    s = (p * t).sum() / (p * p).sum()
    ref = np.linalg.norm(s * p - t, axis=-1).mean()
    assert n_mpjpe(target[0], target[0] + 0.1).item() == pytest.approx(ref)


def _batch(errors: list[list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows whose frames have the given per-frame MPJPE (metres): every joint shifted along x."""
    e = torch.tensor(errors, dtype=torch.float64)
    target = torch.zeros(*e.shape, 17, 3, dtype=torch.float64)
    pred = target.clone()
    pred[..., 0] = e[..., None]
    return pred, target


def test_exact_mode_scores_real_frames_and_averages_actions() -> None:
    metric = PoseErrorMetric(["A", "B"], mode="exact")
    pred, target = _batch([[0.010, 0.020, 0.900], [0.040, 0.040, 0.040]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    metric.update(pred, target, valid, ["A", "B"], key=torch.tensor([1, 2]))
    pred, target = _batch([[0.030, 0.030, 0.030]])
    metric.update(pred, target, torch.ones(1, 3, dtype=torch.bool), ["A"], key=torch.tensor([3]))
    out = metric.compute()
    a = (10 + 20 + 30 * 3) / 5  # action A: 5 real frames
    b = 40.0
    assert out["action/A/mpjpe_mm"].item() == pytest.approx(a)
    assert out["action/B/mpjpe_mm"].item() == pytest.approx(b)
    assert out["mpjpe_mm"].item() == pytest.approx((a + b) / 2)
    assert out["pooled/mpjpe_mm"].item() == pytest.approx((10 + 20 + 90 + 120) / 8)
    assert out["scored"].item() == 8
    # the velocity pairs of action A: (10->20) and (30->30, 30->30); the pair into padding is skipped
    assert out["action/A/mpjve_mm"].item() == pytest.approx((10 + 0 + 0) / 3)
    table = per_action_table(out)
    assert table["Average"]["mpjpe_mm"] == pytest.approx((a + b) / 2)
    assert set(table) == {"A", "B", "Average"}


def test_paper_mode_weights_windows_and_reproduces_p2_batch_quirk() -> None:
    metric = PoseErrorMetric(["A", "B"], mode="paper")
    # window 1 has a padding frame with a large error: paper mode counts it
    pred, target = _batch([[0.010, 0.020, 0.900], [0.040, 0.040, 0.040]])
    rng = np.random.default_rng(3)
    noisy = pred + torch.tensor(rng.normal(scale=0.01, size=pred.shape))
    valid = torch.tensor([[True, True, False], [True, True, True]])
    metric.update(noisy, target, valid, ["A", "B"])
    out = metric.compute()
    per_window_p1 = mpjpe(noisy, target).mean(dim=1) * 1000
    assert out["action/A/mpjpe_mm"].item() == pytest.approx(per_window_p1[0].item())
    assert out["mpjpe_mm"].item() == pytest.approx(per_window_p1.mean().item())
    # mixed-action batch: both windows get the batch's mean P2
    batch_p2 = p_mpjpe(noisy, target).mean().item() * 1000
    assert out["action/A/p_mpjpe_mm"].item() == pytest.approx(batch_p2)
    assert out["action/B/p_mpjpe_mm"].item() == pytest.approx(batch_p2)
    # a single-action batch keeps each window's own P2, so its mean equals the batch mean
    single = PoseErrorMetric(["A", "B"], mode="paper")
    single.update(noisy, target, valid, ["A", "A"])
    assert single.compute()["p_mpjpe_mm"].item() == pytest.approx(batch_p2)


def test_official_p2_accumulation_by_hand() -> None:
    # batch 0: two windows of A, mean 0.1 -> A gets 0.1 * 2 with weight 2
    # batch 1: A, B, B, mean 0.4 -> each window gets 0.4 with weight 1
    batch = torch.tensor([0, 0, 1, 1, 1])
    action = torch.tensor([0, 0, 0, 1, 1])
    mean = torch.tensor([0.1, 0.1, 0.4, 0.4, 0.4])
    per_action, overall = official_p2(batch, action, mean, 3, 1000.0)
    assert per_action[0].item() == pytest.approx(200.0, rel=1e-6)  # (0.2 + 0.4) / 3
    assert per_action[1].item() == pytest.approx(400.0, rel=1e-6)
    assert np.isnan(per_action[2].item())  # absent action
    assert overall.item() == pytest.approx(300.0, rel=1e-6)
    # float32 all the way, as NumPy float32 scalars accumulate
    a = (np.float32(0) + np.float32(0.1) * np.float32(2) + np.float32(0.4)) / np.float32(3) * np.float32(1000)
    assert per_action[0].item() == float(a)


def test_paper_p2_is_float32_exact_stays_float64() -> None:
    pred, target = _batch([[0.012, 0.034], [0.021, 0.043]])
    noisy = pred + torch.tensor(np.random.default_rng(5).normal(scale=0.02, size=pred.shape))
    valid = torch.ones(2, 2, dtype=torch.bool)
    out = {}
    for mode in ("exact", "paper"):
        metric = PoseErrorMetric(["A"], mode=mode)
        metric.update(noisy.float(), target.float(), valid, ["A", "A"])
        out[mode] = metric.compute()["p_mpjpe_mm"].item()
    f32 = p_mpjpe(noisy.float(), target.float(), torch.float32)
    assert f32.dtype == torch.float32
    expected = float(f32.mean() * np.float32(1000))
    assert out["paper"] == pytest.approx(expected, rel=1e-6)
    assert out["exact"] == pytest.approx(p_mpjpe(noisy.float(), target.float()).mean().item() * 1000, rel=1e-12)
    assert out["paper"] == pytest.approx(out["exact"], rel=1e-5)


def test_repeated_windows_count_once() -> None:
    pred, target = _batch([[0.010], [0.050]])
    valid = torch.ones(2, 1, dtype=torch.bool)
    once, twice = PoseErrorMetric(["A"]), PoseErrorMetric(["A"])
    once.update(pred, target, valid, ["A", "A"], key=torch.tensor([7, 8]))
    twice.update(pred, target, valid, ["A", "A"], key=torch.tensor([7, 8]))
    twice.update(pred[:1], target[:1], valid[:1], ["A"], key=torch.tensor([7]))  # DDP sampler padding
    assert twice.compute()["mpjpe_mm"].item() == pytest.approx(once.compute()["mpjpe_mm"].item())
    assert "mpjve_mm" not in once.compute()  # one frame per window: no velocity


def test_metric_rejects_bad_input() -> None:
    metric = PoseErrorMetric(["A"])
    pred, target = _batch([[0.01, 0.02]])
    with pytest.raises(ValueError, match="not in the metric's vocabulary"):
        metric.update(pred, target, torch.ones(1, 2, dtype=torch.bool), ["Z"])
    with pytest.raises(ValueError, match="valid must be"):
        metric.update(pred, target, torch.ones(1, 3, dtype=torch.bool), ["A"])
    with pytest.raises(ValueError, match="mode"):
        PoseErrorMetric(["A"], mode="official")
    with pytest.raises(ValueError, match="before any update"):
        metric.compute()
