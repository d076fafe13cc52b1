"""Official HoT checkpoints in hotpose: equality with the official classes, strict refusal of wrong files.

The fixtures in ``tests/fixtures/official/<variant>.pt`` were produced by running the nine official
model classes (NationalGAILab/HoT) at narrow configurations with random weights, outside this
repository. Each holds the weights (on an int8 * 2**-6 grid, stored as int8, so the float32 models
computed with exactly these values), the input, the seed set right before the official forward, the
official output, the kept frame indices and the raw ``torch.rand`` draws of the TPC tie-break. The
seeds were chosen so that the official selection does not flip under ~5e-7 feature perturbations
(float32 op-order differences), while another seed does change it (see ``test_seed_decides_ties``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cpu_records import MAKE_RECORDS, RECORD_SUFFIXES, cpu_kind
from omegaconf import OmegaConf

from hotpose.convert import main as convert_main
from hotpose.models.build import build_model
from hotpose.models.official import (
    VARIANTS,
    hotpose_checkpoint,
    load_official,
    map_key,
    read_state_dict,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "official"
TOLERANCE = 1e-5
MODEL_GROUPS = ("backbone", "pruner", "recoverer", "pipeline")


def unpack_weights(packed: dict) -> dict[str, torch.Tensor]:
    """Inverse of the fixture packing: one int8 vector / scale, cut by the listed shapes."""
    state, offset = {}, 0
    for key, shape in packed["entries"]:
        n = math.prod(shape)
        state[key] = (packed["int8"][offset:offset + n].float() / packed["scale"]).reshape(shape)
        offset += n
    assert offset == packed["int8"].numel()
    state.update(packed["other"])
    return state


def fixture(variant: str) -> dict:
    data = torch.load(FIXTURES / f"{variant}.pt", weights_only=True)
    data["weights"] = unpack_weights(data["state_dict"])
    data["x"] = data["input"]["int8"].float() / data["input"]["scale"]
    return data


def run_seeded(model, x: torch.Tensor, seed: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model.forward_output(x)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_reproduces_official_output(variant: str) -> None:
    data = fixture(variant)
    assert data["variant"] == variant
    model = load_official(data["weights"], variant, **data["overrides"])
    assert model.variant == variant and not model.training
    out = run_seeded(model, data["x"], data["seed"])
    assert out.pose.shape == data["output"].shape
    assert (out.pose - data["output"]).abs().max().item() < TOLERANCE
    # the same frames as the official clustering (hot_*: its sorted index_down; tpc_*: its index)
    assert len(out.kept) == len(data["kept"])
    for ours, theirs in zip(out.kept, data["kept"]):
        assert torch.equal(ours, theirs)
    # forward() is the plain tensor API
    torch.manual_seed(data["seed"])
    with torch.no_grad():
        assert torch.equal(model(data["x"]), out.pose)


# The extra seeds are tie-fragile on purpose: their official outputs are recorded per kind of CPU
# (tests/cpu_records.py), each made by the official classes on a CPU of that kind.
EXTRA_SEEDS = {kind: torch.load(FIXTURES / f"extra_seeds{suffix}.pt", weights_only=True)
               for kind, suffix in RECORD_SUFFIXES.items()}


def extra_seeds_here(variant: str) -> dict[int, torch.Tensor]:
    """The official outputs at the extra seeds recorded on this kind of CPU (skips where there are none)."""
    record = EXTRA_SEEDS.get(cpu_kind(), {})
    if variant not in record:
        pytest.skip(f"no official outputs of {variant} recorded on a {cpu_kind()} CPU; {MAKE_RECORDS}")
    return record[variant]


@pytest.mark.parametrize("variant", sorted(set().union(*EXTRA_SEEDS.values())))
def test_any_seed_reproduces_official_output(variant: str) -> None:
    """The fixture seeds were picked so that float32 op order cannot flip a selection; these seeds were
    not, so they also check that attention and joint pooling run in the official order of operations."""
    record = extra_seeds_here(variant)
    data = fixture(variant)
    model = load_official(data["weights"], variant, **data["overrides"])
    for seed, expected in record.items():
        torch.manual_seed(seed)
        with torch.no_grad():
            pose = model(data["x"])
        assert (pose - expected).abs().max().item() < TOLERANCE, f"seed {seed}"


@pytest.mark.parametrize("variant", ["hot_mixste", "tpc_mhformer", "hot_motionagformer"])
def test_seed_decides_ties(variant: str) -> None:
    """The fixtures are not tie-free: the official noise decides, so another seed selects other frames."""
    data = fixture(variant)
    model = load_official(data["weights"], variant, **data["overrides"])
    other = run_seeded(model, data["x"], data["seed"] + 1000)
    assert not torch.equal(other.kept[0], data["kept"][0])
    assert (other.pose - data["output"]).abs().max().item() > 1e-3


def test_deterministic_tie_break_ignores_the_rng() -> None:
    data = fixture("hot_mixste")
    model = load_official(data["weights"], "hot_mixste", tie_break="deterministic")
    a, b = run_seeded(model, data["x"], 0), run_seeded(model, data["x"], 1)
    assert torch.equal(a.kept[0], b.kept[0]) and torch.equal(a.pose, b.pose)
    assert model.cfg.pruner.policy.tie_break == "deterministic"


# ------------------------------------------------------------------------- what the shapes say


def test_shapes_are_read_from_the_file() -> None:
    cfg = load_official(fixture("mixste")["weights"], "mixste").cfg
    net = cfg.backbone.net
    # generator: frames 27, channel 16, d_hid 24 (MixSTE reads d_hid), depth 4 pairs, 8 heads
    shapes = (net.frames, net.dim, net.mlp_hidden, net.depth, net.heads, net.in_channels)
    assert shapes == (27, 16, 24, 4, 8, 2)
    assert cfg.pruner.policy is None and cfg.pipeline.name == "seq2seq"

    cfg = load_official(fixture("hot_motionagformer")["weights"], "hot_motionagformer").cfg
    # layer index and kept tokens come from the temporal-GCN BatchNorm sizes / pos_embed_token
    assert (cfg.pruner.layer, cfg.pruner.tokens, cfg.backbone.net.depth) == (2, 9, 3)
    assert cfg.recoverer.heads == 4 and cfg.recoverer.qkv_bias is False
    assert cfg.backbone.net.mlp_ratio == 2.0 and cfg.backbone.net.dim_rep == 24

    cfg = load_official(fixture("tpc_mhformer")["weights"], "tpc_mhformer", token_num=9).cfg
    assert (cfg.backbone.net.frames, cfg.backbone.net.mhg_depth, cfg.pipeline.keep_center) == (27, 2, True)
    assert cfg.pruner.token_embedding is False and cfg.recoverer._target_.endswith("NoRecovery")


def test_official_defaults_that_do_not_fit_are_refused_with_a_hint() -> None:
    weights = fixture("tpc_mixste")["weights"]
    with pytest.raises(ValueError, match=r"token_num=61 \(official default; pass token_num=\.\.\.\)"):
        load_official(weights, "tpc_mixste", layer_index=2)
    with pytest.raises(ValueError, match=r"layer_index=7 .*must be in \[1, 3\]"):
        load_official(weights, "tpc_mixste", token_num=9)


# ------------------------------------------------------------------------- refusing wrong files


def test_hot_file_as_baseline_is_refused() -> None:
    with pytest.raises(ValueError, match=r"mixste: the file has the HoT keys .*it is a hot_mixste "):
        load_official(fixture("hot_mixste")["weights"], "mixste")
    with pytest.raises(ValueError, match=r"tpc_mixste: .*hot_mixste checkpoint"):
        load_official(fixture("hot_mixste")["weights"], "tpc_mixste", token_num=9, layer_index=2)


def test_baseline_file_as_hot_is_refused() -> None:
    with pytest.raises(ValueError, match=r"lacks the HoT keys \['pos_embed_token', 'x_token', "
                                         r"'cross_attention\.\*'\]"):
        load_official(fixture("motionbert")["weights"], "hot_motionbert")


def test_file_of_another_family_is_refused() -> None:
    with pytest.raises(ValueError, match=r"motionbert: the file is a mixste-family checkpoint"):
        load_official(fixture("mixste")["weights"], "motionbert")
    with pytest.raises(ValueError, match=r"unknown official variant 'hot_mhformer'"):
        load_official(fixture("mhformer")["weights"], "hot_mhformer")


def test_extra_or_missing_keys_are_refused() -> None:
    weights = fixture("mixste")["weights"]
    with pytest.raises(ValueError, match=r"key\(s\) a mixste checkpoint does not have: \['extra\.weight'\]"):
        load_official({**weights, "extra.weight": torch.zeros(1)}, "mixste")
    partial = {k: v for k, v in weights.items() if k != "TTEblocks.1.mlp.fc2.bias"}
    with pytest.raises(ValueError, match=r"lacks \['backbone\.temporal_blocks\.1\.mlp\.fc2\.bias'\]"):
        load_official(partial, "mixste")


def test_tpc_and_baseline_files_cannot_be_told_apart() -> None:
    """Same keys: both load, the variant name decides what runs (pruned or not)."""
    data = fixture("tpc_mixste")
    as_tpc = load_official(data["weights"], "tpc_mixste", **data["overrides"])
    as_plain = load_official(data["weights"], "mixste")
    assert as_plain(data["x"]).shape == (2, 27, 17, 3)
    assert as_tpc(data["x"]).shape == (2, 9, 17, 3)


def test_frame_count_mismatch_names_expected_and_found() -> None:
    with pytest.raises(ValueError, match=r"expected frames=243, the checkpoint has 27 frames "
                                         r"\(Temporal_pos_embed\)"):
        load_official(fixture("hot_mixste")["weights"], "hot_mixste", frames=243)
    with pytest.raises(ValueError, match=r"expected frames=81, the checkpoint has 36 frames "
                                         r"\(norm_1\.weight\)"):
        load_official(fixture("mhformer")["weights"], "mhformer", frames=81)
    # internal disagreement: x_token recovers a different number of frames than the model has
    weights = dict(fixture("hot_mixste")["weights"])
    weights["x_token"] = torch.zeros(1, 30, 16)
    with pytest.raises(ValueError, match=r"x_token recovers 30 frames but Temporal_pos_embed has 27"):
        load_official(weights, "hot_mixste")


def test_token_count_mismatch_names_expected_and_found() -> None:
    with pytest.raises(ValueError, match=r"expected token_num=81, the checkpoint keeps 9 tokens "
                                         r"\(pos_embed_token\)"):
        load_official(fixture("hot_motionbert")["weights"], "hot_motionbert", token_num=81)
    with pytest.raises(ValueError, match=r"expected layer_index=7, the checkpoint prunes before layer 2"):
        load_official(fixture("hot_motionagformer")["weights"], "hot_motionagformer", layer_index=7)
    weights = dict(fixture("hot_motionagformer")["weights"])
    weights["pos_embed_token"] = torch.zeros(1, 8, 16)
    with pytest.raises(ValueError, match=r"pos_embed_token keeps 8 tokens but the pruned layers' "
                                         r"temporal-GCN BatchNorms have 9"):
        load_official(weights, "hot_motionagformer")


def test_bad_override_and_bad_source() -> None:
    weights = fixture("mixste")["weights"]
    with pytest.raises(ValueError, match=r"unknown keyword\(s\) \['depth'\]"):
        load_official(weights, "mixste", depth=3)
    with pytest.raises(ValueError, match=r"tie_break must be one of \('deterministic', 'official'\)"):
        load_official(fixture("hot_mixste")["weights"], "hot_mixste", tie_break="random")
    with pytest.raises(ValueError, match=r"mixste does not prune: \['token_num'\]"):
        load_official(weights, "mixste", token_num=9)
    with pytest.raises(ValueError, match=r"none of the wrapper keys"):
        read_state_dict({"epoch": 3, "lr": 0.1})
    with pytest.raises(FileNotFoundError, match=r"does not exist"):
        read_state_dict("/nonexistent/model.pth")


def test_file_with_pickled_objects_is_not_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "with_object.pth"
    torch.save({"model_pos": {"a": torch.zeros(1)}, "extra": Path("x")}, path)
    with pytest.raises(ValueError, match=r"with_object.pth holds a pickled pathlib.*PosixPath, which could run code"):
        read_state_dict(path)


def test_numpy_rng_state_of_official_files_is_rebuilt_without_code(tmp_path: Path) -> None:
    """MixSTE-style training scripts save ``np.random.get_state()`` next to the weights."""
    path = tmp_path / "epoch_10.bin"
    torch.save({"model_pos": {"a": torch.ones(2)}, "random_state": np.random.RandomState(3).get_state()}, path)
    assert torch.equal(read_state_dict(path)["a"], torch.ones(2))


# ------------------------------------------------------------------------- wrappers and prefixes


def test_wrappers_prefixes_and_paths_give_the_same_model(tmp_path: Path) -> None:
    data = fixture("hot_motionbert")
    reference = run_seeded(load_official(data["weights"], "hot_motionbert"), data["x"], data["seed"]).pose
    prefixed = {"module." + k: v for k, v in data["weights"].items()}
    path = tmp_path / "model_4000_3980.pth"
    torch.save({"epoch": 7, "model_pos": prefixed}, path)
    sources = [{"state_dict": data["weights"]}, {"model": {"state_dict": prefixed}}, prefixed, str(path)]
    for source in sources:
        model = load_official(source, "hot_motionbert")
        assert torch.equal(run_seeded(model, data["x"], data["seed"]).pose, reference)


def test_read_state_dict_strips_only_a_common_prefix() -> None:
    state = read_state_dict({"module.a": torch.zeros(1), "module.b": torch.ones(1)})
    assert sorted(state) == ["a", "b"]
    state = read_state_dict({"module.a": torch.zeros(1), "b": torch.ones(1)})
    assert sorted(state) == ["b", "module.a"]


# ------------------------------------------------------------------------- key maps (hand-checked)


@pytest.mark.parametrize(("official", "family", "pruning", "ours"), [
    ("STEblocks.3.attn.qkv.weight", "mixste", "none", "backbone.spatial_blocks.3.attn.qkv.weight"),
    ("head.0.bias", "mixste", "hot", "backbone.head_norm.bias"),
    ("pos_embed_token", "mixste", "hot", "token_embeddings.0"),
    ("x_token", "motionbert", "hot", "recoverer.queries"),
    ("cross_attention.linear_v.bias", "mixste", "hot", "recoverer.cross_attention.linear_v.bias"),
    ("Transformer_encoder_2.blocks.1.mlp.fc1.weight", "mhformer", "tpc",
     "backbone.mhg_encoders.1.blocks.1.mlp.fc1.weight"),
    ("norm_3.bias", "mhformer", "none", "backbone.mhg_norms.2.bias"),
    ("embedding_1.1.running_var", "mhformer", "none", "backbone.embeddings.0.1.running_var"),
    ("Transformer_hypothesis.SHR_blocks.1.attn_3.qkv.bias", "mhformer", "none",
     "backbone.blocks.1.attns.2.qkv.bias"),
    # CHI: hypothesis 2's key norm (norm3_22) and hypothesis 3's query norm (norm3_31)
    ("Transformer_hypothesis.CHI_blocks.0.norm3_22.weight", "mhformer", "none",
     "backbone.blocks.2.key_norms.1.weight"),
    ("Transformer_hypothesis.CHI_blocks.0.norm3_31.bias", "mhformer", "none",
     "backbone.blocks.2.query_norms.2.bias"),
    ("regression.0.num_batches_tracked", "mhformer", "none", "backbone.regression_norm.num_batches_tracked"),
    ("blocks_ts.4.mlp_t.fc2.weight", "motionbert", "none", "backbone.ts_blocks.4.temporal.mlp.fc2.weight"),
    ("blocks_st.0.norm1_s.bias", "motionbert", "hot", "backbone.st_blocks.0.spatial.norm1.bias"),
    ("ts_attn.2.weight", "motionbert", "none", "backbone.fusion.2.weight"),
    ("layers.15.graph_temporal.mixer.batch_norm.running_mean", "motionagformer", "hot",
     "backbone.blocks.15.graph_temporal.mixer.batch_norm.running_mean"),
    ("head.weight", "motionagformer", "none", "backbone.pose_head.weight"),
    ("pos_embed_token", "mixste", "none", None),
    ("x_token", "mhformer", "tpc", None),
])
def test_map_key(official: str, family: str, pruning: str, ours: str | None) -> None:
    assert map_key(official, family, pruning) == ours


# ------------------------------------------------------------------------- conversion


def test_convert_writes_a_rebuildable_hotpose_checkpoint(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    data = fixture("hot_mixste")
    source, target = tmp_path / "hot_mixste.pth", tmp_path / "out" / "hot_mixste.ckpt"
    torch.save(data["weights"], source)
    convert_main(["--variant", "hot_mixste", "--input", str(source), "--output", str(target)])
    out = capsys.readouterr().out
    assert "prune to 9 before block 3" in out
    # what the weights cannot show is said, not silently assumed
    assert "note: assumed heads=8 (the official value): the weights do not show the head count" in out

    ckpt = torch.load(target, weights_only=True)
    assert ckpt["hotpose_variant"] == "hot_mixste" and ckpt["source"] == str(source)
    assert all(k.startswith("net.") for k in ckpt["state_dict"])
    model_cfg = ckpt["hyper_parameters"]["model"]
    assert ckpt["hyper_parameters"]["pipeline"] == model_cfg["pipeline"]["name"] == "seq2seq"
    net = build_model(*(OmegaConf.create(model_cfg[k]) for k in MODEL_GROUPS)).eval()
    net.load_state_dict({k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()}, strict=True)
    torch.manual_seed(data["seed"])
    with torch.no_grad():
        pose = net(data["x"]).pose
    assert (pose - data["output"]).abs().max().item() < TOLERANCE


def test_convert_reports_errors_without_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "mixste.pth"
    torch.save(fixture("mixste")["weights"], source)
    target = tmp_path / "o.ckpt"
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--variant", "hot_mixste", "--input", str(source), "--output", str(target)])
    assert exit_info.value.code == 2
    assert "lacks the HoT keys" in capsys.readouterr().err
    assert not target.exists()


def test_convert_says_what_it_cannot_tell_from_the_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = fixture("tpc_mixste")
    source = tmp_path / "model.pth"
    torch.save(data["weights"], source)
    convert_main(["--variant", "mixste", "--input", str(source), "--output", str(tmp_path / "a.ckpt")])
    out = capsys.readouterr().out
    assert "note: not checked: a mixste file holds the same tensors as a tpc_mixste one" in out
    convert_main(["--variant", "tpc_mixste", "--input", str(source), "--output", str(tmp_path / "b.ckpt"),
                  "--heads", "8", *[f"--{k.replace('_', '-')}={v}" for k, v in data["overrides"].items()]])
    out = capsys.readouterr().out
    assert "assumed heads" not in out and "a tpc_mixste file holds the same tensors as a mixste one" in out
    assert "assumed pruning" not in out  # both given
    from hotpose.convert import assumptions

    model = {"backbone": {"net": {"heads": 8}}, "pruner": {"tokens": 61, "layer": 7}}
    notes = assumptions("tpc_mixste", {"heads": 8}, {"hyper_parameters": {"model": model}})
    assert notes[-1].startswith("assumed pruning to 61 tokens before block 7 (official values")


def test_hotpose_checkpoint_keys_match_the_wrapped_net() -> None:
    model = load_official(fixture("motionagformer")["weights"], "motionagformer")
    ckpt = hotpose_checkpoint(model)
    assert set(ckpt["state_dict"]) == {"net." + k for k in model.net.state_dict()}
    assert ckpt["hyper_parameters"]["model"]["backbone"]["net"]["heads"] == 4


def test_converted_checkpoint_loads_into_the_lightning_module(tmp_path: Path) -> None:
    """A converted file is a complete hotpose checkpoint: eval/infer/fine-tuning load it as is."""
    from hotpose.lit import HotposeModule

    data = fixture("tpc_mixste")
    source, target = tmp_path / "tpc_mixste.pth", tmp_path / "tpc_mixste.ckpt"
    torch.save(data["weights"], source)
    convert_main(["--variant", "tpc_mixste", "--input", str(source), "--output", str(target),
                  *[f"--{k.replace('_', '-')}={v}" for k, v in data["overrides"].items()]])
    module = HotposeModule.load_from_checkpoint(target, map_location="cpu", weights_only=True).eval()
    assert module.hparams.pipeline == "seq2frame" and module.hparams.flip_reselect is False
    torch.manual_seed(data["seed"])
    with torch.no_grad():
        pose = module(data["x"]).pose
    assert (pose - data["output"]).abs().max().item() < TOLERANCE
