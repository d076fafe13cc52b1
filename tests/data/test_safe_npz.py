"""load_npz: real VideoPose3D-format files load as np.load gives them; pickles naming anything else are refused."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from hotpose.data.errors import DataError
from hotpose.data.safe_npz import load_npz
from hotpose.data.sources import MINI_ROOT


def _same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and (
            bool(np.array_equal(a, b)) if a.dtype != object else _same(a.tolist(), b.tolist()))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("name", ["data_3d_mini.npz", "data_2d_mini_gt.npz", "data_2d_mini_det.npz"])
def test_embedded_files_load_like_np_load(name: str) -> None:
    """The embedded files were written by numpy 1.x (globals under ``numpy.core``)."""
    with np.load(MINI_ROOT / name, allow_pickle=True) as ref:
        expected = {k: ref[k] for k in ref.files}
    assert _same(load_npz(MINI_ROOT / name), expected)


def test_videopose3d_style_file_loads(tmp_path: Path) -> None:
    """Written as VideoPose3D's prepare_data scripts do (np.savez_compressed with dicts), by this numpy."""
    positions = {"S1": {"Walking 1": [np.ones((4, 17, 2), np.float32), np.zeros((4, 17, 2), np.float64)]}}
    metadata = {"num_joints": 17, "keypoints_symmetry": [[4, 5, 6], [1, 2, 3]], "layout_name": "h36m",
                "scale": np.float32(0.5), "count": np.int64(3), "flag": True, "none": None, "raw": b"\x00",
                "pair": (1, 2.5 + 1j)}
    np.savez_compressed(tmp_path / "f.npz", positions_2d=positions, metadata=metadata, plain=np.arange(3))
    with np.load(tmp_path / "f.npz", allow_pickle=True) as ref:
        expected = {k: ref[k] for k in ref.files}
    loaded = load_npz(tmp_path / "f.npz")
    assert _same(loaded, expected)
    assert loaded["metadata"].item()["scale"] == np.float32(0.5)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_of_numpy_objects_loads(tmp_path: Path, protocol: int) -> None:
    value = np.empty((), dtype=object)
    value[()] = {"S1": {"A": np.arange(6, dtype=np.float32).reshape(2, 3)}, "n": np.int32(7)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|O", "fortran_order": False, "shape": ()})
    pickle.dump(value, buffer, protocol=protocol)
    with zipfile.ZipFile(tmp_path / "p.npz", "w") as archive:
        archive.writestr("positions_3d.npy", buffer.getvalue())
    got = load_npz(tmp_path / "p.npz")["positions_3d"].item()
    assert np.array_equal(got["S1"]["A"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert got["n"] == 7


class _Payload:
    """Unpickling this calls ``pathlib.Path.touch(marker)``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def _hostile_npz(path: Path, marker: Path, key: str = "positions_3d") -> Path:
    np.savez(path, **{key: np.array({"S1": _Payload(marker)}, dtype=object)})
    return path


def test_hostile_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = _hostile_npz(tmp_path / "evil.npz", marker)
    with np.load(path, allow_pickle=True) as f:  # sanity: the payload does run under plain np.load
        f["positions_3d"]
    assert marker.exists()
    marker.unlink()
    with pytest.raises(DataError, match=r"evil.npz: 'positions_3d' holds a pickled pathlib.*Path.touch"):
        load_npz(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["system", "eval"])
def test_classic_globals_are_refused(tmp_path: Path, name: str) -> None:
    module = {"system": "os", "eval": "builtins"}[name]
    body = f"c{module}\n{name}\n(S'true'\ntR.".encode()
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": ()})
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as archive:
        archive.writestr("metadata.npy", header.getvalue() + body)
    with pytest.raises(DataError, match=rf"x.npz: 'metadata' holds a pickled {module}.{name}, which could run"):
        load_npz(tmp_path / "x.npz")


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nothere.npz: file not found"):
        load_npz(tmp_path / "nothere.npz")
    (tmp_path / "t.npz").write_text("text")
    with pytest.raises(DataError, match=r"t.npz: cannot be read as an npz file"):
        load_npz(tmp_path / "t.npz")
    np.savez(tmp_path / "k.npz", a=np.zeros(2))
    with pytest.raises(DataError, match=r"k.npz: missing key 'b' \(has \['a'\]\)"):
        load_npz(tmp_path / "k.npz", keys=["b"])
    with zipfile.ZipFile(tmp_path / "c.npz", "w") as archive:
        archive.writestr("a.npy", b"\x93NUMPY\x01\x00garbage")
    with pytest.raises(DataError, match=r"c.npz: 'a' cannot be read"):
        load_npz(tmp_path / "c.npz")
