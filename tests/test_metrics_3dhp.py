"""MPI-INF-3DHP PCK / AUC / MPJPE: hand-computed cases, an independent NumPy port of the official MATLAB loop,
invalid frames, DDP-style repeats and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hotpose.data.skeleton import JOINT_NAMES, MPI_INF_3DHP_EVAL_JOINTS, MPI_INF_3DHP_TO_H36M
from hotpose.metrics_3dhp import AUC_THRESHOLDS_MM, MPIINF3DHPMetric, auc, benchmark_summary, pck

SEQUENCES = ["TS1", "TS2", "TS3", "TS4", "TS5", "TS6"]

# The official joint groups (mpii_get_pck_auc_joint_groups.m), 1-based indices in the 3DHP file order.
MATLAB_GROUPS = {"Head": [1], "Neck": [2], "Shou": [3, 6], "Elbow": [4, 7], "Wrist": [5, 8], "Hip": [9, 12],
                 "Knee": [10, 13], "Ankle": [11, 14]}


def matlab_pck_auc(errors_file_order: np.ndarray) -> tuple[float, float]:
    """PCK and AUC "Total" of mpii_compute_3d_pck.m, written as its loops: per group a PCK curve over
    0:5:150 as (number of (joint, frame) pairs below t) / (joints in group * frames), the total curve the
    group curves weighted by their joint counts, AUC 100 * mean(curve), PCK at 150 likewise.
    ``errors_file_order`` is (nj=17, nf) in the 3DHP file order, in mm."""
    nf = errors_file_order.shape[1]
    thresholds = list(range(0, 151, 5))
    total_curve = np.zeros(len(thresholds))
    total_pck, joint_count = 0.0, 0
    for joints in MATLAB_GROUPS.values():
        rows = errors_file_order[[j - 1 for j in joints]]
        curve = np.array([np.sum(rows < t) / (len(joints) * nf) for t in thresholds])
        total_curve += curve * len(joints)
        total_pck += 100 * np.sum(rows < 150) / (len(joints) * nf) * len(joints)
        joint_count += len(joints)
    return total_pck / joint_count, 100 * (total_curve / joint_count).sum() / len(thresholds)


def poses_with_errors(errors_mm: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Target and prediction ``(1, n, 17, 3)`` metres whose joint errors are exactly ``errors_mm (n, 17)``."""
    n = errors_mm.shape[0]
    target = torch.randn(1, n, 17, 3, dtype=torch.float64) * 0.3
    direction = torch.nn.functional.normalize(torch.randn(1, n, 17, 3, dtype=torch.float64), dim=-1)
    pred = target + direction * torch.as_tensor(errors_mm)[None, ..., None] / 1000.0
    return pred, target


def test_official_joint_set_is_the_groups_joints() -> None:
    names = {JOINT_NAMES[i] for i in MPI_INF_3DHP_EVAL_JOINTS}
    assert len(MPI_INF_3DHP_EVAL_JOINTS) == 14
    assert names.isdisjoint({"pelvis", "spine", "neck_nose"})  # 3DHP pelvis, spine, head are not scored
    # the same joints as the 1-based groups, through the file-order → hotpose-order map
    from_groups = sorted(MPI_INF_3DHP_TO_H36M.index(j - 1) for js in MATLAB_GROUPS.values() for j in js)
    assert tuple(from_groups) == MPI_INF_3DHP_EVAL_JOINTS


def test_pck_and_auc_by_hand() -> None:
    errors = torch.tensor([[0.0, 4.9, 5.0, 149.9, 150.0, 300.0]], dtype=torch.float64)
    assert float(pck(errors)) == pytest.approx(100 * 4 / 6)  # strictly below 150: 0, 4.9, 5.0, 149.9
    # thresholds 0..150 (31): 0.0 is below every t > 0 (30 of 31); 4.9 below t >= 5 (30); 5.0 below t >= 10
    # (29); 149.9 below t = 150 only (1); 150 and 300 never (0)
    assert len(AUC_THRESHOLDS_MM) == 31
    assert float(auc(errors)) == pytest.approx(100 * (30 + 30 + 29 + 1) / (31 * 6))


def test_metric_matches_hand_values_on_two_sequences() -> None:
    errors = np.full((3, 17), 200.0)
    errors[:, list(MPI_INF_3DHP_EVAL_JOINTS[:7])] = 12.0  # 7 of 14 scored joints correct in every frame
    errors[:, 0] = 0.0  # the pelvis (root) is 0, as for any root-relative pose
    pred, target = poses_with_errors(errors)
    pred, target = pred.repeat(2, 1, 1, 1), target.repeat(2, 1, 1, 1)
    metric = MPIINF3DHPMetric(SEQUENCES)
    valid = torch.tensor([[True, True, False], [True, False, False]])
    metric.update(pred.float(), target.float(), valid, ["TS1", "TS5"], torch.arange(3).repeat(2, 1))
    out = metric.compute()
    assert float(out["frames"]) == 3
    assert float(out["pck150_mpii14"]) == pytest.approx(50.0)
    # 17 joints: the 7 + the pelvis are correct; the 9 others (200 mm) never
    assert float(out["pck150_all17"]) == pytest.approx(100 * 8 / 17, rel=1e-5)
    # AUC: a 12 mm error is below 28 of the 31 thresholds (15..150), a 0 mm error below 30 (5..150)
    assert float(out["auc_mpii14"]) == pytest.approx(100 * 7 * 28 / (14 * 31), rel=1e-5)
    assert float(out["auc_all17"]) == pytest.approx(100 * (7 * 28 + 30) / (17 * 31), rel=1e-5)
    assert float(out["mpjpe_mm"]) == pytest.approx((7 * 12 + 9 * 200) / 17, rel=1e-5)
    assert float(out["sequence/TS1/frames"]) == 2 and float(out["sequence/TS5/frames"]) == 1
    assert "sequence/TS2/frames" not in out
    assert float(out["scene/GS/frames"]) == 2 and float(out["scene/Outdoor/frames"]) == 1
    assert "scene/noGS/frames" not in out


def test_metric_equals_the_matlab_definition_with_invalid_frames() -> None:
    rng = np.random.default_rng(3)
    lengths = {"TS1": 40, "TS2": 31, "TS3": 25, "TS4": 22, "TS5": 17, "TS6": 12}
    metric = MPIINF3DHPMetric(SEQUENCES)
    per_sequence: dict[str, np.ndarray] = {}
    for name, n in lengths.items():
        errors = rng.gamma(2.0, 45.0, size=(n, 17))
        errors[:, 0] = 0.0
        valid = rng.random(n) > 0.3
        pred, target = poses_with_errors(errors)
        # two windows per sequence, in hotpose's joint order; the invalid frames go through the metric too
        half = n // 2
        for lo, hi in ((0, half), (half, n)):
            metric.update(pred[:, lo:hi], target[:, lo:hi], torch.as_tensor(valid[lo:hi])[None], [name],
                          torch.arange(lo, hi)[None])
        # the MATLAB side: (17, 1, nf) in the file order, valid frames only (mpii_test_predictions_py.m)
        per_sequence[name] = errors[valid][:, np.argsort(MPI_INF_3DHP_TO_H36M)]
    out = metric.compute()
    for name, file_errors in per_sequence.items():
        ref_pck, ref_auc = matlab_pck_auc(file_errors.T)
        assert float(out[f"sequence/{name}/pck150_mpii14"]) == pytest.approx(ref_pck, abs=1e-9)
        assert float(out[f"sequence/{name}/auc_mpii14"]) == pytest.approx(ref_auc, abs=1e-9)
        assert float(out[f"sequence/{name}/mpjpe_mm"]) == pytest.approx(file_errors.mean(), rel=1e-9)
    # "All": the concatenation of every sequence's errors (mpii_evaluate_errors.m)
    everything = np.concatenate(list(per_sequence.values()))
    ref_pck, ref_auc = matlab_pck_auc(everything.T)
    assert float(out["pck150_mpii14"]) == pytest.approx(ref_pck, abs=1e-9)
    assert float(out["auc_mpii14"]) == pytest.approx(ref_auc, abs=1e-9)
    # scenes: the README's frame-weighted average of the two sequences' numbers
    for scene, (a, b) in {"GS": ("TS1", "TS2"), "noGS": ("TS3", "TS4"), "Outdoor": ("TS5", "TS6")}.items():
        na, nb = len(per_sequence[a]), len(per_sequence[b])
        weighted = (matlab_pck_auc(per_sequence[a].T)[1] * na + matlab_pck_auc(per_sequence[b].T)[1] * nb) / (na + nb)
        assert float(out[f"scene/{scene}/auc_mpii14"]) == pytest.approx(weighted, abs=1e-9)
    # the 17-joint variant: every joint of every valid frame
    assert float(out["pck150_all17"]) == pytest.approx(100 * np.mean(everything < 150), abs=1e-9)
    assert float(out["auc_all17"]) == pytest.approx(
        np.mean([100 * np.mean(everything < t) for t in range(0, 151, 5)]), abs=1e-9)


def test_repeated_frames_count_once_as_under_ddp() -> None:
    errors = np.random.default_rng(0).uniform(0, 300, size=(6, 17))
    pred, target = poses_with_errors(errors)
    valid, frames = torch.ones(1, 6, dtype=torch.bool), torch.arange(6)[None]
    once, twice = MPIINF3DHPMetric(SEQUENCES), MPIINF3DHPMetric(SEQUENCES)
    once.update(pred, target, valid, ["TS2"], frames)
    twice.update(pred, target, valid, ["TS2"], frames)
    twice.update(pred[:, :2], target[:, :2], valid[:, :2], ["TS2"], frames[:, :2])  # a sampler's repeat
    a, b = once.compute(), twice.compute()
    assert set(a) == set(b)
    for key in a:
        assert float(a[key]) == pytest.approx(float(b[key]))


def test_summary_splits_sequences_scenes_and_overall() -> None:
    summary = benchmark_summary({"pck150_mpii14": 90.0, "sequence/TS1/pck150_mpii14": 80.0,
                                 "scene/GS/pck150_mpii14": 85.0, "frames": 3.0})
    assert summary == {"overall": {"pck150_mpii14": 90.0, "frames": 3.0},
                       "per_sequence": {"TS1": {"pck150_mpii14": 80.0}},
                       "per_scene": {"GS": {"pck150_mpii14": 85.0}}}


def test_bad_input_is_refused() -> None:
    metric = MPIINF3DHPMetric(SEQUENCES)
    pose = torch.zeros(1, 2, 17, 3)
    with pytest.raises(ValueError, match=r"sequences \['TS9'\] are not in"):
        metric.update(pose, pose, torch.ones(1, 2, dtype=torch.bool), ["TS9"], torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="valid and frames must be"):
        metric.update(pose, pose, torch.ones(1, 3, dtype=torch.bool), ["TS1"], torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="expects"):
        metric.update(torch.zeros(1, 2, 16, 3), torch.zeros(1, 2, 16, 3), torch.ones(1, 2, dtype=torch.bool),
                      ["TS1"], torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="needs the list"):
        MPIINF3DHPMetric([])
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert float(MPIINF3DHPMetric(SEQUENCES).compute()["frames"]) == 0
