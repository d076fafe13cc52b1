"""MPI-INF-3DHP loading (synthetic files in the exact field format), joint layout, windows and bad input."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from mpi_3dhp_files import make_test_data, make_train_data, write_3dhp, write_pickled

from hotpose.data.camera import denormalize_screen
from hotpose.data.mpi_inf_3dhp import (
    TEST_FILE,
    TRAIN_FILE,
    load_test_sequences,
    load_train_sequences,
)
from hotpose.data.mpi_inf_3dhp_datamodule import MPIINF3DHPDataModule
from hotpose.data.skeleton import (
    JOINT_NAMES,
    JOINTS_LEFT,
    JOINTS_RIGHT,
    MPI_INF_3DHP_JOINT_NAMES,
    MPI_INF_3DHP_JOINTS_LEFT,
    MPI_INF_3DHP_JOINTS_RIGHT,
    MPI_INF_3DHP_PARENTS,
    MPI_INF_3DHP_ROOT,
    MPI_INF_3DHP_TO_H36M,
    PARENTS,
)
from hotpose.data.sources import DataError

SUBJECTS = ["S1", "S2"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return write_3dhp(tmp_path)


def test_layout_maps_onto_the_h36m_skeleton() -> None:
    order = list(MPI_INF_3DHP_TO_H36M)
    assert sorted(order) == list(range(17)) and MPI_INF_3DHP_JOINT_NAMES[MPI_INF_3DHP_ROOT] == "pelvis"
    assert order[0] == MPI_INF_3DHP_ROOT  # the 3DHP root becomes hotpose's root
    to_hotpose = np.argsort(order)
    # left/right pairs land on hotpose's pairs, so flip augmentation and flip TTA stay right
    assert sorted(to_hotpose[list(MPI_INF_3DHP_JOINTS_LEFT)]) == sorted(JOINTS_LEFT)
    assert sorted(to_hotpose[list(MPI_INF_3DHP_JOINTS_RIGHT)]) == sorted(JOINTS_RIGHT)
    # same names, except 3DHP's neck / head / head top standing for Human3.6M's thorax / neck-nose / head
    renamed = {"thorax": "neck", "neck_nose": "head", "head": "head_top"}
    assert [MPI_INF_3DHP_JOINT_NAMES[j] for j in order] == [renamed.get(n, n) for n in JOINT_NAMES]
    # the kinematic tree is Human3.6M's, except that 3DHP hangs the head top off the neck
    parents = [-1 if MPI_INF_3DHP_PARENTS[j] < 0 else int(to_hotpose[MPI_INF_3DHP_PARENTS[j]]) for j in order]
    differ = [JOINT_NAMES[i] for i in range(17) if parents[i] != PARENTS[i]]
    assert differ == ["head"]


def test_train_file_loads_as_camera_sequences(root: Path) -> None:
    records = load_train_sequences(root / TRAIN_FILE, SUBJECTS)
    assert [(r.subject, r.action, r.camera) for r in records[:3]] == [("S1", "Seq1", 0), ("S1", "Seq1", 2),
                                                                      ("S1", "Seq2", 0)]
    assert len(records) == 8 and all((r.res_w, r.res_h) == (2048, 2048) for r in records)
    raw = make_train_data()["S1 Seq1"][0]["2"]
    record = records[1]
    # metres, pelvis at 0, Human3.6M order; the 2D back in pixels equals the file's
    expected = (raw["data_3d"] - raw["data_3d"][:, 14:15]) / 1000.0
    np.testing.assert_allclose(record.pose_3d, expected[:, list(MPI_INF_3DHP_TO_H36M)], atol=1e-6)
    np.testing.assert_allclose(denormalize_screen(record.pose_2d.astype(np.float64), 2048, 2048),
                               raw["data_2d"][:, list(MPI_INF_3DHP_TO_H36M)], atol=1e-3)
    assert len(load_train_sequences(root / TRAIN_FILE, ["S2"], cameras=[2])) == 2


def test_test_file_keeps_valid_flags_and_image_sizes(root: Path) -> None:
    loaded = load_test_sequences(root / TEST_FILE)
    assert [t.record.subject for t in loaded] == ["TS1", "TS2", "TS3", "TS4", "TS5", "TS6"]
    assert [(t.record.res_w, t.record.res_h) for t in loaded] == [(2048, 2048)] * 4 + [(1920, 1080)] * 2
    raw = make_test_data()
    for t in loaded:
        np.testing.assert_array_equal(t.valid, raw[t.record.subject]["valid"].astype(bool))
        pixels = denormalize_screen(t.record.pose_2d.astype(np.float64), t.record.res_w, t.record.res_h)
        np.testing.assert_allclose(pixels, raw[t.record.subject]["data_2d"][:, list(MPI_INF_3DHP_TO_H36M)],
                                   atol=1e-3)
    sizes = {"TS1": (1000, 500)}
    (only,) = load_test_sequences(root / TEST_FILE, ["TS1"], sizes)
    assert (only.record.res_w, only.record.res_h) == (1000, 500)


@pytest.mark.parametrize("pipeline", ["seq2seq", "seq2frame"])
def test_evaluation_windows_score_valid_frames_once(root: Path, pipeline: str) -> None:
    dm = MPIINF3DHPDataModule(root, train_subjects=SUBJECTS, frames=9, pipeline=pipeline, eval_batch_size=7)
    dm.setup()
    raw = make_test_data()
    scored: dict[str, list[int]] = {}
    inputs_invalid = False
    for batch in dm.test_dataloader():
        centre = 4
        for i, name in enumerate(batch["sequence"]):
            frames = batch["frame_index"][i]
            mask = batch["valid"][i] if pipeline == "seq2seq" else torch.zeros(9, dtype=torch.bool)
            if pipeline == "seq2frame":
                mask[centre] = True
                assert batch["valid"][i, centre]  # no window centred on an invalid frame
            scored.setdefault(name, []).extend(frames[mask].tolist())
            flags = raw[name]["valid"][frames.numpy()]
            inputs_invalid |= bool((flags == 0).any())
            assert not (batch["valid"][i] & torch.from_numpy(flags == 0)).any()  # invalid frames not scored
    assert inputs_invalid  # ... but they are inputs
    for name, frames in scored.items():
        assert sorted(frames) == np.flatnonzero(raw[name]["valid"]).tolist()  # every valid frame exactly once
    assert dm.num_scored_frames("test") == sum(int(v["valid"].sum()) for v in raw.values())
    assert bool(next(iter(dm.train_dataloader()))["valid"].any())


def _write(root: Path, train=None, test=None) -> Path:
    write_3dhp(root, train, test)
    return root


def _edited(maker, edit):
    data = copy.deepcopy(maker())
    edit(data)
    return data


@pytest.mark.parametrize(("which", "edit", "message"), [
    ("test", lambda d: d["TS2"].pop("valid"), r"data\['TS2'\] lacks key 'valid'"),
    ("test", lambda d: d["TS3"].update(valid=d["TS3"]["valid"][:-1]), r"'valid'\] has 37 flags .* for 38 frames"),
    ("test", lambda d: d["TS1"].update(valid=d["TS1"]["valid"] * 2), r"'valid'\] must hold only 0 and 1"),
    ("test", lambda d: d["TS1"].update(data_3d=d["TS1"]["data_3d"][:, :16]), r"has 16 joints, expected the 17"),
    ("test", lambda d: d["TS4"]["data_2d"].__setitem__((3, 5, 0), np.nan), r"has NaN or inf \(first at frame 3"),
    ("test", lambda d: d.pop("TS6"), r"test sequence 'TS6' not in the file"),
    ("test", lambda d: d["TS5"].update(data_2d=d["TS5"]["data_2d"][:-2]), r"has 44 2D frames but 46 3D"),
    ("train", lambda d: d["S1 Seq2"][0]["0"].pop("data_3d"), r"lacks key 'data_3d'"),
    ("train", lambda d: d.__setitem__("S1Seq3", d.pop("S1 Seq2")), r"entry 'S1Seq3' is not named"),
    ("train", lambda d: d.__setitem__("S2 Seq1", d["S2 Seq1"][0]), r"must be \[\{camera: arrays\}, fps\]"),
    ("train", lambda d: d["S2 Seq1"][0]["2"].update(data_2d=np.zeros((3, 17, 2), np.int64)), r"must hold floats"),
])
def test_bad_files_fail_with_one_line_naming_the_file(tmp_path: Path, which: str, edit, message: str) -> None:
    if which == "test":
        _write(tmp_path, test=_edited(make_test_data, edit))
        run = lambda: load_test_sequences(tmp_path / TEST_FILE)  # noqa: E731
        name = TEST_FILE
    else:
        _write(tmp_path, train=_edited(make_train_data, edit))
        run = lambda: load_train_sequences(tmp_path / TRAIN_FILE, SUBJECTS)  # noqa: E731
        name = TRAIN_FILE
    with pytest.raises(DataError, match=message) as err:
        run()
    assert str(err.value).startswith(str(tmp_path / name)) and "\n" not in str(err.value)


def test_missing_unknown_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data_test_3dhp.npz: file not found"):
        load_test_sequences(tmp_path / TEST_FILE)
    write_3dhp(tmp_path, test={**make_test_data(("TS1",)), "TS7": make_test_data(("TS1",))["TS1"]})
    with pytest.raises(DataError, match=r"no image size known for test sequence 'TS7'.*data.image_sizes"):
        load_test_sequences(tmp_path / TEST_FILE, ["TS1", "TS7"])
    with pytest.raises(DataError, match=r"subjects \['S3'\] not in the file"):
        load_train_sequences(tmp_path / TRAIN_FILE, ["S1", "S3"])
    with pytest.raises(DataError, match=r"has no camera \[5\]"):
        load_train_sequences(tmp_path / TRAIN_FILE, ["S1"], cameras=[5])
    np.savez(tmp_path / TEST_FILE, positions=np.zeros(3))
    with pytest.raises(DataError, match=r"missing key 'data' \(has \['positions'\]\)"):
        load_test_sequences(tmp_path / TEST_FILE)
    write_pickled(tmp_path / TEST_FILE, [1, 2, 3])
    with pytest.raises(DataError, match=r"'data' must be a dict of test sequences, got ndarray"):
        load_test_sequences(tmp_path / TEST_FILE)
    (tmp_path / TEST_FILE).write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot be read as an npz file"):
        load_test_sequences(tmp_path / TEST_FILE)


def test_testing_alone_reads_only_the_test_file(root: Path) -> None:
    (root / TRAIN_FILE).unlink()
    dm = MPIINF3DHPDataModule(root, frames=9, pipeline="seq2frame")
    dm.setup("test")
    assert len(dm.dataset_for("test")) == dm.num_scored_frames("test")  # one window per valid frame
    with pytest.raises(RuntimeError, match=r"training split is read by setup\('fit'\)"):
        dm.dataset_for("train")
    with pytest.raises(DataError, match="data_train_3dhp.npz: file not found"):
        dm.setup("fit")
