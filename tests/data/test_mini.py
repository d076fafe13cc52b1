"""The embedded mini dataset is intact: checksums listed in its README, subjects, frame counts."""

from __future__ import annotations

import hashlib
import re

from hotpose.data.sources import MINI_ROOT, load_positions_2d, load_positions_3d

DATA_FILES = ("data_3d_mini.npz", "data_2d_mini_gt.npz", "data_2d_mini_det.npz", "cameras_mini.json")


def test_files_match_the_readme_checksums() -> None:
    readme = (MINI_ROOT / "README.md").read_text()
    listed = {name: digest for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M)}
    for name in DATA_FILES:
        assert hashlib.sha256((MINI_ROOT / name).read_bytes()).hexdigest() == listed[name], name


def test_subjects_and_frames() -> None:
    poses_3d = load_positions_3d(MINI_ROOT / "data_3d_mini.npz", "mini")
    assert list(poses_3d) == ["S1", "S5", "S6", "S7", "S8", "S9", "S11"]
    frames = {s: sum(a.shape[0] for a in actions.values()) for s, actions in poses_3d.items()}
    assert sum(frames[s] for s in ("S1", "S5", "S6", "S7", "S8")) == 5773
    assert frames["S9"] + frames["S11"] == 1614
    for keypoints in ("gt", "det"):
        poses_2d = load_positions_2d(MINI_ROOT / f"data_2d_mini_{keypoints}.npz")
        for subject, actions in poses_3d.items():
            assert poses_2d[subject].keys() == actions.keys()
            for action, world in actions.items():
                assert [v.shape[0] for v in poses_2d[subject][action]] == [world.shape[0]] * 4
