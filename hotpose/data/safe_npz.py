"""Read ``.npz`` files without running code from them.

VideoPose3D-format files store their dicts as pickled 0-d object arrays, and ``np.load(allow_pickle=True)``
unpickles them with the full pickle machinery: a crafted file then runs any Python it names. Here object
arrays are unpickled by a restricted unpickler that resolves only the globals that numpy needs to rebuild
arrays, dtypes and scalars (under the numpy 1.x module names and the numpy 2.x ones); containers, strings,
bytes, numbers, booleans and None need no global at all. Any other global is refused with a
:class:`~hotpose.data.errors.DataError` naming the file, the array and the global, before it is imported.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import IO, Any

import numpy as np

from hotpose.data.errors import DataError

#: (module, name) globals a pickled VideoPose3D dict may reference: numpy's array/dtype/scalar rebuilders,
#: under the numpy 1.x (``numpy.core``) and 2.x (``numpy._core``) module names; ``_codecs.encode`` is how
#: pickle protocol 2 stores bytes and ``complex`` is a number.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    *((f"numpy.{core}.multiarray", name) for core in ("core", "_core") for name in ("_reconstruct", "scalar")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
    ("_codecs", "encode"),
    ("builtins", "complex"),
})


class ForbiddenPickle(pickle.UnpicklingError):
    """A pickle named a global outside :data:`ALLOWED_GLOBALS`."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (no import happens for anything else)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise ForbiddenPickle(module, name)
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not supported")


def _read_header(fp: IO[bytes]) -> np.dtype:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        _, _, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version in ((2, 0), (3, 0)):
        _, _, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unknown .npy format version {version}")
    return dtype


def _read_member(archive: zipfile.ZipFile, member: str) -> np.ndarray:
    with archive.open(member) as fp:
        dtype = _read_header(fp)
        if dtype.hasobject:
            # latin1: what Python 2 pickles of numpy arrays need; Python 3 pickles are unaffected
            return RestrictedUnpickler(fp, encoding="latin1").load()
    with archive.open(member) as fp:
        return np.lib.format.read_array(fp, allow_pickle=False)


def load_npz(path: str | os.PathLike, keys: Collection[str] | None = None) -> dict[str, Any]:
    """Every array of an ``.npz`` file (or only ``keys``) as ``{key: ndarray}``, like ``np.load`` gives them.

    Object arrays (e.g. VideoPose3D's 0-d arrays holding a dict) come back as object arrays; ``.item()``
    yields the dict. Raises :class:`DataError` naming the file when it is missing, not an npz archive,
    unreadable, lacks a requested key, or a pickle in it references anything but numpy arrays/dtypes.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as fh:
        if fh.read(6) == b"\x93NUMPY":
            raise DataError(f"{path}: not an npz archive (holds a single .npy array)")
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as err:
        raise DataError(f"{path}: cannot be read as an npz file ({err})") from None
    with archive:
        members = {name[: -len(".npy")]: name for name in archive.namelist() if name.endswith(".npy")}
        if keys is not None:
            missing = [k for k in keys if k not in members]
            if missing:
                raise DataError(f"{path}: missing key {missing[0]!r} (has {sorted(members)})")
            members = {k: members[k] for k in keys}
        out: dict[str, Any] = {}
        for key, member in members.items():
            try:
                out[key] = _read_member(archive, member)
            except ForbiddenPickle as err:
                raise DataError(
                    f"{path}: {key!r} holds a pickled {err.qualname}, which could run code; refused "
                    "(hotpose reads only dicts, lists, strings, numbers and numpy arrays from npz files)"
                ) from None
            except Exception as err:  # corrupt data: zlib, pickle, format and value errors alike
                raise DataError(f"{path}: {key!r} cannot be read ({type(err).__name__}: {err})") from None
    return out
