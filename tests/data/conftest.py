"""Fixtures of the data tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_fixtures import write_2d, write_3d


@pytest.fixture
def mini_like(tmp_path: Path):
    """A writer ``(positions_3d, positions_2d) -> root`` of data_3d_mini.npz and data_2d_mini_gt.npz."""

    def write(positions_3d: object, positions_2d: object, num_joints: int = 17) -> Path:
        write_3d(tmp_path / "data_3d_mini.npz", positions_3d)
        write_2d(tmp_path / "data_2d_mini_gt.npz", positions_2d, num_joints)
        return tmp_path

    return write
