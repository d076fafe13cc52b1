"""Input that used to be accepted silently and give wrong numbers: each now errs or warns, naming the file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from data_fixtures import pixels, random_world, write_2d, write_3d

from hotpose.data.errors import DataError
from hotpose.data.sources import load_positions_2d, load_positions_3d, load_sequences


def _views(frames: int = 6) -> list[np.ndarray]:
    return [pixels(frames, seed=i) for i in range(4)]


def test_subject_without_actions_is_an_error_not_a_smaller_dataset(tmp_path: Path) -> None:
    write_3d(tmp_path / "data_3d_mini.npz", {"S1": {"Walk 1": random_world(6, 17)}, "S9": {}})
    write_2d(tmp_path / "data_2d_mini_gt.npz", {"S1": {"Walk 1": _views()}, "S9": {"Walk 1": _views()}})
    with pytest.raises(DataError, match=r"data_3d_mini.npz: positions_3d\['S9'\] has no actions"):
        load_sequences(tmp_path, "mini", "gt", ["S1", "S9"])
    write_2d(tmp_path / "data_2d_mini_gt.npz", {"S1": {"Walk 1": _views()}, "S9": {}})
    with pytest.raises(DataError, match=r"data_2d_mini_gt.npz: positions_2d\['S9'\] has no actions"):
        load_positions_2d(tmp_path / "data_2d_mini_gt.npz")


def test_empty_positions_are_an_error(tmp_path: Path) -> None:
    write_3d(tmp_path / "data_3d_mini.npz", {})
    with pytest.raises(DataError, match=r"data_3d_mini.npz: positions_3d holds no subjects"):
        load_positions_3d(tmp_path / "data_3d_mini.npz", "mini")
    write_2d(tmp_path / "data_2d_mini_gt.npz", {})
    with pytest.raises(DataError, match=r"data_2d_mini_gt.npz: positions_2d holds no subjects"):
        load_positions_2d(tmp_path / "data_2d_mini_gt.npz")


def test_millimetres_instead_of_metres_are_refused(tmp_path: Path) -> None:
    world = random_world(6, 17)
    write_3d(tmp_path / "data_3d_mini.npz", {"S1": {"Walk 1": world}})
    assert load_positions_3d(tmp_path / "data_3d_mini.npz", "mini")["S1"]["Walk 1"].shape == (6, 17, 3)
    write_3d(tmp_path / "data_3d_mini.npz", {"S1": {"Walk 1": world * 1000}})
    with pytest.raises(DataError, match=r"data_3d_mini.npz: positions_3d\['S1'\]\['Walk 1'\]: .*looks like "
                                        r"millimetres; .* in metres \(divide by 1000\)"):
        load_positions_3d(tmp_path / "data_3d_mini.npz", "mini")


def test_normalised_2d_instead_of_pixels_is_refused(tmp_path: Path) -> None:
    normalised = [v / 500 - 1 for v in _views()]  # what normalize_screen gives for a 1000-pixel image
    write_2d(tmp_path / "data_2d_mini_gt.npz", {"S1": {"Walk 1": normalised}})
    with pytest.raises(DataError, match=r"data_2d_mini_gt.npz: positions_2d\['S1'\]\['Walk 1'\]\[camera 0\]: "
                                        r".*look normalised already; .* in pixels"):
        load_positions_2d(tmp_path / "data_2d_mini_gt.npz")


def test_check_h36m_reports_empty_subject_and_empty_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from check_h36m import main

    views = {"Walking 1": _views()}
    subjects = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
    write_3d(tmp_path / "data_3d_h36m.npz", {s: ({} if s == "S11" else {"Walking 1": random_world(6, 32)})
                                             for s in subjects})
    for name in ("data_2d_h36m_gt.npz", "data_2d_h36m_cpn_ft_h36m_dbb.npz"):
        write_2d(tmp_path / name, {s: views for s in subjects})
    assert main([str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "positions_3d['S11'] has no actions" in captured.err and "ok" not in captured.out
    write_3d(tmp_path / "data_3d_h36m.npz", {})
    assert main([str(tmp_path)]) == 1
    assert "positions_3d holds no subjects" in capsys.readouterr().err


def test_all_zero_keypoint_frames_are_missing_not_detections(tmp_path: Path, caplog) -> None:
    from hotpose.inference.keypoints import load_keypoints

    points = np.full((5, 17, 2), 300.0) + np.arange(17)[None, :, None]
    points[[1, 3]] = 0.0  # OpenPose-style "no person"
    points[4, 2] = 0.0  # one joint it did not find
    np.savez(tmp_path / "k.npz", keypoints=points, width=640, height=480, layout="h36m")
    with caplog.at_level(logging.WARNING):
        track = load_keypoints(tmp_path / "k.npz")
    assert track.detected.tolist() == [True, False, True, False, True]
    assert np.isnan(track.points[[1, 3]]).all() and np.isfinite(track.points[[0, 2, 4]]).all()
    assert "k.npz: 2 of 5 frames have every keypoint at (0, 0)" in caplog.text
    assert "1 single keypoints at exactly (0, 0)" in caplog.text


def test_normalised_keypoint_files_are_refused(tmp_path: Path) -> None:
    from hotpose.inference.keypoints import load_keypoints

    points = np.random.default_rng(0).uniform(-1, 1, (5, 17, 2))
    np.savez(tmp_path / "k.npz", keypoints=points, width=640, height=480, layout="h36m")
    with pytest.raises(ValueError, match=r"k.npz: every keypoint lies within \[-2, 2\] in a 640x480 image"):
        load_keypoints(tmp_path / "k.npz")


def test_video_decoding_fewer_frames_than_declared_warns(caplog) -> None:
    from hotpose.infer import warn_frame_count

    with caplog.at_level(logging.WARNING):
        warn_frame_count(Path("clip.mp4"), 230, 63, None)
        warn_frame_count(Path("ok.mp4"), 230, 100, 100)  # stopped by detector.max_frames: as asked
        warn_frame_count(Path("unknown.mp4"), None, 63, None)  # the container does not say
    assert "clip.mp4: the container declares 230 frames but only 63 could be decoded" in caplog.text
    assert "ok.mp4" not in caplog.text and "unknown.mp4" not in caplog.text
