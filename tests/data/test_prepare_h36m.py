"""scripts/prepare_h36m.py on small synthetic release folders written with cdflib's CDF writer."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from hotpose.data.camera import normalize_screen, world_to_camera
from hotpose.data.sources import H36M_KEPT_JOINTS, load_cameras, load_positions_3d, load_sequences

cdflib = pytest.importorskip("cdflib")

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")
#: release file stems → the npz action names
TAKES = {"Directions 1": "Directions 1", "TakingPhoto": "Photo", "WalkingDog 1": "WalkDog 1"}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def prepare_h36m():
    return _load("prepare_h36m")


def write_pose(path: Path, pose: np.ndarray) -> None:
    """One release-style file: the variable ``Pose`` as one record of shape (frames, 32 * dims)."""
    from cdflib.cdfwrite import CDF

    path.parent.mkdir(parents=True, exist_ok=True)
    flat = pose.reshape(1, len(pose), -1)
    writer = CDF(str(path), delete=True)
    writer.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_DOUBLE, "Num_Elements": 1, "Rec_Vary": True,
                      "Dim_Sizes": list(flat.shape[1:])}, var_data=flat)
    writer.close()


def write_release(raw: Path, subjects=SUBJECTS, frames: int = 5) -> dict[tuple[str, str], np.ndarray]:
    """3D (mm) and per-camera 2D files of three takes per subject (S11 also the skipped Directions)."""
    rng = np.random.default_rng(0)
    cameras = load_cameras()
    world_mm = {}
    for subject in subjects:
        stems = [*TAKES, *(["Directions"] if subject == "S11" else [])]
        for stem in stems:
            pose = rng.normal(0, 300, (frames, 32, 3)) + np.array([0, 0, 1000.0])
            world_mm[(subject, stem)] = pose
            write_pose(raw / subject / "MyPoseFeatures" / "D3_Positions" / f"{stem}.cdf", pose)
            for c, camera in enumerate(cameras[subject]):
                pixels = rng.uniform(0, 1000, (frames, 32, 2)) + c  # distinct per camera
                write_pose(raw / subject / "MyPoseFeatures" / "D2_Positions" / f"{stem}.{camera.id}.cdf", pixels)
    return world_mm


def test_release_becomes_npz_that_the_loader_and_checker_accept(prepare_h36m, tmp_path, capsys) -> None:
    raw, out = tmp_path / "raw", tmp_path / "npz"
    world_mm = write_release(raw)
    assert prepare_h36m.main([str(raw), str(out)]) == 0
    assert "check them with" in capsys.readouterr().out

    positions = np.load(out / "data_3d_h36m.npz", allow_pickle=True)["positions_3d"].item()
    assert sorted(positions) == sorted(SUBJECTS)
    for subject in SUBJECTS:
        assert sorted(positions[subject]) == sorted(TAKES.values())  # renamed; S11 Directions left out
        for stem, action in TAKES.items():
            array = positions[subject][action]
            assert array.dtype == np.float32 and array.shape == (5, 32, 3)
            np.testing.assert_allclose(array, world_mm[(subject, stem)] / 1000, rtol=1e-6)  # mm → m

    cameras = load_cameras()
    records = load_sequences(out, "h36m", "gt", list(SUBJECTS), cameras=cameras)
    assert len(records) == len(SUBJECTS) * len(TAKES) * 4
    for record in records[:8]:
        stem = next(s for s, a in TAKES.items() if a == record.action)
        camera = cameras[record.subject][record.camera]
        # 3D: the kept 17 joints in that camera's frame, root-relative
        cam = world_to_camera(world_mm[(record.subject, stem)][:, H36M_KEPT_JOINTS] / 1000, camera.orientation,
                              camera.translation)
        np.testing.assert_allclose(record.pose_3d, cam - cam[:, :1], atol=1e-5)
        # 2D: this camera's D2_Positions file, kept joints, in the loader's screen normalisation
        raw_2d = prepare_h36m.read_pose(raw / record.subject / "MyPoseFeatures" / "D2_Positions"
                                        / f"{stem}.{camera.id}.cdf", 2)[:, H36M_KEPT_JOINTS]
        np.testing.assert_allclose(record.pose_2d, normalize_screen(raw_2d, camera.res_w, camera.res_h), atol=1e-5)

    # check_h36m: everything but the detector keypoints, which the release does not contain
    problems = _load("check_h36m").check(out)
    assert len(problems) == 1 and "data_2d_h36m_cpn_ft_h36m_dbb.npz: file not found" in problems[0]
    assert len(load_positions_3d(out / "data_3d_h36m.npz", "h36m")["S1"]["Photo"][0]) == 17


def test_bad_release_fails_with_one_line(prepare_h36m, tmp_path, capsys) -> None:
    raw, out = tmp_path / "raw", tmp_path / "npz"
    assert prepare_h36m.main([str(raw), str(out)]) == 1
    assert "not a folder" in capsys.readouterr().err

    write_release(raw, subjects=("S1",))
    assert prepare_h36m.main([str(raw), str(out), "--subjects", "S1", "S5"]) == 1
    assert "S5/MyPoseFeatures/D3_Positions: folder not found" in capsys.readouterr().err

    (raw / "S1" / "MyPoseFeatures" / "D2_Positions" / "TakingPhoto.54138969.cdf").unlink()
    assert prepare_h36m.main([str(raw), str(out), "--subjects", "S1"]) == 1
    assert "no 2D file for action 'Photo' and camera 54138969" in capsys.readouterr().err

    broken = raw / "S1" / "MyPoseFeatures" / "D3_Positions" / "Directions 1.cdf"
    broken.write_bytes(b"not a cdf file")
    assert prepare_h36m.main([str(raw), str(out), "--subjects", "S1"]) == 1
    err = capsys.readouterr().err
    assert "Directions 1.cdf: cannot read the variable 'Pose'" in err and err.count("error:") == 1

    write_pose(broken, np.zeros((4, 31, 3)))  # 31 joints
    assert prepare_h36m.main([str(raw), str(out), "--subjects", "S1"]) == 1
    assert "not a multiple of 32 joints x 3" in capsys.readouterr().err


def test_existing_output_needs_force(prepare_h36m, tmp_path, capsys) -> None:
    raw, out = tmp_path / "raw", tmp_path / "npz"
    write_release(raw, subjects=("S1",), frames=3)
    assert prepare_h36m.main([str(raw), str(out), "--subjects", "S1"]) == 0
    assert prepare_h36m.main([str(raw), str(out), "--subjects", "S1"]) == 1
    assert "pass --force" in capsys.readouterr().err
    assert prepare_h36m.main([str(raw), str(out), "--subjects", "S1", "--force"]) == 0


def test_action_names_follow_videopose3d(prepare_h36m) -> None:
    assert prepare_h36m.canonical_action("TakingPhoto 1") == "Photo 1"
    assert prepare_h36m.canonical_action("WalkingDog") == "WalkDog"
    assert prepare_h36m.canonical_action("Walking 1") == "Walking 1"
