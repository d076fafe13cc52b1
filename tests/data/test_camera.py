"""Camera model: quaternion rotation, world↔camera, distorted projection, screen normalisation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hotpose.data.camera import (
    Camera,
    camera_to_world,
    denormalize_screen,
    normalize_screen,
    normalize_screen_official,
    project_to_pixels,
    qconj,
    qrot,
    world_to_camera,
)
from hotpose.data.sources import DEFAULT_CAMERAS_FILE, MINI_ROOT, DataError, load_cameras


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Textbook rotation matrix of a unit quaternion (w, x, y, z): an independent formula for qrot."""
    w, x, y, z = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def simple_camera(**overrides: object) -> Camera:
    fields = dict(id="c", res_w=1000, res_h=1000, center=[500.0, 500.0], focal_length=[1000.0, 1000.0],
                  radial_distortion=[0.0, 0.0, 0.0], tangential_distortion=[0.0, 0.0],
                  orientation=[1.0, 0.0, 0.0, 0.0], translation=[0.0, 0.0, 0.0])
    fields.update(overrides)
    return Camera(**fields)


def test_qrot_quarter_turn_about_z() -> None:
    half = np.sqrt(0.5)
    q = np.array([half, 0.0, 0.0, half])  # 90 degrees about +z
    np.testing.assert_allclose(qrot(q, np.array([1.0, 0.0, 0.0])), [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(qrot(q, np.array([0.0, 1.0, 0.0])), [-1.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(qrot(qconj(q), np.array([0.0, 1.0, 0.0])), [1.0, 0.0, 0.0], atol=1e-12)


def test_qrot_matches_rotation_matrix_in_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    v = rng.normal(size=(5, 7, 3))
    expected = v @ quat_to_matrix(q).T
    np.testing.assert_allclose(qrot(q, v), expected, atol=1e-12)
    got = qrot(torch.tensor(q), torch.tensor(v))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


def test_world_camera_round_trip_and_translation_in_metres() -> None:
    rng = np.random.default_rng(1)
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    t = np.array([1.8, 4.9, 1.5])
    points = rng.normal(size=(10, 17, 3))
    cam = world_to_camera(points, q, t)
    np.testing.assert_allclose(cam, (points - t) @ quat_to_matrix(q), atol=1e-12)  # R^T (X - t)
    np.testing.assert_allclose(camera_to_world(cam, q, t), points, atol=1e-12)
    # the camera centre maps to the origin of the camera frame
    np.testing.assert_allclose(world_to_camera(t, q, t), 0.0, atol=1e-12)


def test_projection_hand_computed() -> None:
    point = np.array([0.1, 0.2, 2.0])  # normalised image coordinates (0.05, 0.1), r2 = 0.0125
    np.testing.assert_allclose(project_to_pixels(point, simple_camera()), [550.0, 600.0])
    radial = simple_camera(radial_distortion=[0.1, 0.0, 0.0])  # factor 1 + 0.1 * 0.0125 = 1.00125
    np.testing.assert_allclose(project_to_pixels(point, radial), [550.0625, 600.125])
    # tangential: p1 x + p2 y = 0.0025; x' = 0.05 * 1.0025 + p1 r2, y' = 0.1 * 1.0025 + p2 r2
    tangential = simple_camera(tangential_distortion=[0.01, 0.02])
    np.testing.assert_allclose(project_to_pixels(point, tangential), [550.25, 600.5])
    k3 = simple_camera(radial_distortion=[0.0, 0.0, 2.0])  # 1 + 2 r2^3
    expected = 500 + 1000 * np.array([0.05, 0.1]) * (1 + 2 * 0.0125**3)
    np.testing.assert_allclose(project_to_pixels(point, k3), expected)


def test_projection_clips_far_off_axis_points_and_works_in_torch() -> None:
    far = np.array([10.0, -10.0, 1.0])  # x/z = 10 is clipped to 1
    np.testing.assert_allclose(project_to_pixels(far, simple_camera()), [1500.0, -500.0])
    cam = simple_camera(radial_distortion=[-0.2, 0.24, -0.003], tangential_distortion=[-0.001, -0.0014])
    points = np.random.default_rng(2).normal(size=(4, 17, 3)) * 0.3 + [0, 0, 4]
    np.testing.assert_allclose(project_to_pixels(torch.tensor(points), cam).numpy(),
                               project_to_pixels(points, cam), atol=1e-9)


def test_normalisation_hand_values_and_inverse() -> None:
    px = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0], [250.0, 0.0]])
    expected = np.array([[-1.0, -1.002], [1.0, 1.002], [0.0, 0.0], [-0.5, -1.002]])
    np.testing.assert_allclose(normalize_screen(px, 1000, 1002), expected, atol=1e-12)
    np.testing.assert_allclose(denormalize_screen(expected, 1000, 1002), px, atol=1e-9)
    tpx = torch.tensor(px, dtype=torch.float32)
    torch.testing.assert_close(denormalize_screen(normalize_screen(tpx, 1000, 1002), 1000, 1002), tpx)
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        normalize_screen(np.zeros((3, 3)), 1000, 1000)


def test_official_normalisation_rounds_like_the_official_code() -> None:
    """x / w * 2 in the input's float32, then [1, h / w] subtracted in float64, rounded once more."""
    px = np.random.default_rng(0).uniform(0, 1000, (2000, 2)).astype(np.float32)
    ours = normalize_screen_official(px, 1000, 1002)
    assert ours.dtype == np.float32
    for (x, y), (u, v) in zip(px[:50].tolist(), ours[:50].tolist()):
        sx = np.float32(np.float32(x) / np.float32(1000)) * np.float32(2)  # float32 steps, one at a time
        sy = np.float32(np.float32(y) / np.float32(1000)) * np.float32(2)
        assert u == np.float32(float(sx) - 1.0) and v == np.float32(float(sy) - 1002 / 1000)
    # the same values up to float32 rounding of x / w * 2 (<= 2**-22), but mostly not the same bits as one
    # float64 computation rounded once
    rounded_once = normalize_screen(px.astype(np.float64), 1000, 1002).astype(np.float32)
    assert np.abs(ours - rounded_once).max() <= 2.0**-22
    assert 0.2 < (ours != rounded_once).mean() < 0.95
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        normalize_screen_official(np.zeros((3, 3), np.float32), 1000, 1000)


def test_shipped_cameras_are_the_published_calibration() -> None:
    cameras = load_cameras()
    assert list(cameras) == ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]
    assert [c.id for c in cameras["S9"]] == ["54138969", "55011271", "58860488", "60457274"]
    raw = json.loads(DEFAULT_CAMERAS_FILE.read_text())["subjects"]["S1"][0]
    s1 = cameras["S1"][0]
    np.testing.assert_allclose(s1.translation, np.array(raw["translation"]) / 1000)  # mm → m
    np.testing.assert_allclose(s1.center, [512.54150390625, 515.4514770507812])
    assert (s1.res_w, s1.res_h) == (1000, 1002)


def test_reprojecting_embedded_3d_gives_gt_2d() -> None:
    cameras = load_cameras(MINI_ROOT / "cameras_mini.json")
    with np.load(MINI_ROOT / "data_3d_mini.npz", allow_pickle=True) as f:
        poses_3d = f["positions_3d"].item()
    with np.load(MINI_ROOT / "data_2d_mini_gt.npz", allow_pickle=True) as f:
        poses_2d = f["positions_2d"].item()
    worst = 0.0
    for subject, actions in poses_3d.items():
        for action, world in actions.items():
            for camera, gt in zip(cameras[subject], poses_2d[subject][action]):
                cam = world_to_camera(world.astype(np.float64), camera.orientation, camera.translation)
                assert (cam[..., 2] > 0).all()
                worst = max(worst, float(np.abs(project_to_pixels(cam, camera) - gt).max()))
    assert worst < 0.01


def test_camera_file_errors(tmp_path) -> None:
    with pytest.raises(DataError, match="camera file not found"):
        load_cameras(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json: not a readable JSON"):
        load_cameras(tmp_path / "bad.json")
    entry = json.loads(DEFAULT_CAMERAS_FILE.read_text())["subjects"]["S1"][0]
    del entry["focal_length"]
    (tmp_path / "lacks.json").write_text(json.dumps({"subjects": {"S1": [entry]}}))
    with pytest.raises(DataError, match=r"subjects\['S1'\]\[0\] lacks \['focal_length'\]"):
        load_cameras(tmp_path / "lacks.json")
    entry["focal_length"] = [1.0, 1.0]
    entry["orientation"] = [1.0, 1.0, 0.0, 0.0]
    (tmp_path / "quat.json").write_text(json.dumps({"subjects": {"S1": [entry]}}))
    with pytest.raises(DataError, match="quaternion must be unit"):
        load_cameras(tmp_path / "quat.json")
