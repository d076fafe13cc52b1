"""``MPIINF3DHPDataModule``: MPI-INF-3DHP windows whose ``valid`` mask also honours the file's ``valid`` flags.

Same batches, windows and options as :class:`~hotpose.data.datamodule.PoseDataModule` (docs/design.md), with
two differences on the evaluation splits (the test sequences TS1-TS6):

- a frame the file marks invalid is still an input of every window around it but is never scored: the batch's
  ``valid`` is False there, as on edge padding;
- windows with no frame left to score are dropped from the table (in seq2frame, every window whose centre
  frame is invalid), which leaves the result unchanged and skips ~90% of the test frames' windows.

Training uses every frame of S1-S8 (all are valid) and the file's ground-truth 2D, as P-STMO and MotionAGFormer
do; testing uses the test file's 2D.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hotpose.data.datamodule import PoseDataModule, SplitArrays, WindowDataset, _subset_and_downsample
from hotpose.data.mpi_inf_3dhp import (
    SCENES,
    TEST_FILE,
    TEST_SEQUENCES,
    TRAIN_FILE,
    TRAIN_SUBJECTS,
    load_test_sequences,
    load_train_sequences,
)
from hotpose.data.windows import window_frames


class ScoredWindowDataset(WindowDataset):
    """A :class:`WindowDataset` whose batch ``valid`` is also False on frames with ``scored[frame]`` False.

    ``scored`` is one bool per frame of the split's concatenated frame array.
    """

    def __init__(self, split: SplitArrays, table: np.ndarray, frames: int, scored: np.ndarray) -> None:
        super().__init__(split, table, frames)
        if scored.shape != (len(split.pose_3d),):
            raise ValueError(f"scored must have one flag per frame ({len(split.pose_3d)}), got {scored.shape}")
        self.scored = scored.astype(bool, copy=False)

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        batch = super().__getitems__(indices)
        first = self.split.offsets[batch["seq_index"].numpy()]
        flags = self.scored[first[:, None] + batch["frame_index"].numpy()]
        batch["valid"] = batch["valid"] & torch.from_numpy(flags)
        return batch


class MPIINF3DHPDataModule(PoseDataModule):
    """Train / val / test loaders over ``data_train_3dhp.npz`` and ``data_test_3dhp.npz`` in ``root``.

    Args:
        root: the folder with both files.
        train_subjects: training subjects (S1-S8).
        train_cameras: camera numbers to train on; ``None`` = every camera in the file (P-STMO's file: 0-2, 4-8).
        test_sequences: test sequences (TS1-TS6).
        val_sequences: validation sequences; ``None`` = the test sequences (as the reference code, which selects
            its checkpoint on the test set).
        image_sizes: ``{sequence: [width, height]}`` for test sequences; ``None`` = the published sizes.
        Other arguments: as :class:`PoseDataModule`.
    """

    def __init__(
        self,
        root: str | Path,
        train_subjects: Sequence[str] = TRAIN_SUBJECTS,
        train_cameras: Sequence[int] | None = None,
        test_sequences: Sequence[str] = TEST_SEQUENCES,
        val_sequences: Sequence[str] | None = None,
        image_sizes: Mapping[str, Sequence[int]] | None = None,
        frames: int = 81,
        pipeline: str = "seq2seq",
        train_stride: int | None = None,
        batch_size: int = 4,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        flip_augment: bool = True,
        downsample: int = 1,
        subset: float = 1.0,
        pin_memory: bool = False,
    ) -> None:
        if root is None:
            raise ValueError("MPI-INF-3DHP needs data.root=DIR (the folder with data_train_3dhp.npz and "
                             "data_test_3dhp.npz)")
        super().__init__(
            root=root, dataset="mpi_inf_3dhp", keypoints="gt", train_subjects=train_subjects,
            val_subjects=val_sequences, test_subjects=test_sequences, frames=frames, pipeline=pipeline,
            train_stride=train_stride, batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers, flip_augment=flip_augment, downsample=downsample, subset=subset,
            pin_memory=pin_memory,
        )
        self.train_cameras = None if train_cameras is None else [int(c) for c in train_cameras]
        self.image_sizes = None if image_sizes is None else {str(k): list(v) for k, v in image_sizes.items()}
        self._scored: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        """Read the files once; build the splits' arrays, scored-frame flags and window tables.

        Testing alone (``stage="test"``, e.g. ``hotpose.eval``) reads only the test file.
        """
        if "test" not in self._splits:
            self._setup_evaluation()
        if stage in (None, "fit", "train") and "train" not in self._splits:
            train = load_train_sequences(self.root / TRAIN_FILE, self.subjects["train"], self.train_cameras)
            if self.subset < 1.0 or self.downsample > 1:
                train = [_subset_and_downsample(r, self.subset, self.downsample) for r in train]
            self._splits["train"] = SplitArrays.build(train)
            self._scored["train"] = np.ones(len(self._splits["train"].pose_3d), dtype=bool)
            self._datasets["train"] = ScoredWindowDataset(self._splits["train"], self.window_table("train"),
                                                          self.frames, self._scored["train"])

    def _setup_evaluation(self) -> None:
        wanted = list(dict.fromkeys([*self.subjects["val"], *self.subjects["test"]]))
        loaded = {t.record.subject: t for t in load_test_sequences(self.root / TEST_FILE, wanted, self.image_sizes)}
        for split in ("val", "test"):
            names = self.subjects[split]
            if split == "test" and names == self.subjects["val"]:  # the usual case: share the arrays
                self._splits["test"], self._scored["test"] = self._splits["val"], self._scored["val"]
                continue
            self._splits[split] = SplitArrays.build([loaded[n].record for n in names])
            self._scored[split] = np.concatenate([loaded[n].valid for n in names])
        for split in ("val", "test"):
            self._datasets[split] = ScoredWindowDataset(self._splits[split], self.window_table(split),
                                                        self.frames, self._scored[split])

    def _split(self, split: str) -> SplitArrays:
        if split == "train" and self._splits and "train" not in self._splits:
            raise RuntimeError("the training split is read by setup('fit'); this module was set up for testing")
        return super()._split(split)

    def window_table(self, split: str) -> np.ndarray:
        """The base table without the windows that have no frame to score."""
        table = super().window_table(split)
        if split == "train":
            return table
        s = self._split(split)
        local, real = window_frames(table, s.lengths, self.frames)
        scored = real & self._scored[split][s.offsets[table[:, 0]][:, None] + local]
        if self.pipeline == "seq2frame":
            keep = scored[:, (self.frames - 1) // 2]
        else:
            keep = scored.any(axis=1)
        return table[keep]

    def num_scored_frames(self, split: str) -> int:
        """Frames the split's metrics score: the valid frames of its sequences."""
        self._split(split)
        return int(self._scored[split].sum())

    def benchmark_metric(self) -> Any:
        """A fresh PCK / AUC / MPJPE metric over this module's evaluation sequences (``HotposeModule`` asks)."""
        from hotpose.metrics_3dhp import MPIINF3DHPMetric

        names = list(dict.fromkeys([*self.subjects["val"], *self.subjects["test"]]))
        return MPIINF3DHPMetric(names, scenes={k: v for k, v in SCENES.items() if set(v) & set(names)})
