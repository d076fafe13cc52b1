"""scripts/check_h36m.py on synthetic Human3.6M folders: complete, incomplete, broken."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from data_fixtures import pixels, random_world, write_2d, write_3d

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_h36m.py"
SUBJECTS = ("S1", "S5", "S6", "S7", "S8", "S9", "S11")


@pytest.fixture(scope="module")
def check_h36m():
    spec = importlib.util.spec_from_file_location("check_h36m", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_h36m(root: Path, subjects=SUBJECTS) -> Path:
    write_3d(root / "data_3d_h36m.npz", {s: {"Walking 1": random_world(6, 32), "Eating": random_world(4, 32)}
                                         for s in subjects})
    views = {s: {"Walking 1": [pixels(7)] * 4, "Eating": [pixels(4)] * 4} for s in subjects}
    write_2d(root / "data_2d_h36m_gt.npz", views)
    write_2d(root / "data_2d_h36m_cpn_ft_h36m_dbb.npz", views)
    return root


def test_complete_folder_passes(check_h36m, tmp_path, capsys) -> None:
    assert check_h36m.main([str(write_h36m(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "data_3d_h36m.npz: 7 subjects, 70 frames" in out
    assert "aligned with the 3D file: 56 (subject, action, camera) sequences" in out
    assert "ok: the folder is complete" in out


def test_missing_file_and_subject_fail(check_h36m, tmp_path, capsys) -> None:
    write_h36m(tmp_path, SUBJECTS[:-1])
    (tmp_path / "data_2d_h36m_cpn_ft_h36m_dbb.npz").unlink()
    assert check_h36m.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "data_2d_h36m_cpn_ft_h36m_dbb.npz: file not found" in err
    assert "data_3d_h36m.npz: subjects ['S11'] missing" in err
    assert check_h36m.main([str(tmp_path / "nowhere")]) == 1


def test_misaligned_2d_is_reported(check_h36m, tmp_path, capsys) -> None:
    write_h36m(tmp_path)
    short = {s: {"Walking 1": [pixels(5)] * 4, "Eating": [pixels(4)] * 4} for s in SUBJECTS}
    write_2d(tmp_path / "data_2d_h36m_gt.npz", short)
    assert check_h36m.main([str(tmp_path)]) == 1
    assert "has 5 2D frames, fewer than the 6 3D frames" in capsys.readouterr().err
