"""scripts/check_3dhp.py on synthetic MPI-INF-3DHP folders: complete, incomplete, broken."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from mpi_3dhp_files import make_test_data, make_train_data, write_3dhp

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_3dhp.py"
ALL_SUBJECTS = tuple(f"S{i}" for i in range(1, 9))


@pytest.fixture(scope="module")
def check_3dhp():
    spec = importlib.util.spec_from_file_location("check_3dhp", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_complete_folder_passes_and_reports_valid_counts(check_3dhp, tmp_path: Path, capsys) -> None:
    write_3dhp(tmp_path, train=make_train_data(ALL_SUBJECTS, frames=5))
    assert check_3dhp.main([str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "data_train_3dhp.npz: 8 subjects, 32 camera sequences" in captured.out
    assert "S1: sequences Seq1, Seq2; cameras [0, 2]" in captured.out
    valid = {k: int(v["valid"].sum()) for k, v in make_test_data().items()}
    assert f"TS5:     46 frames, {valid['TS5']:5,d} valid, 1920x1080 pixels" in captured.out
    assert "ok: the folder is complete" in captured.out
    # the synthetic counts are not the released annotation's: said, but not an error
    assert "TS1 has 19 valid frames, the released annotation 603" in captured.err


def test_missing_subject_file_and_broken_flags_fail(check_3dhp, tmp_path: Path, capsys) -> None:
    test = make_test_data()
    test["TS2"]["valid"] = test["TS2"]["valid"][:5]
    write_3dhp(tmp_path, train=make_train_data(ALL_SUBJECTS[:-1], frames=5), test=test)
    assert check_3dhp.main([str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "data_train_3dhp.npz: subjects ['S8'] not in the file" in err
    assert "data['TS2']['valid'] has 5 flags" in err
    (tmp_path / "data_test_3dhp.npz").unlink()
    assert check_3dhp.main([str(tmp_path)]) == 1
    assert "data_test_3dhp.npz: file not found" in capsys.readouterr().err
    assert check_3dhp.main([str(tmp_path / "nowhere")]) == 1
