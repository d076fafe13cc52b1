"""Checkpoint files: read without running code from them, write so that a file on disk is always complete.

Reading: every ``.ckpt`` / ``.pt`` / ``.pth`` a user gives goes through :func:`load_torch_file`, which is
``torch.load(weights_only=True)`` (tensors and plain containers only, PyTorch's own safe default) with the
failures translated into one :class:`CheckpointError` line naming the file: missing, empty, truncated,
not a torch file, or holding a pickled object that could run code. hotpose's own checkpoints (Lightning's,
``hotpose.convert``'s, ``tokenizer.pt``) hold nothing else, so they need no allow-list.

Writing: :func:`atomic_torch_save` writes a temporary file in the target's folder, flushes it to disk and
renames it over the target (``os.replace``, atomic on POSIX and Windows). A full disk, a kill or a crash
mid-write leaves the previous file (or none), never a truncated one. :class:`SafeCheckpointIO` makes
Lightning use both (``trainer.plugins``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from hotpose.errors import UserError

#: numpy's array, dtype and scalar rebuilders, under the numpy 1.x and 2.x module names: what the numpy
#: RNG state inside some official HoT files needs. Admitted only where :func:`load_torch_file` is asked to.
_NUMPY_CORE = getattr(np, "_core", None) or np.core
NUMPY_SAFE_GLOBALS: list[Any] = [
    *((getattr(_NUMPY_CORE.multiarray, fn), f"numpy.{core}.multiarray.{fn}")
      for core in ("core", "_core") for fn in ("_reconstruct", "scalar")),
    np.ndarray,
    np.dtype,
    *(getattr(np.dtypes, n) for n in dir(getattr(np, "dtypes", None)) if n.endswith("DType")),
]

_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


class CheckpointError(UserError, ValueError):
    """A checkpoint file is missing, unreadable or refused; the message names the file and what to do."""


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint", allow_numpy: bool = False) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, failures as one :class:`CheckpointError`.

    ``allow_numpy`` also admits numpy arrays, dtypes and scalars (rebuilt without running code).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): an interrupted write or copy; use another file")
    context = torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS) if allow_numpy else contextlib.nullcontext()
    try:
        with context:
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        name = _GLOBAL.search(str(err))
        if name:
            raise CheckpointError(
                f"{what} {path} holds a pickled {name.group(1)}, which could run code; refused (hotpose "
                "loads tensors and plain containers only: is this a hotpose or official HoT checkpoint?)"
            ) from None
        raise CheckpointError(f"{what} {path} is damaged or not a torch file ({_first_line(err)})") from None
    except Exception as err:  # a damaged or foreign file makes torch.load fail in many ways
        incomplete = "central directory" in str(err) or isinstance(err, EOFError)
        hint = ("truncated (an interrupted write or download) or not written by torch.save"
                if incomplete else _first_line(err))
        raise CheckpointError(f"{what} {path} is damaged or not a torch file ({hint})") from None


def _first_line(err: BaseException) -> str:
    """The line of torch's message that says what failed (never its advice to drop weights_only)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    cause = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("WeightsUnpickler error")),
                 None)
    if cause is None:
        cause = next((line for line in lines if "weights_only" not in line), "")
    return f"{type(err).__name__}: {cause}"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO: atomic writes (:func:`atomic_torch_save`), weights-only reads.

    Lightning's own writer stages the file in the system temp folder and moves it, which on another
    filesystem becomes a copy that a full disk can cut short.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path: Any, map_location: Any | None = None, weights_only: bool | None = None) -> Any:
        # weights_only=False from a caller is overridden on purpose: hotpose checkpoints never need it
        return load_torch_file(path)
