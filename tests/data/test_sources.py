"""VideoPose3D npz loading: the processed sequences, and one clear DataError per kind of bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from data_fixtures import pixels, random_world, write_2d, write_3d

from hotpose.data.camera import normalize_screen, world_to_camera
from hotpose.data.sources import (
    H36M_KEPT_JOINTS,
    MINI_ROOT,
    DataError,
    action_group,
    load_cameras,
    load_positions_3d,
    load_sequences,
)

ALL = ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]


@pytest.fixture(scope="module")
def mini_gt():
    return load_sequences(MINI_ROOT, "mini", "gt", ALL)


def test_mini_records_shapes_and_frame_conventions(mini_gt) -> None:
    assert len(mini_gt) == 25 * 4
    assert sum(r.num_frames for r in mini_gt) == 7387 * 4
    for r in mini_gt:
        assert r.pose_2d.dtype == np.float32 and r.pose_2d.shape == (r.num_frames, 17, 2)
        assert r.pose_3d.dtype == np.float32 and r.pose_3d.shape == (r.num_frames, 17, 3)
        assert (r.pose_3d[:, 0] == 0).all()  # root-relative, root at 0
    first = mini_gt[0]
    assert (first.subject, first.action, first.camera) == ("S1", "Climb 1", 0)
    assert (first.res_w, first.res_h) == (1000, 1002)
    assert {r.action_group for r in mini_gt} >= {"Climb", "Walk", "SpinKick"}


def test_mini_records_match_an_independent_computation(mini_gt) -> None:
    with np.load(MINI_ROOT / "data_3d_mini.npz", allow_pickle=True) as f:
        world = f["positions_3d"].item()["S9"]["Dance 2"]
    with np.load(MINI_ROOT / "data_2d_mini_gt.npz", allow_pickle=True) as f:
        px = f["positions_2d"].item()["S9"]["Dance 2"][2]
    camera = load_cameras()["S9"][2]
    record = next(r for r in mini_gt if (r.subject, r.action, r.camera) == ("S9", "Dance 2", 2))
    # 2D: x / w * 2 - [1, h / w], written out by hand
    np.testing.assert_allclose(record.pose_2d[..., 0], px[..., 0] / 1000 * 2 - 1, atol=1e-6)
    np.testing.assert_allclose(record.pose_2d[..., 1], px[..., 1] / 1000 * 2 - camera.res_h / 1000, atol=1e-6)
    # 3D: rigid motion keeps every distance; the camera-frame pelvis is at depth > 0 before centring
    cam = world_to_camera(world.astype(np.float64), camera.orientation, camera.translation)
    assert (cam[:, 0, 2] > 1).all()
    np.testing.assert_allclose(record.pose_3d, cam - cam[:, :1], atol=1e-5)
    d_world = np.linalg.norm(world[:, 10] - world[:, 3], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(record.pose_3d[:, 10] - record.pose_3d[:, 3], axis=-1),
                               d_world, atol=1e-5)


def test_action_filter_counts_skipped_sequences(caplog) -> None:
    with caplog.at_level(logging.INFO, logger="hotpose.data.sources"):
        records = load_sequences(MINI_ROOT, "mini", "det", ["S1", "S9"], actions=["Climb", "Walk"])
    assert {r.action for r in records} == {"Climb 1", "Walk", "Climb 5"}
    assert "skipped 5 (subject, action) sequences" in caplog.text  # S1: 2, S9: 3
    assert action_group("Walking 1") == "Walking"


def test_h36m_32_joints_reduced_and_2d_truncated(tmp_path) -> None:
    world = random_world(12, 32)
    world[:, :, 0] = np.arange(32) / 10  # x = joint number / 10 (metres), to see which joints are kept
    write_3d(tmp_path / "data_3d_h36m.npz", {"S1": {"Walking 1": world}})
    views = [pixels(15, i) for i in range(4)]
    write_2d(tmp_path / "data_2d_h36m_cpn_ft_h36m_dbb.npz", {"S1": {"Walking 1": views}})
    loaded = load_positions_3d(tmp_path / "data_3d_h36m.npz", "h36m")["S1"]["Walking 1"]
    np.testing.assert_array_equal(np.round(loaded[0, :, 0] * 10), H36M_KEPT_JOINTS)
    records = load_sequences(tmp_path, "h36m", "cpn_ft_h36m_dbb", ["S1"])
    assert len(records) == 4 and all(r.pose_2d.shape == (12, 17, 2) for r in records)
    cam = load_cameras()["S1"][3]
    expected = normalize_screen(views[3][:12].astype(np.float64), cam.res_w, cam.res_h)
    np.testing.assert_allclose(records[3].pose_2d, expected, atol=1e-6)


def test_official_layout_follows_the_2d_files_action_order(tmp_path) -> None:
    world = {a: random_world(6, 32, seed=i) for i, a in enumerate(["Walking", "Eating 1", "Sitting"])}
    write_3d(tmp_path / "data_3d_h36m.npz", {"S9": world, "S1": {"Walking": random_world(6, 32)}})
    views = {a: [pixels(7, 4 * i + c) for c in range(4)] for i, a in enumerate(world)}
    order_2d = ["Sitting", "Walking", "Eating 1"]
    write_2d(tmp_path / "data_2d_h36m_gt.npz", {"S9": {a: views[a] for a in order_2d},
                                                 "S1": {"Walking": views["Walking"]}})
    plain = load_sequences(tmp_path, "h36m", "gt", ["S9", "S1"])
    paper = load_sequences(tmp_path, "h36m", "gt", ["S9", "S1"], official_layout=True)
    assert [(r.subject, r.action) for r in plain][::4] == [("S9", a) for a in world] + [("S1", "Walking")]
    assert [(r.subject, r.action, r.camera) for r in paper] == (
        [("S9", a, c) for a in order_2d for c in range(4)] + [("S1", "Walking", c) for c in range(4)])
    by_key = {(r.subject, r.action, r.camera): r for r in plain}
    for r in paper:  # same 3D; 2D within one float32 step (the official rounding)
        other = by_key[r.subject, r.action, r.camera]
        np.testing.assert_array_equal(r.pose_3d, other.pose_3d)
        assert np.abs(r.pose_2d - other.pose_2d).max() <= 2.0**-22


def good_2d(frames: int = 5) -> dict:
    return {"S1": {"Walk": [pixels(frames, i) for i in range(4)]}}


@pytest.mark.parametrize(
    ("positions_3d", "positions_2d", "message"),
    [
        ({"S1": {"Walk": random_world(5, 16)}}, good_2d(), r"has 16 joints, expected 17"),
        ({"S1": {"Walk": random_world(5, 17)[..., :2]}}, good_2d(),
         r"has 2 coordinates per joint, expected 3"),
        ({"S1": {"Walk": np.zeros((0, 17, 3), np.float32)}}, good_2d(), r"has no frames"),
        ({"S1": {"Walk": np.full((5, 17, 3), np.nan, np.float32)}}, good_2d(), r"NaN or inf"),
        ({"S1": {"Walk": random_world(5, 17)}}, {"S1": {"Walk": [pixels(5)[..., :1]] * 4}},
         r"data_2d_mini_gt.npz.*has 1 coordinates per joint, expected 2"),
        ({"S1": {"Walk": random_world(5, 17)}},
         {"S1": {"Walk": [np.full((5, 17, 2), np.inf, np.float32)] * 4}},
         r"NaN or inf"),
        ({"S1": {"Walk": random_world(6, 17)}}, good_2d(5), r"camera 0 has 5 2D frames, fewer than the 6 3D"),
        ({"S1": {"Walk": random_world(5, 17)}}, {"S1": {"Run": good_2d()["S1"]["Walk"]}},
         r"data_2d_mini_gt.npz: action 'Walk' of subject 'S1' not in the file"),
        ({"S1": {"Walk": random_world(5, 17)}}, {"S1": {"Walk": good_2d()["S1"]["Walk"][:3]}},
         r"has 3 camera views, the calibration has 4"),
        ({"S1": {"Walk": random_world(5, 17)}}, {"S5": good_2d()["S1"]},
         r"data_2d_mini_gt.npz: subject 'S1' not in the file"),
        ({"S1": [1, 2]}, good_2d(), r"data_3d_mini.npz: positions_3d\['S1'\] must be a dict"),
    ],
)
def test_bad_content_raises_data_error(mini_like, positions_3d, positions_2d, message) -> None:
    root = mini_like(positions_3d, positions_2d)
    with pytest.raises(DataError, match=message):
        load_sequences(root, "mini", "gt", ["S1"])


def test_wrong_joint_count_in_metadata(mini_like) -> None:
    root = mini_like({"S1": {"Walk": random_world(5, 17)}}, good_2d(), num_joints=16)
    with pytest.raises(DataError, match="metadata num_joints is 16"):
        load_sequences(root, "mini", "gt", ["S1"])


def test_subject_and_action_not_in_file(mini_like) -> None:
    root = mini_like({"S1": {"Walk": random_world(5, 17)}}, good_2d())
    with pytest.raises(DataError, match=r"data_3d_mini.npz: subject 'S9' not in the file \(has \['S1'\]\)"):
        load_sequences(root, "mini", "gt", ["S1", "S9"])
    with pytest.raises(DataError, match=r"actions \['Swim'\] not found"):
        load_sequences(root, "mini", "gt", ["S1"], actions=["Walk", "Swim"])
    with pytest.raises(DataError, match="no calibration for subject 'S2'"):
        write_3d(root / "data_3d_mini.npz", {"S2": {"Walk": random_world(5, 17)}})
        write_2d(root / "data_2d_mini_gt.npz", {"S2": good_2d()["S1"]})
        load_sequences(root, "mini", "gt", ["S2"])


def test_file_level_errors(tmp_path, mini_like) -> None:
    with pytest.raises(DataError, match=r"data_3d_mini.npz: file not found"):
        load_sequences(tmp_path, "mini", "gt", ["S1"])
    (tmp_path / "data_3d_mini.npz").write_text("this is not an npz file")
    with pytest.raises(DataError, match=r"data_3d_mini.npz: cannot be read as an npz file"):
        load_positions_3d(tmp_path / "data_3d_mini.npz", "mini")
    with open(tmp_path / "data_3d_mini.npz", "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(DataError, match=r"data_3d_mini.npz: not an npz archive"):
        load_positions_3d(tmp_path / "data_3d_mini.npz", "mini")
    np.savez(tmp_path / "data_3d_mini.npz", poses=np.zeros(3))
    with pytest.raises(DataError, match=r"data_3d_mini.npz: missing key 'positions_3d' \(has \['poses'\]\)"):
        load_positions_3d(tmp_path / "data_3d_mini.npz", "mini")
    root = mini_like({"S1": {"Walk": random_world(5, 17)}}, good_2d())
    np.savez(root / "data_2d_mini_gt.npz", positions_2d=np.array(good_2d(), dtype=object))
    with pytest.raises(DataError, match=r"data_2d_mini_gt.npz: missing key 'metadata'"):
        load_sequences(root, "mini", "gt", ["S1"])


def test_unknown_names() -> None:
    message = r"unknown keypoints 'cpn' for dataset 'mini'; choose one of \['gt', 'det'\]"
    with pytest.raises(DataError, match=message):
        load_sequences(MINI_ROOT, "mini", "cpn", ["S1"])
    with pytest.raises(DataError, match="unknown dataset 'h37m'"):
        load_sequences(MINI_ROOT, "h37m", "gt", ["S1"])
