"""``python -m hotpose.bench data``: windows per second served by ``PoseDataModule`` vs a per-window loop.

Both sides serve the same training windows (embedded mini data, flip augmentation on, same shuffled
order): the DataModule through its train DataLoader (``num_workers=0``, one vectorised gather per batch),
the naive side as a per-sample Dataset would (per window: slice, ``np.pad(mode="edge")`` at the sequence
ends, flip when flagged; then ``np.stack`` the batch). A batch of both is compared for equality first.
Each side is timed in alternating rounds and its best round is reported (the machine may be shared).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hotpose.data.datamodule import PoseDataModule, WindowDataset
from hotpose.data.transforms import flip_pose
from hotpose.data.windows import FLIP, SEQ, START


def naive_window(dataset: WindowDataset, row: np.ndarray) -> tuple[np.ndarray, ...]:
    """One window the per-sample way: ``(input_2d, target_3d, valid, frame_index)``."""
    s, frames = dataset.split, dataset.frames
    seq, start = int(row[SEQ]), int(row[START])
    length, offset = int(s.lengths[seq]), int(s.offsets[seq])
    lo, hi = max(start, 0), min(start + frames, length)
    left, right = lo - start, start + frames - hi
    x2 = s.pose_2d[offset + lo : offset + hi]
    x3 = s.pose_3d[offset + lo : offset + hi]
    if left or right:
        x2 = np.pad(x2, ((left, right), (0, 0), (0, 0)), mode="edge")
        x3 = np.pad(x3, ((left, right), (0, 0), (0, 0)), mode="edge")
    if row[FLIP]:
        x2, x3 = flip_pose(x2), flip_pose(x3)
    valid = np.zeros(frames, dtype=bool)
    valid[left : frames - right] = True
    frame_index = np.clip(np.arange(start, start + frames), 0, length - 1)
    return x2, x3, valid, frame_index


def naive_batch(dataset: WindowDataset, indices: np.ndarray) -> dict[str, object]:
    windows = [naive_window(dataset, dataset.table[i]) for i in indices]
    seq = dataset.table[indices, SEQ]
    s = dataset.split
    return {
        "input_2d": torch.from_numpy(np.stack([w[0] for w in windows])),
        "target_3d": torch.from_numpy(np.stack([w[1] for w in windows])),
        "valid": torch.from_numpy(np.stack([w[2] for w in windows])),
        "frame_index": torch.from_numpy(np.stack([w[3] for w in windows])),
        "seq_index": torch.from_numpy(seq),
        "camera": torch.from_numpy(s.camera[seq]),
        "subject": s.subject[seq].tolist(),
        "action": s.action[seq].tolist(),
        "sequence": s.sequence[seq].tolist(),
    }


class PerWindowDataset(Dataset):
    """The usual per-sample Dataset over the same table: ``__getitem__`` builds one window
    (:func:`naive_window`), PyTorch's default collate stacks the batch."""

    def __init__(self, dataset: WindowDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, object]:
        x2, x3, valid, frame_index = naive_window(self.dataset, self.dataset.table[index])
        s, seq = self.dataset.split, int(self.dataset.table[index, SEQ])
        return {"input_2d": x2, "target_3d": x3, "valid": valid, "frame_index": frame_index, "seq_index": seq,
                "camera": int(s.camera[seq]), "subject": str(s.subject[seq]), "action": str(s.action[seq]),
                "sequence": str(s.sequence[seq])}


def _timed(batches: Iterator[int], seconds: float) -> tuple[float, int]:
    """``(windows per second, windows)`` over ``batches`` (an iterator of batch sizes) for ~``seconds``."""
    windows, start = 0, time.perf_counter()
    for size in batches:
        windows += size
        if time.perf_counter() - start >= seconds:
            break
    return windows / (time.perf_counter() - start), windows


def _forever_loader(dm: PoseDataModule) -> Iterator[int]:
    while True:
        for batch in dm.train_dataloader():
            yield len(batch["seq_index"])


def _forever_naive(dataset: WindowDataset, batch_size: int, seed: int) -> Iterator[int]:
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(dataset))
        for i in range(0, len(order), batch_size):
            batch = naive_batch(dataset, order[i : i + batch_size])
            yield len(batch["seq_index"])


def _forever_per_window_loader(dataset: WindowDataset, batch_size: int) -> Iterator[int]:
    loader = DataLoader(PerWindowDataset(dataset), batch_size=batch_size, shuffle=True, num_workers=0)
    while True:
        for batch in loader:
            yield len(batch["seq_index"])


def _same_batch(dataset: WindowDataset, batch_size: int) -> bool:
    """The vectorised and the naive gather agree on the same windows (flipped ones included)."""
    indices = np.r_[np.arange(batch_size // 2), len(dataset) - 1 - np.arange(batch_size - batch_size // 2)]
    fast, slow = dataset.__getitems__(indices.tolist()), naive_batch(dataset, indices)
    same = [torch.equal(v, slow[k]) if isinstance(v, torch.Tensor) else v == slow[k] for k, v in fast.items()]
    return all(same) and fast.keys() == slow.keys()


def run(pipeline: str, frames: int, batch_size: int, seconds: float, rounds: int = 3) -> dict[str, float]:
    dm = PoseDataModule(frames=frames, pipeline=pipeline, batch_size=batch_size, num_workers=0,
                        flip_augment=True)
    dm.setup("fit")
    dataset = dm.dataset_for("train")
    if not _same_batch(dataset, batch_size):
        raise RuntimeError(f"{pipeline}: the vectorised batch differs from the per-window batch")
    # The machine may be shared: alternate short rounds of both and keep each side's best round.
    sides = {"fast": _forever_loader(dm), "slow": _forever_naive(dataset, batch_size, seed=0),
             "per_window": _forever_per_window_loader(dataset, batch_size)}
    best = dict.fromkeys(sides, 0.0)
    for _ in range(rounds):
        for name, batches in sides.items():
            best[name] = max(best[name], _timed(batches, seconds / rounds)[0])
    return {"windows": len(dataset), **best}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hotpose.bench data", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=243, help="window length (default 243)")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per batch (default 64)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per side and pipeline (default 3)")
    parser.add_argument("--pipeline", choices=["seq2seq", "seq2frame", "both"], default="both")
    args = parser.parse_args(argv)
    pipelines = ["seq2seq", "seq2frame"] if args.pipeline == "both" else [args.pipeline]
    torch.set_num_threads(1)
    print(f"embedded mini data, train split, flip augmentation on, {args.frames}-frame windows, "
          f"batch {args.batch_size}, num_workers 0, best of 3 rounds in ~{args.seconds:g} s per side")
    print("naive loop: per window slice + edge pad + flip, np.stack the batch (no DataLoader);"
          " per-window DataLoader: the same window in a per-sample Dataset, default collate")
    header = ("pipeline", "table rows", "DataModule win/s", "naive loop win/s", "speed-up",
              "per-window DataLoader win/s", "speed-up")
    print(f"{header[0]:<10} {header[1]:>10} {header[2]:>17} {header[3]:>17} {header[4]:>9} {header[5]:>28} "
          f"{header[6]:>9}")
    for pipeline in pipelines:
        r = run(pipeline, args.frames, args.batch_size, args.seconds)
        print(f"{pipeline:<10} {r['windows']:>10} {r['fast']:>17,.0f} {r['slow']:>17,.0f} "
              f"{r['fast'] / r['slow']:>8.1f}x {r['per_window']:>28,.0f} {r['fast'] / r['per_window']:>8.1f}x")
    return 0
