"""PoseDataModule on the embedded data: batch contract, splits, flip doubling, subset/downsample, config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hotpose.data.datamodule import PoseDataModule
from hotpose.data.skeleton import JOINTS_LEFT, JOINTS_RIGHT
from hotpose.data.transforms import flip_pose
from hotpose.data.windows import seq2seq_table

FRAMES = 27
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


@pytest.fixture(scope="module")
def seq2seq() -> PoseDataModule:
    dm = PoseDataModule(frames=FRAMES, pipeline="seq2seq", batch_size=4, eval_batch_size=8)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def seq2frame() -> PoseDataModule:
    dm = PoseDataModule(frames=FRAMES, pipeline="seq2frame", batch_size=4, eval_batch_size=64,
                        flip_augment=False)
    dm.setup("fit")
    return dm


def check_batch(batch: dict, size: int) -> None:
    assert list(batch) == ["input_2d", "target_3d", "valid", "frame_index", "seq_index", "camera",
                           "subject", "action", "sequence"]
    expected = {
        "input_2d": ((size, FRAMES, 17, 2), torch.float32),
        "target_3d": ((size, FRAMES, 17, 3), torch.float32),
        "valid": ((size, FRAMES), torch.bool),
        "frame_index": ((size, FRAMES), torch.int64),
        "seq_index": ((size,), torch.int64),
        "camera": ((size,), torch.int64),
    }
    for key, (shape, dtype) in expected.items():
        assert tuple(batch[key].shape) == shape and batch[key].dtype == dtype, key
    for key in ("subject", "action", "sequence"):
        assert isinstance(batch[key], list) and len(batch[key]) == size and isinstance(batch[key][0], str)


def test_batches_have_the_documented_shapes_and_dtypes(seq2seq, seq2frame) -> None:
    check_batch(next(iter(seq2seq.train_dataloader())), 4)
    check_batch(next(iter(seq2seq.test_dataloader())), 8)
    check_batch(next(iter(seq2frame.val_dataloader())), 64)
    sample = seq2seq.dataset_for("test")[3]
    assert sample["input_2d"].shape == (FRAMES, 17, 2) and sample["seq_index"].shape == ()
    assert isinstance(sample["subject"], str)


def test_batch_content_matches_the_sequence_table(seq2seq) -> None:
    batch = next(iter(seq2seq.test_dataloader()))
    records = seq2seq.sequences("test")
    for b in range(len(batch["seq_index"])):
        record = records[int(batch["seq_index"][b])]
        frames = batch["frame_index"][b].numpy()
        np.testing.assert_array_equal(batch["input_2d"][b].numpy(), record.pose_2d[frames])
        np.testing.assert_array_equal(batch["target_3d"][b].numpy(), record.pose_3d[frames])
        assert batch["subject"][b] == record.subject and batch["sequence"][b] == record.action
        assert batch["action"][b] == record.action.split(" ")[0] and batch["camera"][b] == record.camera


def test_splits_and_sequence_tables(seq2seq) -> None:
    assert {r.subject for r in seq2seq.sequences("train")} == {"S1", "S5", "S6", "S7", "S8"}
    assert {r.subject for r in seq2seq.sequences("test")} == {"S9", "S11"}
    assert seq2seq.sequences("val") is seq2seq.sequences("test")  # val_subjects null → the test subjects
    assert seq2seq.num_frames("train") == 5773 * 4 and seq2seq.num_frames("test") == 1614 * 4


def test_eval_seq2seq_covers_each_real_frame_once_and_is_not_shuffled(seq2seq) -> None:
    batches = list(seq2seq.test_dataloader())
    again = list(seq2seq.test_dataloader())
    assert all(torch.equal(a["seq_index"], b["seq_index"]) for a, b in zip(batches, again))
    valid = torch.cat([b["valid"] for b in batches])
    assert int(valid.sum()) == seq2seq.num_frames("test")
    seq = torch.cat([b["seq_index"] for b in batches])
    frame = torch.cat([b["frame_index"] for b in batches])
    keys = (seq[:, None] * 100_000 + frame)[valid]
    assert len(torch.unique(keys)) == len(keys)
    assert (torch.diff(seq) >= 0).all()


def test_seq2frame_has_one_window_per_frame_centred(seq2frame) -> None:
    dataset = seq2frame.dataset_for("test")
    assert len(dataset) == seq2frame.num_frames("test")
    assert len(seq2frame.dataset_for("train")) == seq2frame.num_frames("train")  # train stride 1, no flip
    batch = dataset.__getitems__(list(range(70)))
    centre = (FRAMES - 1) // 2
    np.testing.assert_array_equal(batch["frame_index"][:, centre].numpy(), np.arange(70))
    assert batch["valid"][:, centre].all()
    assert not batch["valid"][0, :centre].any() and batch["valid"][0, centre:].all()


def test_flip_augment_doubles_the_training_table_with_mirrored_copies(seq2seq) -> None:
    dataset = seq2seq.dataset_for("train")
    half = len(dataset) // 2
    assert len(dataset) == 2 * len(seq2seq_table(dataset.split.lengths, FRAMES))
    assert (dataset.table[:half, 2] == 0).all() and (dataset.table[half:, 2] == 1).all()
    rows = [0, 5, half + 0, half + 5]
    batch = dataset.__getitems__(rows)
    torch.testing.assert_close(batch["input_2d"][2:], flip_pose(batch["input_2d"][:2]))
    torch.testing.assert_close(batch["target_3d"][2:], flip_pose(batch["target_3d"][:2]))
    assert torch.equal(batch["valid"][2:], batch["valid"][:2])


def test_flip_pose_is_an_involution_that_swaps_left_and_right() -> None:
    pose = torch.randn(2, 5, 17, 3)
    flipped = flip_pose(pose)
    torch.testing.assert_close(flip_pose(flipped), pose)
    torch.testing.assert_close(flipped[..., list(JOINTS_LEFT), 0], -pose[..., list(JOINTS_RIGHT), 0])
    torch.testing.assert_close(flipped[..., list(JOINTS_RIGHT), 1:], pose[..., list(JOINTS_LEFT), 1:])
    torch.testing.assert_close(flipped[..., [0, 7, 8, 9, 10], 0], -pose[..., [0, 7, 8, 9, 10], 0])


def test_subset_and_downsample_are_deterministic_and_train_only() -> None:
    kwargs = dict(frames=FRAMES, subset=0.5, downsample=2, flip_augment=False)
    a, b = PoseDataModule(**kwargs), PoseDataModule(**kwargs)
    a.setup(), b.setup()
    full = PoseDataModule(frames=FRAMES)
    full.setup()
    for ra, rb, rf in zip(a.sequences("train"), b.sequences("train"), full.sequences("train")):
        np.testing.assert_array_equal(ra.pose_2d, rb.pose_2d)
        keep = max(1, round(rf.num_frames * 0.5))
        assert ra.num_frames == -(-keep // 2)
        # the kept frames are every second frame of a contiguous part of the full sequence
        start = int(np.flatnonzero((rf.pose_2d == ra.pose_2d[0]).all(axis=(1, 2)))[0])
        np.testing.assert_array_equal(ra.pose_2d, rf.pose_2d[start : start + keep : 2])
    assert a.num_frames("test") == full.num_frames("test")


def test_action_filter_and_bad_arguments() -> None:
    dm = PoseDataModule(frames=FRAMES, actions=["Climb"])
    dm.setup()
    assert {r.action_group for r in dm.sequences("train") + dm.sequences("test")} == {"Climb"}
    with pytest.raises(ValueError, match="pipeline must be one of"):
        PoseDataModule(pipeline="seq2many")
    with pytest.raises(ValueError, match=r"needs data.root=DIR"):
        PoseDataModule(dataset="h36m", keypoints="cpn_ft_h36m_dbb")
    with pytest.raises(ValueError, match=r"subset must be in \(0, 1\]"):
        PoseDataModule(subset=0.0)
    with pytest.raises(RuntimeError, match="setup"):
        PoseDataModule().sequences("train")


def test_configs_instantiate() -> None:
    for name, dataset in (("mini", "mini"), ("h36m", "h36m")):
        cfg = OmegaConf.create({"backbone": {"frames": FRAMES},
                                "pipeline": {"name": "seq2frame", "train_stride": None},
                                "data": OmegaConf.load(CONFIGS / f"{name}.yaml")})
        if name == "h36m":
            assert OmegaConf.is_missing(cfg.data, "root")
            cfg.data.root = "/nonexistent"
        dm = instantiate(cfg.data)
        assert isinstance(dm, PoseDataModule) and dm.dataset == dataset
        assert dm.frames == FRAMES and dm.pipeline == "seq2frame" and dm.train_stride == 1
    assert dm.subjects["test"] == ["S9", "S11"] and dm.batch_size == 4 and dm.flip_augment
