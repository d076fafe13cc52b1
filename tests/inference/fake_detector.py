"""A stand-in detector for the worker protocol tests: finds the brightest pixel and builds a BlazePose
person around it; nobody on dark frames. ``scores`` carry its call count, so a test can tell that one
detector instance (one process) served every frame."""

from __future__ import annotations

import numpy as np

from hotpose.inference.detectors import Detection


def person_at(x: float, y: float) -> np.ndarray:
    """33 BlazePose landmarks ``(33, 2)``: a fixed figure offset to ``(x, y)``."""
    rng = np.random.default_rng(7)
    return (rng.uniform(-20, 20, (33, 2)) + [x, y]).astype(np.float32)


class FakeDetector:
    layout = "blazepose"

    def __init__(self, fail_on: float = -1.0) -> None:
        self.calls = 0
        self.fail_on = int(fail_on)

    def __call__(self, rgb: np.ndarray) -> Detection | None:
        self.calls += 1
        if self.calls - 1 == self.fail_on:
            raise RuntimeError("fake failure")
        gray = rgb.sum(axis=2)
        if gray.max() < 100:
            return None
        y, x = np.unravel_index(int(np.argmax(gray)), gray.shape)
        return Detection(person_at(float(x), float(y)), np.full(33, self.calls / 1000.0, dtype=np.float32))

    def close(self) -> None:
        pass
