"""The random number generators' states in every checkpoint, restored when training resumes.

Dropout, drop path and TPC's official tie-break noise draw from the global torch RNG (numpy's and Python's
are saved too, for code that uses them). Lightning saves none of them, so a resumed run drew other
random numbers than the run it continues. The states are stored as tensors and plain lists, so the
checkpoint still loads with ``weights_only=True``. They are applied at ``on_train_start``, after
Lightning has rebuilt the model and the loaders (which draw no random numbers of their own here).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

KEY = "hotpose_rng_states"


def collect_states() -> dict[str, Any]:
    """torch (CPU and every CUDA device), numpy and Python RNG states as tensors and plain containers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def apply_states(states: dict[str, Any]) -> None:
    """Set the generators from :func:`collect_states`'s output."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RandomState(pl.Callback):
    """Save the RNG states with each checkpoint; on resume, restore them before the first step."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint[KEY] = collect_states()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(KEY)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is not None:
            apply_states(self._pending)
            self._pending = None
