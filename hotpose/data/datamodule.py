"""``PoseDataModule``: Human3.6M-style sequences → window tables → batches gathered in one vectorised step.

Batches are dicts (see docs/design.md): ``input_2d (b, f, 17, 2)``, ``target_3d (b, f, 17, 3)``,
``valid (b, f)``, ``frame_index (b, f)``, ``seq_index (b,)``, ``camera (b,)``, ``subject``, ``action``
(group) and ``sequence`` (full action name) lists.

Design choices:

- The npz files are read once in :meth:`PoseDataModule.setup`; every split's sequences are concatenated
  into one frame array per modality and the records keep views into it (no second copy).
- :class:`WindowDataset` implements ``__getitems__`` so the DataLoader hands it a whole list of indices;
  the batch is one ``np.take`` per modality (see :mod:`hotpose.data.windows`), and the DataLoader's
  ``collate_fn`` passes it through unchanged.
- ``flip_augment`` doubles the training table deterministically (every window once unflipped and once
  mirrored), as the official code does; the shuffle of the DataLoader mixes them. The training dataset
  keeps a mirrored copy of its frames (2x the training split's memory: ~0.5 GB more for Human3.6M) so
  that flipped windows cost nothing extra.
- ``downsample`` and ``subset`` apply to the training split only (as VideoPose3D does): ``subset`` keeps a
  contiguous fraction of every training sequence starting at a position derived from the sequence name
  (deterministic), then ``downsample`` keeps every n-th frame of it.
- ``official_layout`` (the paper protocol, set by ``hotpose.eval``): each subject's sequences in the 2D
  file's action order, as the official test iterates them, and the official rounding of the 2D
  normalisation (:func:`hotpose.data.camera.normalize_screen_official`).
- Evaluation tables are never shuffled, never flipped; seq2seq evaluates with ``stride == frames``
  (non-overlapping windows), seq2frame with one window per frame.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from hotpose.data.resumable import ResumableLoader, run_seed
from hotpose.data.sources import MINI_ROOT, DataError, SequenceRecord, load_cameras, load_sequences
from hotpose.data.transforms import flip_pose
from hotpose.data.windows import (
    FLIP,
    SEQ,
    add_flip_column,
    gather,
    offsets_of,
    seq2frame_table,
    seq2seq_table,
    window_frames,
)

PIPELINES = ("seq2seq", "seq2frame")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitArrays:
    """All sequences of one split concatenated over frames: ``pose_2d (n, 17, 2)``, ``pose_3d (n, 17, 3)``."""

    records: list[SequenceRecord]  # their pose arrays are views into pose_2d / pose_3d
    pose_2d: np.ndarray
    pose_3d: np.ndarray
    lengths: np.ndarray  # (s,) int64
    offsets: np.ndarray  # (s,) int64
    camera: np.ndarray  # (s,) int64
    subject: np.ndarray  # (s,) str
    action: np.ndarray  # (s,) str, the action group
    sequence: np.ndarray  # (s,) str, the full action name

    @classmethod
    def build(cls, records: Sequence[SequenceRecord]) -> SplitArrays:
        if not records:
            raise DataError("a split has no sequences (check the subjects and the action filter)")
        lengths = np.array([r.num_frames for r in records], dtype=np.int64)
        offsets = offsets_of(lengths)
        pose_2d = np.concatenate([r.pose_2d for r in records]).astype(np.float32, copy=False)
        pose_3d = np.concatenate([r.pose_3d for r in records]).astype(np.float32, copy=False)
        views = [
            dataclasses.replace(r, pose_2d=pose_2d[o : o + n], pose_3d=pose_3d[o : o + n])
            for r, o, n in zip(records, offsets, lengths)
        ]
        return cls(
            records=views, pose_2d=pose_2d, pose_3d=pose_3d, lengths=lengths, offsets=offsets,
            camera=np.array([r.camera for r in records], dtype=np.int64),
            subject=np.array([r.subject for r in records]),
            action=np.array([r.action_group for r in records]),
            sequence=np.array([r.action for r in records]),
        )


class WindowDataset(Dataset):
    """Windows of a :class:`SplitArrays` listed by a table ``(n, 3)`` of ``(sequence id, start, flip)``."""

    def __init__(self, split: SplitArrays, table: np.ndarray, frames: int) -> None:
        if table.ndim != 2 or table.shape[1] != 3:
            raise ValueError(f"window table must be (n, 3) = (sequence, start, flip), got {table.shape}")
        self.split = split
        self.table = np.ascontiguousarray(table, dtype=np.int64)
        self.frames = frames
        self._pose_2d, self._pose_3d = split.pose_2d, split.pose_3d
        if self.table[:, FLIP].any():
            # Mirrored copies of all frames behind the originals: a flipped window is then the same single
            # gather shifted by the frame count. Flipping gathered batches instead costs ~4x the gather.
            self._pose_2d = np.concatenate([split.pose_2d, flip_pose(split.pose_2d)])
            self._pose_3d = np.concatenate([split.pose_3d, flip_pose(split.pose_3d)])

    def __len__(self) -> int:
        return len(self.table)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        """The batch of windows ``indices``, gathered at once."""
        rows = self.table[np.asarray(indices, dtype=np.int64)]
        s = self.split
        seq = rows[:, SEQ]
        local, valid = window_frames(rows, s.lengths, self.frames)
        first = s.offsets[seq] + rows[:, FLIP] * len(s.pose_2d)
        input_2d, target_3d = gather([self._pose_2d, self._pose_3d], first[:, None] + local)
        return {
            "input_2d": torch.from_numpy(input_2d),
            "target_3d": torch.from_numpy(target_3d),
            "valid": torch.from_numpy(valid),
            "frame_index": torch.from_numpy(local),
            "seq_index": torch.from_numpy(seq.copy()),
            "camera": torch.from_numpy(s.camera[seq]),
            "subject": s.subject[seq].tolist(),
            "action": s.action[seq].tolist(),
            "sequence": s.sequence[seq].tolist(),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One window, without the batch dimension."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


def keep_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """``collate_fn`` for datasets whose ``__getitems__`` already returns a batch."""
    return batch


def _subset_and_downsample(record: SequenceRecord, subset: float, downsample: int) -> SequenceRecord:
    frames = record.num_frames
    keep = max(1, int(round(frames * subset)))
    start = 0
    if keep < frames:
        # Seeded by the sequence name so that the same part is kept on every run and machine.
        key = f"{record.subject}/{record.action}/{record.camera}".encode()
        start = int(np.random.default_rng(zlib.crc32(key)).integers(0, frames - keep + 1))
    part = slice(start, start + keep, downsample)
    return dataclasses.replace(record, pose_2d=record.pose_2d[part], pose_3d=record.pose_3d[part])


class PoseDataModule(pl.LightningDataModule):
    """Train / val / test window loaders over VideoPose3D-format data (embedded ``mini`` or ``h36m``)."""

    def __init__(
        self,
        root: str | Path | None = None,
        dataset: str = "mini",
        keypoints: str = "det",
        cameras_file: str | Path | None = None,
        train_subjects: Sequence[str] = ("S1", "S5", "S6", "S7", "S8"),
        val_subjects: Sequence[str] | None = None,
        test_subjects: Sequence[str] = ("S9", "S11"),
        actions: Sequence[str] | None = None,
        frames: int = 243,
        pipeline: str = "seq2seq",
        train_stride: int | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        flip_augment: bool = True,
        downsample: int = 1,
        subset: float = 1.0,
        pin_memory: bool = False,
        official_layout: bool = False,
    ) -> None:
        super().__init__()
        if pipeline not in PIPELINES:
            raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
        positive = {"frames": frames, "batch_size": batch_size, "eval_batch_size": eval_batch_size,
                    "downsample": downsample}
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if train_stride is not None and int(train_stride) < 1:
            raise ValueError(f"train_stride must be >= 1 or null, got {train_stride}")
        if not 0.0 < float(subset) <= 1.0:
            raise ValueError(f"subset must be in (0, 1], got {subset}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if root is None:
            if dataset != "mini":
                raise ValueError(f"dataset {dataset!r} needs data.root=DIR (the folder with its npz files)")
            root = MINI_ROOT
        self.root = Path(root)
        self.dataset = dataset
        self.keypoints = keypoints
        self.cameras_file = cameras_file
        self.subjects = {
            "train": [str(s) for s in train_subjects],
            "val": [str(s) for s in (test_subjects if val_subjects is None else val_subjects)],
            "test": [str(s) for s in test_subjects],
        }
        self.actions = None if actions is None else [str(a) for a in actions]
        self.frames = int(frames)
        self.pipeline = pipeline
        default_stride = self.frames if pipeline == "seq2seq" else 1
        self.train_stride = default_stride if train_stride is None else int(train_stride)
        self.eval_stride = default_stride
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.num_workers = int(num_workers)
        self.flip_augment = bool(flip_augment)
        self.downsample = int(downsample)
        self.subset = float(subset)
        self.pin_memory = bool(pin_memory)
        self.official_layout = bool(official_layout)
        self._splits: dict[str, SplitArrays] = {}
        self._datasets: dict[str, WindowDataset] = {}

    # ------------------------------------------------------------------------------------------ data

    def setup(self, stage: str | None = None) -> None:
        """Read the files once and build every split's arrays and window tables (idempotent)."""
        if self._splits:
            return
        wanted = list(dict.fromkeys(s for split in SPLITS for s in self.subjects[split]))
        records = load_sequences(self.root, self.dataset, self.keypoints, wanted, self.actions,
                                 load_cameras(self.cameras_file), official_layout=self.official_layout)
        by_subject: dict[str, list[SequenceRecord]] = {}
        for record in records:
            by_subject.setdefault(record.subject, []).append(record)
        built: dict[tuple[str, ...], SplitArrays] = {}
        for split in SPLITS:
            chosen = [r for s in self.subjects[split] for r in by_subject.get(s, [])]
            if split == "train" and (self.subset < 1.0 or self.downsample > 1):
                chosen = [_subset_and_downsample(r, self.subset, self.downsample) for r in chosen]
                self._splits[split] = SplitArrays.build(chosen)
                continue
            key = tuple(self.subjects[split])
            if key not in built:  # val and test usually share their subjects: share the arrays too
                built[key] = SplitArrays.build(chosen)
            self._splits[split] = built[key]
        for split in SPLITS:
            self._datasets[split] = WindowDataset(self._splits[split], self.window_table(split), self.frames)

    def window_table(self, split: str) -> np.ndarray:
        """The ``(n, 3)`` table ``(sequence id, start, flip)`` of a split."""
        lengths = self._split(split).lengths
        stride = self.train_stride if split == "train" else self.eval_stride
        build = seq2seq_table if self.pipeline == "seq2seq" else seq2frame_table
        table = build(lengths, self.frames, stride)
        return add_flip_column(table, flip=self.flip_augment and split == "train")

    def _split(self, split: str) -> SplitArrays:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if not self._splits:
            raise RuntimeError("PoseDataModule.setup() has not been called")
        return self._splits[split]

    def sequences(self, split: str) -> list[SequenceRecord]:
        """The split's sequence table; a batch's ``seq_index`` indexes it."""
        return self._split(split).records

    def num_frames(self, split: str) -> int:
        """Real (not padded) frames in the split, over all cameras."""
        return int(self._split(split).lengths.sum())

    def dataset_for(self, split: str) -> WindowDataset:
        self._split(split)
        return self._datasets[split]

    # ------------------------------------------------------------------------------------ loaders

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        options = dict(num_workers=self.num_workers, pin_memory=self.pin_memory,
                       persistent_workers=self.num_workers > 0, collate_fn=keep_batch)
        if train:  # order seeded per epoch, resumable mid-epoch: a resumed run repeats the uninterrupted one
            return ResumableLoader(self.dataset_for(split), self.batch_size, run_seed(),
                                   progress=self._fit_progress, **options)
        return DataLoader(self.dataset_for(split), batch_size=self.eval_batch_size, shuffle=False,
                          generator=torch.Generator().manual_seed(run_seed()), **options)

    def _fit_progress(self) -> tuple[int, int]:
        """(epoch, training batches done in it) of the restored fit loop."""
        loop = self.trainer.fit_loop
        return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.completed

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
