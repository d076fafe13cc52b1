"""Window tables (seq2seq / seq2frame), clamped frame indices, valid masks and the vectorised gather."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hotpose.data.windows import (
    add_flip_column,
    gather,
    offsets_of,
    seq2frame_table,
    seq2seq_table,
    window_frames,
)


def reference_seq2seq_starts(length: int, frames: int, stride: int) -> list[int]:
    """The official generator's formula with floats and a loop (independent of the implementation)."""
    n = max(1, math.ceil((length - frames) / stride + 1))
    offset = ((n - 1) * stride + frames - length) // 2
    return [k * stride - offset for k in range(n)]


def reference_window(sequence: np.ndarray, start: int, frames: int) -> np.ndarray:
    """Slice + np.pad(mode="edge"), as a per-window dataset does."""
    lo, hi = max(start, 0), min(start + frames, len(sequence))
    return np.pad(sequence[lo:hi], ((lo - start, start + frames - hi), (0, 0)), mode="edge")


@pytest.mark.parametrize(
    ("length", "frames", "stride", "starts"),
    [
        (10, 27, 27, [-8]),  # short: one window, overhang 17 split 8 left / 9 right
        (27, 27, 27, [0]),  # exact
        (100, 27, 27, [-4, 23, 50, 77]),  # long: 4 windows, overhang 8 split 4 / 4
        (100, 27, 10, [-3, 7, 17, 27, 37, 47, 57, 67, 77]),  # training stride < frames
        (10, 27, 1, [-8]),  # short with stride 1 still one window
    ],
)
def test_seq2seq_hand_computed(length, frames, stride, starts) -> None:
    table = seq2seq_table([length], frames, stride)
    assert table.dtype == np.int64
    np.testing.assert_array_equal(table[:, 0], 0)
    np.testing.assert_array_equal(table[:, 1], starts)
    assert starts == reference_seq2seq_starts(length, frames, stride)


def test_seq2seq_matches_reference_on_many_lengths() -> None:
    lengths = np.arange(1, 300)
    for frames, stride in [(27, 27), (27, 5), (81, 81), (9, 4), (1, 1)]:
        table = seq2seq_table(lengths, frames, stride)
        expected = [(s, start) for s, n in enumerate(lengths)
                    for start in reference_seq2seq_starts(n, frames, stride)]
        np.testing.assert_array_equal(table, np.array(expected))


def test_seq2seq_eval_covers_every_real_frame_exactly_once() -> None:
    lengths = np.array([1, 5, 26, 27, 28, 53, 54, 55, 243, 1000])
    frames = 27
    table = seq2seq_table(lengths, frames)  # stride defaults to frames
    local, valid = window_frames(table, lengths, frames)
    counts = np.zeros(lengths.sum(), dtype=int)
    np.add.at(counts, offsets_of(lengths)[table[:, 0]][:, None].repeat(frames, 1)[valid] + local[valid], 1)
    np.testing.assert_array_equal(counts, 1)


def test_seq2frame_windows_are_centred_on_every_frame() -> None:
    lengths = np.array([3, 30])
    frames = 9
    table = seq2frame_table(lengths, frames)
    assert len(table) == 33
    local, valid = window_frames(table, lengths, frames)
    centre = (frames - 1) // 2
    expected_centre = np.r_[np.arange(3), np.arange(30)]
    np.testing.assert_array_equal(local[:, centre], expected_centre)
    assert valid[:, centre].all()
    # short sequence T=3 < frames: frame 0's window is [-4, 4] → clamped to 0 0 0 0 0 1 2 2 2
    np.testing.assert_array_equal(local[0], [0, 0, 0, 0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(valid[0], [0, 0, 0, 0, 1, 1, 1, 0, 0])
    # exact / long: window at frame 4 of T=30 is fully inside
    np.testing.assert_array_equal(local[3 + 4], np.arange(9))
    assert valid[3 + 4].all()
    assert valid[3 + 3].sum() == 8  # one frame of left padding
    np.testing.assert_array_equal(seq2frame_table([10], 5, stride=3)[:, 1], [-2, 1, 4, 7])


@pytest.mark.parametrize("builder", [seq2seq_table, seq2frame_table])
def test_gather_equals_slice_and_edge_pad(builder) -> None:
    rng = np.random.default_rng(0)
    lengths = np.array([4, 27, 60])
    frames = 27
    data = rng.normal(size=(lengths.sum(), 5)).astype(np.float32)
    table = builder(lengths, frames)
    local, valid = window_frames(table, lengths, frames)
    (batch,) = gather([data], offsets_of(lengths)[table[:, 0]][:, None] + local)
    offsets = offsets_of(lengths)
    for row, window, mask in zip(table, batch, valid):
        seq, start = row
        sequence = data[offsets[seq] : offsets[seq] + lengths[seq]]
        np.testing.assert_array_equal(window, reference_window(sequence, start, frames))
        raw = start + np.arange(frames)
        np.testing.assert_array_equal(mask, (raw >= 0) & (raw < lengths[seq]))


def test_flip_column_doubles_deterministically() -> None:
    table = seq2seq_table([50, 10], 27)
    plain = add_flip_column(table, flip=False)
    assert plain.shape == (len(table), 3) and (plain[:, 2] == 0).all()
    doubled = add_flip_column(table, flip=True)
    np.testing.assert_array_equal(doubled[:, :2], np.concatenate([table, table]))
    np.testing.assert_array_equal(doubled[:, 2], np.r_[np.zeros(len(table)), np.ones(len(table))])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        seq2seq_table([5, 0], 27)
    with pytest.raises(ValueError, match="frames and stride must be >= 1"):
        seq2seq_table([5], 27, 0)
    with pytest.raises(ValueError, match="lengths must be 1-D"):
        seq2frame_table([[5]], 27)
