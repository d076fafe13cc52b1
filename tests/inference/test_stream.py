"""PoseStream: one pose per pushed frame, the offline twin's poses, no look-ahead beyond the delay, gaps."""

from __future__ import annotations

import numpy as np
import pytest
from inference_helpers import infer_config, model_config, save_checkpoint, tiny_mixste, walking_keypoints

from hotpose.infer import run_inference
from hotpose.inference.checkpoint import load_model
from hotpose.inference.keypoints import KeypointTrack, save_keypoints
from hotpose.inference.lifter import Lifter
from hotpose.inference.lifting import lift_track
from hotpose.inference.stream import PoseStream

F, HALF, W, H = 9, 4, 640, 480


def plain_mixste(pipeline: str) -> dict:
    return model_config("backbone=mixste", "pruner=none", "recoverer=none", f"pipeline={pipeline}",
                        f"backbone.frames={F}", "backbone.net.dim=8", "backbone.net.depth=2", "backbone.net.heads=2",
                        "backbone.net.mlp_hidden=16", "backbone.net.drop_path=0.0")


MODELS = {
    "hot_seq2seq": lambda: tiny_mixste(frames=F, tokens=3),
    "tpc_seq2frame": lambda: tiny_mixste(frames=F, tokens=3, pipeline="seq2frame", recoverer="none"),
    "plain_seq2seq": lambda: plain_mixste("seq2seq"),
    "plain_seq2frame": lambda: plain_mixste("seq2frame"),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpts")
    return {name: load_model(save_checkpoint(folder / f"{name}.ckpt", make(), seed=3)) for name, make in MODELS.items()}


def stream_all(model, points, push_scores=None, **options) -> tuple[list, PoseStream]:
    stream = PoseStream(model, image_size=(W, H), layout="h36m", **options)
    out = []
    for t, p in enumerate(points):
        out += stream.push(None if p is None else p, None if push_scores is None else push_scores[t])
    return out + stream.flush(), stream


def poses(emitted) -> np.ndarray:
    return np.stack([e.pose for e in emitted])


def offline(model, points, **options) -> np.ndarray:
    track = KeypointTrack(points, None, np.isfinite(points).all(axis=(1, 2)), W, H)
    return lift_track(model.net, track, model.pipeline, **options).poses_3d


@pytest.mark.parametrize("name", list(MODELS))
def test_centred_stream_equals_offline(models, name) -> None:
    model, points = models[name], walking_keypoints(23)
    emitted, _ = stream_all(model, points)
    expected = offline(model, points, plan="centred")
    np.testing.assert_allclose(poses(emitted), expected, atol=1e-6)
    if model.pipeline == "seq2frame":  # the offline default for seq2frame is the same set of windows
        np.testing.assert_allclose(poses(emitted), offline(model, points), atol=1e-6)


def test_centred_stream_equals_the_infer_command(tmp_path, models) -> None:
    ckpt = tmp_path / "m.ckpt"
    save_checkpoint(ckpt, MODELS["hot_seq2seq"](), seed=3)
    points = walking_keypoints(17)
    save_keypoints(tmp_path / "k.npz", points, None, W, H, "h36m")
    run_inference(infer_config(input=tmp_path / "k.npz", ckpt=ckpt, output_dir=tmp_path / "out", **{
        "lifting.plan": "centred", "lifting.stride": 3, "render.animation": "null", "render.sheet": 0}))
    emitted, _ = stream_all(load_model(ckpt), points, stride=3)
    with np.load(tmp_path / "out" / "poses_3d.npz") as cli:
        np.testing.assert_allclose(poses(emitted), cli["poses_3d"], atol=1e-6)


@pytest.mark.parametrize("name", ["hot_seq2seq", "tpc_seq2frame"])
@pytest.mark.parametrize("stride", [1, 2, HALF + 1])
def test_every_delay_emits_each_frame_once_in_order(models, name, stride) -> None:
    model, points = models[name], walking_keypoints(20)
    for delay in range(HALF + 1):
        emitted, stream = stream_all(model, points, delay=delay, stride=stride)
        assert [e.frame for e in emitted] == list(range(20))
        assert all(delay <= e.lag <= delay + stride - 1 for e in emitted[:-(HALF + stride)])
        expected = offline(model, points, plan="centred", delay=delay, stride=stride)
        np.testing.assert_allclose(poses(emitted), expected, atol=1e-6)
        assert np.isfinite(poses(emitted)).all() and (poses(emitted)[:, 0] == 0).all()
        groups = -(-20 // stride)
        assert stream.windows == (groups if model.pipeline == "seq2seq" else 20)


@pytest.mark.parametrize("name", ["hot_seq2seq", "plain_seq2frame"])
@pytest.mark.parametrize("delay", [0, 2])
def test_no_look_ahead_beyond_the_delay(models, name, delay) -> None:
    """Frame t's pose is out as soon as frame t + delay is pushed, and it is what offline lifting of the
    frames 0 .. t + delay alone gives: a stream that waited for or used a later frame would fail."""
    model, points = models[name], walking_keypoints(16)
    stream = PoseStream(model, image_size=(W, H), layout="h36m", delay=delay)
    for t, p in enumerate(points):
        out = stream.push(p)
        if t < delay:
            assert out == []
            continue
        (pose,) = out
        assert pose.frame == t - delay and pose.lag == delay
        prefix = offline(model, points[:t + 1], plan="centred", delay=delay)
        np.testing.assert_allclose(pose.pose, prefix[t - delay], atol=1e-6)


def test_work_reuse_one_window_per_stride_batched_at_flush(models) -> None:
    model = models["hot_seq2seq"]
    calls = []
    hook = model.net.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    try:
        stream = PoseStream(model, image_size=(W, H), layout="h36m", delay=0, stride=5, flip=True)
        counts = [len(stream.push(p)) for p in walking_keypoints(12)]
        assert counts == [0, 0, 0, 0, 5, 0, 0, 0, 0, 5, 0, 0]
        assert calls == [1, 1, 1, 1]  # one window per 5 frames, plus its mirror
        assert len(stream._inputs) <= F + 5  # bounded memory
        stream2 = PoseStream(model, image_size=(W, H), layout="h36m", delay=HALF, stride=2)
        assert sum(len(stream2.push(p)) for p in walking_keypoints(6)) == 2  # frames 0, 1 once 5 is in
        calls.clear()
        assert len(stream2.flush()) == 4 and calls == [2, 2]  # the 2 remaining windows in one batch
    finally:
        hook.remove()


def test_gaps_are_held_from_the_past_and_flagged(models) -> None:
    model = models["hot_seq2seq"]
    points = walking_keypoints(14)
    pushed: list = list(points)
    pushed[0] = pushed[1] = None  # nothing seen yet
    pushed[6] = pushed[7] = None  # a lost detection
    partial = points[9].copy()
    partial[[3, 16]] = np.nan  # two joints missing
    pushed[9] = partial
    emitted, _ = stream_all(model, pushed, delay=1)
    assert [e.frame for e in emitted] == list(range(14))
    assert np.isnan(emitted[0].pose).all() and np.isnan(emitted[1].pose).all() and emitted[0].lag == 0
    assert [e.detected for e in emitted] == [False, False] + [True] * 4 + [False, False, True, False] + [True] * 4
    assert emitted[6].filled.all() and emitted[9].filled.tolist() == [j in (3, 16) for j in range(17)]
    # the same as lifting, from frame 2, the track with the gaps held at their last detected values
    held = points[2:].copy()
    held[6 - 2] = held[7 - 2] = points[5]
    held[9 - 2, [3, 16]] = points[8, [3, 16]]
    expected = offline(model, held, plan="centred", delay=1)
    np.testing.assert_allclose(poses(emitted[2:]), expected, atol=1e-6)


def test_scores_and_other_layouts(models, tmp_path) -> None:
    config = model_config("backbone=motionbert", "size=tiny", "pruner=none", "recoverer=none",
                          "pipeline=seq2seq", f"backbone.frames={F}")
    model = load_model(save_checkpoint(tmp_path / "mb.ckpt", config))
    points = walking_keypoints(11)
    scores = np.random.default_rng(0).uniform(0.3, 1.0, (11, 17)).astype(np.float32)
    emitted, _ = stream_all(model, points, push_scores=scores)
    track = KeypointTrack(points, scores, np.ones(11, dtype=bool), W, H)
    expected = lift_track(model.net, track, "seq2seq", plan="centred").poses_3d
    np.testing.assert_allclose(poses(emitted), expected, atol=1e-6)
    blaze = np.random.default_rng(1).uniform(100, 300, (33, 2))
    stream = PoseStream(Lifter(models["hot_seq2seq"], flip=False), image_size=(W, H), delay=0)
    assert len(stream.push(blaze)) == 1  # 33 joints: BlazePose


@pytest.mark.parametrize(("push", "message"), [
    (np.zeros((12, 2)), "has 17 joints, the keypoints have 12"),
    (np.zeros((17,)), r"\(joints, 2\|3\)"),
    (np.full((17, 2), np.nan), "every keypoint is NaN; push\\(None\\)"),
    (np.full((17, 2), np.inf), "infinite"),
])
def test_bad_frames_fail_clearly(models, push, message) -> None:
    stream = PoseStream(models["hot_seq2seq"], image_size=(W, H), layout="h36m")
    with pytest.raises(ValueError, match=message):
        stream.push(push)


def test_bad_streams_fail_clearly(models) -> None:
    model = models["hot_seq2seq"]
    stream = PoseStream(model, image_size=(W, H), layout="h36m")
    stream.push(walking_keypoints(1)[0])
    stream.flush()
    with pytest.raises(RuntimeError, match="push after flush"):
        stream.push(walking_keypoints(1)[0])
    with pytest.raises(ValueError, match="17 joints can be H36M or COCO"):
        PoseStream(model, image_size=(W, H)).push(walking_keypoints(1)[0])
    for delay in (HALF + 1, -1, "middle", 1.5):
        with pytest.raises(ValueError, match="delay must be"):
            PoseStream(model, image_size=(W, H), delay=delay)
    with pytest.raises(ValueError, match="stride must be"):
        PoseStream(model, image_size=(W, H), stride=HALF + 2)
    with pytest.raises(ValueError, match="image_size"):
        PoseStream(model, image_size=640)
    mixed = PoseStream(model, image_size=(W, H), layout="h36m")
    mixed.push(walking_keypoints(1)[0], score=0.9)
    with pytest.raises(ValueError, match="always or never"):
        mixed.push(walking_keypoints(1)[0])
    assert PoseStream(model, image_size=(W, H), layout="h36m").flush() == []
