"""Shared fixtures: keep wandb offline-free and threads few, so tests are fast and hermetic."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
# One thread: tiny test models gain nothing from more, and CI shares 2 cores with the runner.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
