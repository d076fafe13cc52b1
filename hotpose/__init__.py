"""hotpose: Hourglass Tokenizer (HoT) for video 3D human pose estimation, as a Hydra + Lightning framework.

The Python API (imported on first use, so that the numpy-only modules stay importable without torch)::

    from hotpose import Lifter, PoseStream, load_model
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

#: public name → the module that defines it
_API = {
    "Lifter": "hotpose.inference.lifter",
    "load_model": "hotpose.inference.lifter",
    "PoseStream": "hotpose.inference.stream",
}
__all__ = ["Lifter", "PoseStream", "load_model", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'hotpose' has no attribute {name!r}")
