"""The hourglass and build_model: pipeline order, index composition, validation, every config combination."""

from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import hotpose.models.hourglass as hourglass_module
from hotpose.models import build_model
from hotpose.models.backbones.mixste import MixSTE
from hotpose.models.backbones.motionbert import MotionBERT
from hotpose.models.hourglass import Hourglass, block_schedule, gather_frames
from hotpose.models.layers import count_parameters
from hotpose.models.pruners import TPC, Uniform
from hotpose.models.recoverers import TRA, Linear, NoRecovery

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TINY_MIXSTE = partial(MixSTE, frames=9, dim=16, depth=3, heads=2, mlp_hidden=32)
TINY_MOTIONBERT = partial(MotionBERT, frames=9, dim=16, depth=3, heads=2, mlp_hidden=32, dim_rep=24)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest single-threaded; a second OpenMP thread only spins on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_block_schedule() -> None:
    assert block_schedule(243, 8, [(3, 81)]) == [243] * 3 + [81] * 5
    assert block_schedule(9, 4, [(1, 6), (3, 2)]) == [9, 6, 6, 2]
    assert block_schedule(9, 2, []) == [9, 9]
    cases = [([(2, 3), (1, 2)], "strictly increasing"), ([(4, 3)], r"layer must be in \[0, 4\)"),
             ([(1, 9)], r"tokens must be in \[1, 9\)"), ([(0, 5), (1, 5)], r"\[1, 5\)")]
    for stages, message in cases:
        with pytest.raises(ValueError, match=message):
            block_schedule(9, 4, stages)


def test_no_pruning_is_the_backbone() -> None:
    model = Hourglass(TINY_MIXSTE).eval()
    x = torch.randn(2, 9, 17, 2)
    out = model(x)
    torch.testing.assert_close(out.pose, model.backbone(x))
    assert out.frame_index.tolist() == [list(range(9))] * 2 and out.kept == []


def test_pipeline_order_by_hand() -> None:
    """Prune before block 1 (uniform: frames 0, 4, 8), add the rank embedding, recover with TRA."""
    model = Hourglass(TINY_MIXSTE, Uniform(), [(1, 3)], token_embedding=True,
                      recoverer=partial(TRA, heads=2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)
        x = torch.randn(2, 9, 17, 2)
        out = model(x)
        bb = model.backbone
        t = bb.forward_block(0, bb.embed(x))[:, [0, 4, 8]] + model.token_embeddings[0][:, :, None]
        t = bb.norm(bb.forward_block(2, bb.forward_block(1, t)))
        expected = bb.head(model.recoverer(t, torch.tensor([[0, 4, 8]] * 2), 9))
    torch.testing.assert_close(out.pose, expected)
    assert out.kept[0].tolist() == [[0, 4, 8]] * 2
    assert out.frame_index.tolist() == [list(range(9))] * 2


def test_progressive_stages_compose_indices_and_keep_centre() -> None:
    model = Hourglass(TINY_MOTIONBERT, TPC(), [(0, 6), (2, 3)], token_embedding=True, recoverer=NoRecovery,
                      keep_center=True)
    assert [model.backbone.block_frames(i) for i in range(3)] == [6, 6, 3]
    out = model(torch.randn(4, 9, 17, 3))
    first, second = out.kept
    assert first.shape == (4, 6) and second.shape == (4, 3)
    assert torch.equal(out.frame_index, gather_frames(first, second))
    assert (out.frame_index == 4).any(dim=1).all()
    assert out.pose.shape == (4, 3, 17, 3)
    assert (out.frame_index[:, 1:] > out.frame_index[:, :-1]).all()


def test_reused_selection_reproduces_output() -> None:
    model = Hourglass(TINY_MIXSTE, TPC(tie_break="official"), [(1, 4)], recoverer=NoRecovery,
                      keep_center=True).eval()
    x = torch.randn(2, 9, 17, 2)
    torch.manual_seed(3)
    first = model(x)
    torch.manual_seed(4)
    again = model(x, kept=first.kept)
    assert torch.equal(first.pose, again.pose) and torch.equal(first.frame_index, again.frame_index)
    with pytest.raises(ValueError, match="drop the centre frame"):
        model(x, kept=[torch.tensor([[0, 1, 2, 3]] * 2)])
    with pytest.raises(ValueError, match=r"kept\[0\] must be int64 \(2, 4\)"):
        model(x, kept=[torch.tensor([[0, 1, 4]] * 2)])
    with pytest.raises(ValueError, match="strictly increasing"):
        model(x, kept=[torch.tensor([[0, 4, 4, 5]] * 2)])


def test_two_channel_input_gets_unit_confidence() -> None:
    model = Hourglass(TINY_MOTIONBERT).eval()
    x = torch.randn(1, 9, 17, 2)
    torch.testing.assert_close(model(x).pose, model.backbone(torch.cat([x, torch.ones(1, 9, 17, 1)], -1)))


def test_input_validation() -> None:
    model = Hourglass(TINY_MIXSTE)
    for shape, message in [((1, 8, 17, 2), r"\(b, 9, 17, c\)"), ((1, 9, 16, 2), r"\(b, 9, 17, c\)"),
                           ((1, 9, 17, 3), "3 channels per joint")]:
        with pytest.raises(ValueError, match=message):
            model(torch.randn(*shape))
    x = torch.randn(1, 9, 17, 2)
    x[0, 3, 2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or inf values \(first at index \[0, 3, 2, 1\]\)"):
        model(x)


def test_finite_check_costs_no_device_sync() -> None:
    x = torch.randn(1, 9, 17, 2)
    x[0, 0, 0, 0] = float("inf")
    model = Hourglass(TINY_MIXSTE).eval()
    assert model.check_finite is None and model._should_check_finite(x)  # CPU: checked
    # an accelerator tensor is not read back per forward unless asked for
    assert not model._should_check_finite(torch.empty(1, device="meta"))
    model.check_finite = True
    assert model._should_check_finite(torch.empty(1, device="meta"))
    model.check_finite = False
    assert not torch.isfinite(model(x).pose).all()  # unchecked: the inf propagates
    with pytest.raises(ValueError, match="NaN or inf"):
        Hourglass(TINY_MIXSTE, check_finite=True)(x)


def test_construction_validation() -> None:
    with pytest.raises(ValueError, match="pruning at layer 0"):
        Hourglass(TINY_MIXSTE, TPC(), [(0, 3)])
    with pytest.raises(ValueError, match="without a selection policy"):
        Hourglass(TINY_MIXSTE, None, [(1, 3)])
    with pytest.raises(ValueError, match="backbone factory"):
        Hourglass(TINY_MIXSTE())
    with pytest.raises(ValueError, match="tokens must be"):
        Hourglass(TINY_MIXSTE, TPC(), [(1, 9)])


def test_construction_uses_rng_like_a_single_build() -> None:
    torch.manual_seed(0)
    pruned = Hourglass(TINY_MOTIONBERT, TPC(), [(1, 3)])
    torch.manual_seed(0)
    plain = TINY_MOTIONBERT()
    torch.testing.assert_close(pruned.backbone.state_dict(), plain.state_dict())


def test_hourglass_names_no_backbone() -> None:
    source = Path(hourglass_module.__file__).read_text().lower()
    assert not any(name in source for name in ("mixste", "motionbert", "mhformer", "agformer"))


# ----------------------------------------------------------------------------------------- configs

TINY_NETS = {
    "mixste": dict(dim=16, depth=3, heads=2, mlp_hidden=32),
    "motionbert": dict(dim=16, depth=3, heads=2, mlp_hidden=32, dim_rep=24),
}


def _config(backbone: str, pruner: str, recoverer: str, pipeline: str, overrides: dict):
    root = OmegaConf.create({
        "backbone": OmegaConf.load(CONFIGS / "backbone" / f"{backbone}.yaml"),
        "pruner": OmegaConf.load(CONFIGS / "pruner" / f"{pruner}.yaml"),
        "recoverer": OmegaConf.load(CONFIGS / "recoverer" / f"{recoverer}.yaml"),
        "pipeline": OmegaConf.load(CONFIGS / "pipeline" / f"{pipeline}.yaml"),
    })
    return OmegaConf.merge(root, OmegaConf.create(overrides))


def _tiny(backbone: str, pruner: str, recoverer: str, pipeline: str, **pruner_overrides):
    tiny_backbone = {"frames": 9, "prune_layer": 1, "prune_tokens": 3, "net": TINY_NETS[backbone]}
    overrides = {"backbone": tiny_backbone, "pruner": pruner_overrides}
    return _config(backbone, pruner, recoverer, pipeline, overrides)


@pytest.mark.parametrize("backbone, pipeline", list(itertools.product(TINY_NETS, ["seq2seq", "seq2frame"])))
def test_every_pruner_and_recoverer_builds_and_trains(backbone: str, pipeline: str) -> None:
    for pruner, recoverer in itertools.product(["none", "tpc", "uniform", "attention", "motion"],
                                               ["none", "tra", "nearest", "linear"]):
        cfg = _tiny(backbone, pruner, recoverer, pipeline)
        model = build_model(cfg.backbone, cfg.pruner, cfg.recoverer, cfg.pipeline)
        out = model(torch.randn(2, 9, 17, 2))
        pruned, recovered = pruner != "none", recoverer != "none"
        frames = 3 if pruned and not recovered else 9
        assert out.pose.shape == (2, frames, 17, 3), (pruner, recoverer)
        assert len(out.kept) == int(pruned)
        if pipeline == "seq2frame":
            assert (out.frame_index == 4).any(dim=1).all()
            if pruned:
                assert (out.kept[0] == 4).any(dim=1).all()
        out.pose.square().mean().backward()
        assert model.backbone.joint_embed.weight.grad.abs().sum() > 0
        assert (model.token_embeddings is not None) == (pruned and cfg.pruner.token_embedding)


def test_progressive_stages_from_config() -> None:
    cfg = _tiny("mixste", "tpc", "linear", "seq2seq", stages=[[1, 6], [2, 3]])
    model = build_model(cfg.backbone, cfg.pruner, cfg.recoverer, cfg.pipeline)
    assert model.stages == [(1, 6), (2, 3)] and len(model.token_embeddings) == 2
    out = model(torch.randn(1, 9, 17, 2))
    assert [k.shape[1] for k in out.kept] == [6, 3] and out.pose.shape == (1, 9, 17, 3)


def test_tra_follows_backbone_settings() -> None:
    cfg = _tiny("motionbert", "tpc", "tra", "seq2seq")
    assert cfg.recoverer.heads == 8 and cfg.recoverer.init_std == 0.02
    cfg = _tiny("mixste", "tpc", "tra", "seq2seq")
    assert cfg.recoverer.init_std is None
    assert cfg.pipeline.train_stride == 9
    assert _tiny("mixste", "tpc", "tra", "seq2frame").pipeline.train_stride == 1


@pytest.mark.parametrize("backbone, pruner, recoverer, expected", [
    ("mixste", "none", "none", 33_783_811),
    ("mixste", "tpc", "tra", 35_000_323),
    ("motionbert", "none", "none", 16_001_549),
    ("motionbert", "tpc", "tra", 16_347_661),
])
def test_paper_parameter_counts_with_hydra(backbone: str, pruner: str, recoverer: str, expected: int) -> None:
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(overrides=[f"+backbone={backbone}", f"+pruner={pruner}", f"+recoverer={recoverer}",
                                 "+pipeline=seq2seq"])
    with torch.device("meta"):
        model = build_model(cfg.backbone, cfg.pruner, cfg.recoverer, cfg.pipeline)
    assert count_parameters(model) == expected
    if pruner == "tpc":
        assert model.stages == [(3, 81)] if backbone == "mixste" else [(1, 81)]
        assert model.token_embeddings[0].shape[1] == 81 and model.recoverer.queries.shape[1] == 243


def test_bad_stage_config() -> None:
    cfg = _tiny("mixste", "tpc", "tra", "seq2seq", stages=[[1, 6, 2]])
    with pytest.raises(ValueError, match=r"pruner.stages\[0\]"):
        build_model(cfg.backbone, cfg.pruner, cfg.recoverer, cfg.pipeline)
    assert isinstance(Hourglass(TINY_MIXSTE, Uniform(), [(1, 3)], recoverer=Linear).recoverer, Linear)
