"""HotposeModule with small stand-in networks that follow the Hourglass output contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hotpose.data.transforms import flip_pose
from hotpose.lit import EpochDecay, HotposeModule, centre_positions, gather_frames
from hotpose.losses import PoseLoss
from hotpose.models.hourglass import HourglassOutput

LOSS = {"_target_": "hotpose.losses.PoseLoss", "mpjpe": 1.0}
OPTIMIZER = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3}


class StandIn(nn.Module):
    """Per-joint linear lifting; with ``keep`` it outputs only ``keep`` frames chosen from the input
    (the largest summed x, the centre always kept), like a pruned model without recovery."""

    def __init__(self, frames: int = 9, keep: int | None = None) -> None:
        super().__init__()
        self.frames, self.in_channels, self.num_joints, self.keep = frames, 2, 17, keep
        self.lift = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor, kept: list[torch.Tensor] | None = None) -> HourglassOutput:
        pose = self.lift(x)
        b, f = x.shape[:2]
        if self.keep is None:
            return HourglassOutput(pose, torch.arange(f).expand(b, f), [])
        if kept is None:
            score = x[..., 0].sum(dim=-1)
            score[:, (f - 1) // 2] = float("inf")
            sel = score.topk(self.keep, dim=1).indices.sort(dim=1).values
        else:
            sel = kept[0]
        return HourglassOutput(gather_frames(pose, sel), sel, [sel])


def _module(net: nn.Module, **kw) -> HotposeModule:
    module = HotposeModule(model=None, loss=LOSS, optimizer=OPTIMIZER, net=net, actions=["A", "B"], **kw)
    module._build_metrics(["A", "B"])
    return module


def _batch(b: int = 3, f: int = 9) -> dict:
    torch.manual_seed(4)
    valid = torch.ones(b, f, dtype=torch.bool)
    valid[0, :2] = False
    return {"input_2d": torch.randn(b, f, 17, 2), "target_3d": torch.randn(b, f, 17, 3), "valid": valid,
            "frame_index": torch.arange(f).expand(b, f) + 100 * torch.arange(b)[:, None],
            "seq_index": torch.arange(b), "camera": torch.zeros(b, dtype=torch.long),
            "action": ["A", "B", "A"][:b], "subject": ["S9"] * b, "sequence": ["A 1", "B 1", "A 2"][:b]}


def test_gather_and_centre_helpers() -> None:
    x = torch.arange(2 * 5).reshape(2, 5)
    assert gather_frames(x[..., None], torch.tensor([[0, 4], [1, 2]]))[..., 0].tolist() == [[0, 4], [6, 7]]
    assert centre_positions(torch.tensor([[0, 2, 4], [2, 3, 4]]), 2).tolist() == [1, 0]
    with pytest.raises(ValueError, match="centre frame 2"):
        centre_positions(torch.tensor([[0, 1, 4]]), 2)


def test_epoch_decay_matches_official_loop() -> None:
    decay, lr, factors = EpochDecay(gamma=0.95, step_every=5, step_gamma=0.5), 1.0, []
    for epoch in range(1, 12):  # the official loop: after epoch e, lr *= 0.5 if e % 5 == 0 else 0.95
        lr *= 0.5 if epoch % 5 == 0 else 0.95
        factors.append(lr)
    assert [decay(e) for e in range(1, 12)] == pytest.approx(factors)
    assert decay(0) == 1.0
    assert EpochDecay(0.99)(3) == pytest.approx(0.99**3)


def test_flip_tta_seq2seq_averages_the_mirrored_pass() -> None:
    net = StandIn()
    module = _module(net, pipeline="seq2seq").eval()
    batch = _batch()
    with torch.no_grad():
        scored = module.predict_scored(batch)
        expected = (net(batch["input_2d"]).pose + flip_pose(net(flip_pose(batch["input_2d"])).pose)) / 2
    expected[..., 0, :] = 0
    torch.testing.assert_close(scored["pred"], expected)
    target = batch["target_3d"].clone()
    target[..., 0, :] = 0
    torch.testing.assert_close(scored["target"], target)
    assert scored["valid"].tolist() == batch["valid"].tolist()


def test_seq2frame_scores_the_centre_even_when_pruned() -> None:
    net = StandIn(keep=3)
    module = _module(net, pipeline="seq2frame", test_flip=False).eval()
    batch = _batch()
    with torch.no_grad():
        scored = module.predict_scored(batch)
    full = net.lift(batch["input_2d"])[:, 4:5].detach().clone()
    full[..., 0, :] = 0
    torch.testing.assert_close(scored["pred"], full)
    assert scored["position"].tolist() == [[4]] * 3
    # the key of each window is its source frame at the centre: windows of the batch differ
    keys = module._window_keys(batch, scored["position"])
    assert len(set(keys.tolist())) == 3


def test_pruned_training_uses_targets_at_kept_frames() -> None:
    net = StandIn(keep=3)
    module = _module(net, pipeline="seq2frame")
    batch = _batch()
    module.log = lambda *a, **k: None  # no trainer attached
    loss = module.training_step(batch, 0)
    out = net(batch["input_2d"])
    target = batch["target_3d"].clone()
    target[..., 0, :] = 0
    expected = PoseLoss(mpjpe=1.0)(out.pose, gather_frames(target, out.frame_index),
                                   gather_frames(batch["valid"], out.frame_index))
    torch.testing.assert_close(loss, expected)


def test_flip_selection_reuse_and_reselect() -> None:
    batch = _batch()
    # seq2seq without recovery: re-selecting on the mirror keeps other frames -> refused clearly
    reselect = _module(StandIn(keep=3), pipeline="seq2seq", flip_reselect=True).eval()
    with pytest.raises(ValueError, match="flip_reselect=false"):
        reselect.predict_scored(batch)
    reuse = _module(StandIn(keep=3), pipeline="seq2seq", flip_reselect=False).eval()
    scored = reuse.predict_scored(batch)
    assert scored["pred"].shape == (3, 3, 17, 3)
    assert torch.equal(scored["position"], reuse.net(batch["input_2d"]).frame_index)


def test_eval_step_feeds_the_metrics() -> None:
    module = _module(StandIn(), pipeline="seq2seq", eval_mode="both").eval()
    module.log = lambda *a, **k: None
    with torch.no_grad():
        module._eval_step("test", _batch())
    module._eval_epoch_end("test")
    exact, paper = module.results["test/exact"], module.results["test/paper"]
    assert exact["scored"] == 3 * 9 - 2  # the two padding frames are left out
    assert paper["scored"] == 3  # one unit per window
    assert set(exact) >= {"mpjpe_mm", "p_mpjpe_mm", "action/A/mpjpe_mm", "action/B/mpjpe_mm"}


def test_checkpoint_of_other_model_is_refused() -> None:
    model = {"backbone": {"name": "mixste", "frames": 9}, "pruner": {}, "recoverer": {}, "pipeline": {}}
    module = HotposeModule(model=model, loss=LOSS, optimizer=OPTIMIZER, net=StandIn())
    other = {**model, "backbone": {"name": "mixste", "frames": 27}}
    with pytest.raises(ValueError, match=r"backbone.frames: checkpoint 27 != current 9"):
        module.on_load_checkpoint({"hyper_parameters": {"model": other, "pipeline": "seq2seq"}})
    module.on_load_checkpoint({"hyper_parameters": {"model": model, "pipeline": "seq2seq"}})


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="pipeline"):
        HotposeModule(model=None, loss=LOSS, optimizer=OPTIMIZER, net=StandIn(), pipeline="seq2many")
    with pytest.raises(ValueError, match="eval_mode"):
        HotposeModule(model=None, loss=LOSS, optimizer=OPTIMIZER, net=StandIn(), eval_mode="official")
    with pytest.raises(ValueError, match="lacks"):
        HotposeModule(model={"backbone": {}}, loss=LOSS, optimizer=OPTIMIZER)
    module = _module(StandIn())
    with pytest.raises(ValueError, match="lacks key 'valid'"):
        module.predict_scored({"input_2d": torch.zeros(1, 9, 17, 2), "target_3d": torch.zeros(1, 9, 17, 3)})
