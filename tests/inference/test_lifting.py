"""Gap filling, windowing and stitching: one output per input frame, each from its own input frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from inference_helpers import save_checkpoint, tiny_mixste, walking_keypoints
from torch import nn

from hotpose.data.camera import normalize_screen
from hotpose.inference.checkpoint import load_model
from hotpose.inference.keypoints import KeypointTrack
from hotpose.inference.lifting import fill_missing, lift_track, window_index
from hotpose.models.hourglass import HourglassOutput


def test_fill_missing_interpolates_inside_and_holds_the_ends() -> None:
    values = np.full((6, 2, 1), np.nan)
    values[1, 0, 0], values[4, 0, 0] = 10.0, 40.0
    values[:, 1, 0] = np.arange(6.0)
    values[3, 1, 0] = np.nan
    filled, missing = fill_missing(values)
    np.testing.assert_allclose(filled[:, 0, 0], [10, 10, 20, 30, 40, 40])
    np.testing.assert_allclose(filled[:, 1, 0], [0, 1, 2, 3, 4, 5])
    assert missing[:, 0].tolist() == [True, False, True, True, False, True]
    assert missing[:, 1].tolist() == [False, False, False, True, False, False]


def test_fill_missing_refuses_empty_tracks() -> None:
    with pytest.raises(ValueError, match="no frame has a detection"):
        fill_missing(np.full((4, 17, 2), np.nan))
    values = np.zeros((4, 17, 2))
    values[:, 10] = np.nan
    with pytest.raises(ValueError, match="head"):
        fill_missing(values)


@pytest.mark.parametrize(("length", "windows"), [(1, 1), (5, 1), (9, 1), (10, 2), (30, 4)])
def test_seq2seq_windows_cover_every_frame_once(length: int, windows: int) -> None:
    index, keep = window_index(length, 9, "seq2seq")
    assert index.shape == (windows, 9)
    counts = np.bincount(index[keep], minlength=length)
    assert counts.tolist() == [1] * length
    assert index.min() >= 0 and index.max() == length - 1  # padding repeats the edge frames


def test_seq2frame_windows_are_centred_on_every_frame() -> None:
    index, keep = window_index(7, 5, "seq2frame")
    assert index.shape == (7, 5)
    assert index[keep].tolist() == list(range(7))
    assert index[0].tolist() == [0, 0, 0, 1, 2] and index[6].tolist() == [4, 5, 6, 6, 6]


class EchoNet(nn.Module):
    """Stand-in model: the pose of a frame is its own input (x, y) and z = 0.5, so every output can be
    traced back to the input frame it came from. ``kept`` > 0 outputs only every other window frame
    (always including the centre), as a pruned model without recovery does."""

    def __init__(self, frames: int, in_channels: int = 2, kept_only: bool = False) -> None:
        super().__init__()
        self.frames, self.in_channels, self.kept_only = frames, in_channels, kept_only
        self.stages, self.recoverer = [], None
        self.seen_channels: list[int] = []

    def forward(self, x: torch.Tensor) -> HourglassOutput:
        self.seen_channels.append(x.shape[-1])
        b, f = x.shape[:2]
        pose = torch.cat([x[..., :2], torch.full_like(x[..., :1], 0.5)], dim=-1)
        index = torch.arange(f).expand(b, f)
        if self.kept_only:
            index = index[:, (self.frames - 1) // 2 % 2::2]
            pose = pose[torch.arange(b)[:, None], index]
        return HourglassOutput(pose, index, [])


def _track(length: int, scores: bool = False) -> KeypointTrack:
    points = walking_keypoints(length)
    s = np.full((length, 17), 0.7, dtype=np.float32) if scores else None
    return KeypointTrack(points, s, np.ones(length, dtype=bool), 640, 480)


@pytest.mark.parametrize("length", [4, 9, 31])
@pytest.mark.parametrize("flip", [False, True])
def test_each_output_frame_comes_from_its_input_frame(length: int, flip: bool) -> None:
    track = _track(length)
    result = lift_track(EchoNet(9), track, "seq2seq", flip=flip, batch_size=2)
    assert result.poses_3d.shape == (length, 17, 3)
    expected = normalize_screen(track.points, 640, 480)
    np.testing.assert_allclose(result.poses_3d[:, 1:, :2], expected[:, 1:], atol=1e-5)
    np.testing.assert_allclose(result.poses_3d[:, 1:, 2], 0.5, atol=1e-6)
    assert (result.poses_3d[:, 0] == 0).all()  # root set to 0
    assert result.passes == (2 if flip else 1)


def test_seq2frame_uses_the_centre_output_of_each_window() -> None:
    track = _track(12)
    result = lift_track(EchoNet(5, kept_only=True), track, "seq2frame", flip=True)
    assert result.windows == 12
    expected = normalize_screen(track.points, 640, 480)
    np.testing.assert_allclose(result.poses_3d[:, 1:, :2], expected[:, 1:], atol=1e-5)


def test_overlapping_windows_are_averaged_to_the_same_frames() -> None:
    track = _track(20)
    result = lift_track(EchoNet(9), track, "seq2seq", flip=False, stride=3)
    assert result.windows > 3
    np.testing.assert_allclose(result.poses_3d[:, 1:, :2], normalize_screen(track.points, 640, 480)[:, 1:],
                               atol=1e-5)


def test_confidence_channel_only_for_three_channel_models() -> None:
    three, two = EchoNet(9, in_channels=3), EchoNet(9, in_channels=2)
    lift_track(three, _track(5, scores=True), "seq2seq", flip=False)
    lift_track(two, _track(5, scores=True), "seq2seq", flip=False)
    lift_track(EchoNet(9, in_channels=3), _track(5, scores=False), "seq2seq", flip=False)
    assert three.seen_channels == [3] and two.seen_channels == [2]


def test_missing_frames_are_filled_and_flagged() -> None:
    track = _track(10)
    track.points[[0, 4, 5]] = np.nan
    track.detected[[0, 4, 5]] = False
    result = lift_track(EchoNet(9), track, "seq2seq", flip=False)
    assert np.isfinite(result.poses_3d).all()
    assert result.filled[:, 3].tolist() == [True, False, False, False, True, True] + [False] * 4
    np.testing.assert_allclose(result.keypoints_2d[0], result.keypoints_2d[1])  # held at the start
    np.testing.assert_allclose(result.keypoints_2d[4], (2 * result.keypoints_2d[3] + result.keypoints_2d[6]) / 3,
                               atol=1e-4)
    assert result.detected.tolist() == track.detected.tolist()


def test_seq2seq_model_without_recovery_is_refused(tmp_path) -> None:
    net = EchoNet(9)
    net.stages = [(1, 3)]
    with pytest.raises(ValueError, match="one pose per input frame"):
        lift_track(net, _track(5), "seq2seq")
    model = load_model(save_checkpoint(tmp_path / "m.ckpt", tiny_mixste(frames=9, tokens=3, recoverer="none")))
    with pytest.raises(ValueError, match="one pose per input frame"):
        lift_track(model.net, _track(5), "seq2seq")


@pytest.mark.parametrize("length", [5, 40])
def test_tiny_hourglass_gives_one_pose_per_frame(tmp_path, length: int) -> None:
    model = load_model(save_checkpoint(tmp_path / "m.ckpt", tiny_mixste(frames=9, tokens=3)))
    result = lift_track(model.net, _track(length), model.pipeline, flip=True)
    assert result.poses_3d.shape == (length, 17, 3) and np.isfinite(result.poses_3d).all()
    assert result.windows == max(1, -(-length // 9))
    # A window run alone gives the same poses as inside the stitched sequence (no cross-talk).
    if length == 40:
        index, keep = window_index(length, 9, "seq2seq")
        x = torch.as_tensor(normalize_screen(_track(length).points, 640, 480))[index[1]][None]
        with torch.no_grad():
            alone = model.net(x).pose[0].numpy().copy()
        alone[:, 0] = 0
        plain = lift_track(model.net, _track(length), model.pipeline, flip=False)
        np.testing.assert_allclose(plain.poses_3d[index[1][keep[1]]], alone[keep[1]], atol=1e-5)
