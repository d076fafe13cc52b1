"""Joint mappings checked joint by joint against hand-computed values, and keypoint file reading."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hotpose.data.skeleton import JOINT_NAMES
from hotpose.inference.keypoints import (
    BLAZEPOSE_JOINT_NAMES,
    BLAZEPOSE_TO_COCO,
    BLAZEPOSE_TO_H36M_DIRECT,
    COCO_JOINT_NAMES,
    COCO_TO_H36M_DIRECT,
    blazepose_to_h36m,
    coco_to_h36m,
    load_keypoints,
    save_keypoints,
)

# A COCO person, slightly asymmetric so every adjustment of the recipe moves something.
COCO = {
    "nose": (106, 40), "l_eye": (104, 36), "r_eye": (96, 36), "l_ear": (110, 38), "r_ear": (90, 38),
    "l_shoulder": (120, 70), "r_shoulder": (80, 70), "l_elbow": (130, 100), "r_elbow": (70, 100),
    "l_wrist": (135, 130), "r_wrist": (65, 130), "l_hip": (116, 150), "r_hip": (88, 150),
    "l_knee": (114, 200), "r_knee": (86, 200), "l_ankle": (115, 250), "r_ankle": (85, 250),
}
COCO_POINTS = np.array([COCO[n] for n in COCO_JOINT_NAMES], dtype=np.float64)
COCO_SCORES = np.arange(17) / 20.0


def test_direct_tables_pair_joints_of_the_same_name() -> None:
    for h36m, coco in COCO_TO_H36M_DIRECT.items():
        expected = "nose" if JOINT_NAMES[h36m] == "neck_nose" else JOINT_NAMES[h36m]
        assert COCO_JOINT_NAMES[coco] == expected
    for h36m, blaze in BLAZEPOSE_TO_H36M_DIRECT.items():
        assert BLAZEPOSE_JOINT_NAMES[blaze] == JOINT_NAMES[h36m]
    assert tuple(BLAZEPOSE_JOINT_NAMES[i] for i in BLAZEPOSE_TO_COCO) == COCO_JOINT_NAMES
    assert len(BLAZEPOSE_JOINT_NAMES) == 33 and len(set(BLAZEPOSE_JOINT_NAMES)) == 33


def test_coco_to_h36m_joint_by_joint() -> None:
    points, scores = coco_to_h36m(COCO_POINTS, COCO_SCORES)
    expected = {
        "pelvis": (102, 150),  # hip midpoint
        "r_hip": (88, 150), "r_knee": (86, 200), "r_ankle": (85, 250),
        "l_hip": (116, 150), "l_knee": (114, 200), "l_ankle": (115, 250),
        # mean of shoulders and hips = (101, 110); thorax x = 100 + (106 - 100) / 3 = 102;
        # x += 2 * (101 - (102 + 102) / 2) = -2
        "spine": (99, 110),
        # (100, 70) + ((106, 40) - (100, 70)) / 3 = (102, 60); y -= 2/3 * (36 - 40)
        "thorax": (102, 60 + 8 / 3),
        "neck_nose": (106 - 6 / 4, 40 + 30 / 4),  # nose - (nose - shoulder midpoint) / 4
        "head": ((104 + 96 + 110 + 90) / 4, 36 + 36 - 40),
        "l_shoulder": (120, 70), "l_elbow": (130, 100), "l_wrist": (135, 130),
        "r_shoulder": (80, 70), "r_elbow": (70, 100), "r_wrist": (65, 130),
    }
    for j, name in enumerate(JOINT_NAMES):
        np.testing.assert_allclose(points[j], expected[name], atol=1e-4, err_msg=name)
    expected_scores = {"pelvis": (0.55 + 0.60) / 2, "thorax": (0.25 + 0.30) / 2, "head": 0.125,
                       "neck_nose": 0.0, "r_hip": 0.60, "l_wrist": 0.45, "r_ankle": 0.80}
    expected_scores["spine"] = (expected_scores["pelvis"] + expected_scores["thorax"]) / 2
    for name, value in expected_scores.items():
        assert scores[JOINT_NAMES.index(name)] == pytest.approx(value, abs=1e-6), name


def test_coco_to_h36m_keeps_leading_dims() -> None:
    batch = np.stack([COCO_POINTS, COCO_POINTS + 5])[None]  # (1, 2, 17, 2)
    points, scores = coco_to_h36m(batch)
    assert points.shape == (1, 2, 17, 2) and scores is None
    np.testing.assert_allclose(points[0, 1], points[0, 0] + 5, atol=1e-4)


def _blazepose_person() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    points = rng.uniform(0, 200, (33, 2))
    named = {"l_eye": (104, 36), "r_eye": (96, 36), "mouth_l": (103, 50), "mouth_r": (97, 50),
             "nose": (100, 44), "l_shoulder": (120, 70), "r_shoulder": (80, 70), "l_hip": (114, 150),
             "r_hip": (90, 150)}
    for name, value in named.items():
        points[BLAZEPOSE_JOINT_NAMES.index(name)] = value
    return points, np.linspace(0.0, 0.96, 33)


def test_blazepose_to_h36m_joint_by_joint() -> None:
    points, visibility = _blazepose_person()
    out, scores = blazepose_to_h36m(points, visibility)
    at = {n: points[i] for i, n in enumerate(BLAZEPOSE_JOINT_NAMES)}
    vis = {n: visibility[i] for i, n in enumerate(BLAZEPOSE_JOINT_NAMES)}
    expected = {
        "pelvis": (102, 150), "thorax": (100, 70), "spine": (101, 110),
        # eyes (100, 36), mouth (100, 50): 36 + 1.5 * (36 - 50) = 15
        "head": (100, 15), "neck_nose": (100, 44),
    }
    for name in ("r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "l_shoulder", "l_elbow",
                 "l_wrist", "r_shoulder", "r_elbow", "r_wrist"):
        expected[name] = at[name]
    for j, name in enumerate(JOINT_NAMES):
        np.testing.assert_allclose(out[j], expected[name], atol=1e-4, err_msg=name)
    assert scores[0] == pytest.approx((vis["l_hip"] + vis["r_hip"]) / 2)
    assert scores[8] == pytest.approx((vis["l_shoulder"] + vis["r_shoulder"]) / 2)
    assert scores[7] == pytest.approx((scores[0] + scores[8]) / 2)
    assert scores[10] == pytest.approx(np.mean([vis[n] for n in ("l_eye", "r_eye", "mouth_l", "mouth_r")]))
    assert scores[9] == pytest.approx(vis["nose"])
    assert scores[3] == pytest.approx(vis["r_ankle"])
    midpoint, _ = blazepose_to_h36m(points, neck_nose="midpoint")
    np.testing.assert_allclose(midpoint[9], ((100 + 100) / 2, (70 + 15) / 2), atol=1e-4)
    with pytest.raises(ValueError, match="neck_nose"):
        blazepose_to_h36m(points, neck_nose="chin")


def test_blazepose_via_coco_subset_is_the_coco_recipe() -> None:
    points, _ = _blazepose_person()
    via_coco, _ = coco_to_h36m(points[list(BLAZEPOSE_TO_COCO)])
    direct, _ = blazepose_to_h36m(points)
    limbs = list(BLAZEPOSE_TO_H36M_DIRECT)
    np.testing.assert_allclose(via_coco[limbs], direct[limbs], atol=1e-4)


def test_mapping_rejects_wrong_joint_counts() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 2\)"):
        coco_to_h36m(np.zeros((4, 33, 2)))
    with pytest.raises(ValueError, match=r"\(\.\.\., 33, 2\)"):
        blazepose_to_h36m(np.zeros((4, 17, 2)))
    with pytest.raises(ValueError, match="scores"):
        coco_to_h36m(np.zeros((4, 17, 2)), np.zeros((4, 16)))


# ----------------------------------------------------------------------------------------------------------
# files


def test_npz_round_trip_with_stored_metadata(tmp_path) -> None:
    frames = np.stack([COCO_POINTS + t for t in range(5)])
    scores = np.tile(COCO_SCORES, (5, 1))
    path = save_keypoints(tmp_path / "k.npz", frames, scores, 640, 480, "coco", fps=30.0)
    track = load_keypoints(path)
    assert (track.width, track.height, track.fps, track.source_layout) == (640, 480, 30.0, "coco")
    expected, expected_scores = coco_to_h36m(frames, scores)
    np.testing.assert_allclose(track.points, expected, atol=1e-4)
    np.testing.assert_allclose(track.scores, expected_scores, atol=1e-6)
    assert track.detected.all()


def test_npy_with_confidence_channel_and_arguments(tmp_path) -> None:
    array = np.concatenate([np.stack([COCO_POINTS] * 3), np.full((3, 17, 1), 0.5)], axis=-1)
    np.save(tmp_path / "k.npy", array)
    track = load_keypoints(tmp_path / "k.npy", layout="h36m", width=100, height=50)
    np.testing.assert_allclose(track.points[0], COCO_POINTS, atol=1e-4)  # h36m: taken as it is
    np.testing.assert_allclose(track.scores, 0.5)


def test_json_frames_with_missing_frame_and_person_axis(tmp_path) -> None:
    frames = np.stack([COCO_POINTS] * 4)
    frames[2] = np.nan
    data = {"keypoints": [np.where(np.isnan(frames), None, frames).tolist()], "width": 320, "height": 240,
            "layout": "h36m"}
    (tmp_path / "k.json").write_text(json.dumps(data))
    track = load_keypoints(tmp_path / "k.json")
    assert track.detected.tolist() == [True, True, False, True]
    assert np.isnan(track.points[2]).all() and np.isfinite(track.points[[0, 1, 3]]).all()


def test_stored_detected_flags_mark_frames_missing(tmp_path) -> None:
    np.savez(tmp_path / "k.npz", keypoints=np.full((3, 17, 2), 5.0), detected=[True, False, True], width=10,
             height=10, layout="h36m")
    track = load_keypoints(tmp_path / "k.npz")
    assert track.detected.tolist() == [True, False, True] and np.isnan(track.points[1]).all()


@pytest.mark.parametrize(
    ("array", "kwargs", "message"),
    [
        (np.zeros((5, 15, 2)), {"width": 10, "height": 10}, "15 joints"),
        (np.zeros((5, 17, 2)), {"width": 10, "height": 10}, "layout=h36m or layout=coco"),
        (np.zeros((5, 17, 2)), {"layout": "coco", "width": 0, "height": 10}, "positive"),
        (np.zeros((5, 17, 2)), {"layout": "coco"}, "image size unknown"),
        (np.zeros((5, 17, 2)), {"layout": "blazepose", "width": 10, "height": 10}, "has 33 joints"),
        (np.zeros((5, 17, 4)), {"layout": "coco", "width": 10, "height": 10}, "2|3"),
        (np.zeros((0, 17, 2)), {"layout": "coco", "width": 10, "height": 10}, "t >= 1"),
    ],
)
def test_bad_keypoint_files_fail_clearly(tmp_path, array, kwargs, message) -> None:
    np.save(tmp_path / "k.npy", array)
    with pytest.raises(ValueError, match=message):
        load_keypoints(tmp_path / "k.npy", **kwargs)


def test_bad_paths_and_keys(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_keypoints(tmp_path / "missing.npz")
    np.savez(tmp_path / "k.npz", poses=np.zeros((2, 17, 2)))
    with pytest.raises(ValueError, match="no keypoint array"):
        load_keypoints(tmp_path / "k.npz")
    (tmp_path / "k.csv").write_text("1,2")
    with pytest.raises(ValueError, match="unsupported"):
        load_keypoints(tmp_path / "k.csv")


@pytest.mark.parametrize(("name", "content"), [
    ("truncated.npz", None),                 # the first bytes of a real npz
    ("pickled.npz", "object"),               # a VideoPose3D-style dict stored as an object array
    ("broken.json", b"[[1, 2"),
    ("empty.npy", b""),
])
def test_unreadable_keypoint_files_name_the_file(tmp_path, name, content) -> None:
    path = tmp_path / name
    if content is None:
        np.savez(tmp_path / "full.npz", keypoints=np.zeros((50, 17, 2)))
        path.write_bytes((tmp_path / "full.npz").read_bytes()[:100])
    elif content == "object":
        np.savez(path, positions_2d=np.array({"S1": {}}, dtype=object))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=f"{name}: cannot be read as a keypoint file"):
        load_keypoints(path, layout="h36m", width=100, height=100)
