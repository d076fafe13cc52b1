"""Window index tables over a set of sequences, and the one vectorised gather that turns rows into a batch.

A table row is ``(sequence id, start)`` (plus a flip flag column when augmenting): the window covers
frames ``start .. start + frames - 1`` of that sequence; frames outside ``[0, T)`` are edge-replicated
(the index is clamped) and marked invalid. All sequences are concatenated into one array, so a batch is a
single fancy-index with ``offset[seq] + clamp(start + arange(frames), 0, T - 1)``. No per-window copies
are kept and there are no per-window Python loops.

Two layouts, those of the official code's two chunked generators:

- ``seq2seq``: ``n = max(1, ceil((T - frames) / stride) + 1)`` windows per sequence with starts
  ``k * stride - offset``, where ``offset = ((n - 1) * stride + frames - T) // 2`` splits the overhang
  between both ends (the left end gets the floor half). With ``stride == frames`` the windows tile the
  sequence and every real frame is covered exactly once by a valid frame.
- ``seq2frame``: one window centred on every frame, ``start = t - (frames - 1) // 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Column layout of a window table.
SEQ, START, FLIP = 0, 1, 2


def _check_lengths(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got shape {lengths.shape}")
    if (lengths < 1).any():
        short = lengths[lengths < 1].tolist()
        raise ValueError(f"every sequence needs at least one frame, got lengths {short}")
    return lengths


def _rows(lengths: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(sequence id, rank within its sequence)`` for ``counts[s]`` rows per sequence, without a loop."""
    seq = np.repeat(np.arange(len(lengths), dtype=np.int64), counts)
    first_row = np.cumsum(counts) - counts
    rank = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first_row, counts)
    return seq, rank


def seq2seq_table(lengths: Sequence[int] | np.ndarray, frames: int, stride: int | None = None) -> np.ndarray:
    """Window table ``(n, 2)`` int64 of ``(sequence id, start)`` tiling each sequence with ``stride``.

    ``stride`` defaults to ``frames`` (non-overlapping windows, the evaluation layout).
    """
    lengths = _check_lengths(lengths)
    stride = frames if stride is None else stride
    if frames < 1 or stride < 1:
        raise ValueError(f"frames and stride must be >= 1, got frames={frames}, stride={stride}")
    # ceil((T - frames) / stride + 1) in integers; a sequence shorter than a window still gets one.
    counts = np.maximum(-((frames - lengths) // stride) + 1, 1)
    offset = ((counts - 1) * stride + frames - lengths) // 2
    seq, rank = _rows(lengths, counts)
    return np.stack([seq, rank * stride - offset[seq]], axis=1)


def seq2frame_table(lengths: Sequence[int] | np.ndarray, frames: int, stride: int = 1) -> np.ndarray:
    """Window table ``(n, 2)`` int64: a window centred on every ``stride``-th frame of every sequence."""
    lengths = _check_lengths(lengths)
    if frames < 1 or stride < 1:
        raise ValueError(f"frames and stride must be >= 1, got frames={frames}, stride={stride}")
    counts = -(-lengths // stride)
    seq, rank = _rows(lengths, counts)
    return np.stack([seq, rank * stride - (frames - 1) // 2], axis=1)


def add_flip_column(table: np.ndarray, flip: bool) -> np.ndarray:
    """``(n, 2)`` → ``(n, 3)``. With ``flip`` the table is doubled: every window unflipped, then every window
    flipped (the official code's deterministic doubling); without it the flip column is all 0."""
    unflipped = np.concatenate([table, np.zeros((len(table), 1), dtype=np.int64)], axis=1)
    if not flip:
        return unflipped
    flipped = unflipped.copy()
    flipped[:, FLIP] = 1
    return np.concatenate([unflipped, flipped], axis=0)


def offsets_of(lengths: Sequence[int] | np.ndarray) -> np.ndarray:
    """Start of each sequence in the concatenated frame array: ``[0, T0, T0 + T1, ...]``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.cumsum(lengths) - lengths


def window_frames(
    rows: np.ndarray, lengths: np.ndarray, frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Window frame numbers ``(b, f)`` int64, clamped to ``[0, T)`` (edge replication); valid mask ``(b, f)``.

    ``rows`` are table rows ``(b, >= 2)``; ``lengths`` the length of every sequence.
    """
    raw = rows[:, START, None] + np.arange(frames, dtype=np.int64)
    last = lengths[rows[:, SEQ]][:, None] - 1
    valid = (raw >= 0) & (raw <= last)
    # maximum/minimum in place: np.clip with array bounds is several times slower on small tables.
    np.maximum(raw, 0, out=raw)
    np.minimum(raw, last, out=raw)
    return raw, valid


def gather(arrays: Sequence[np.ndarray], global_index: np.ndarray) -> list[np.ndarray]:
    """``array[global_index]`` for each concatenated frame array ``(n_frames, ...)``; one ``np.take`` each."""
    return [np.take(a, global_index, axis=0) for a in arrays]
