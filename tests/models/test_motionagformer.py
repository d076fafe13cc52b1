"""MotionAGFormer backbone: graph math by hand, streams and fusion, pruned schedules, sizes, config."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from hotpose.data.skeleton import PARENTS
from hotpose.models.backbones.motionagformer import (
    OFFICIAL_MISSING_EDGES,
    MotionAGFormer,
    kth_largest,
    normalize_adjacency,
    similarity_adjacency,
    skeleton_adjacency,
)
from hotpose.models.layers import count_parameters

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "backbone" / "motionagformer.yaml"
B, F, DIM = 2, 9, 16

# The neighbour lists of the official GCN (node: nodes it aggregates from), written out as reference.
OFFICIAL_NEIGHBOURS = {0: [1, 7], 1: [2, 0], 2: [3, 1], 3: [2], 4: [5, 0], 5: [6, 4], 6: [5], 7: [0, 8],
                       8: [7, 9], 9: [8, 10], 10: [9], 11: [12, 8], 12: [13, 11], 13: [12], 14: [15, 8],
                       15: [16, 14], 16: [15]}


def tiny(**kw) -> MotionAGFormer:
    kw = {"frames": F, "dim": DIM, "depth": 2, "heads": 2, "neighbour_num": 3, **kw}
    return MotionAGFormer(**kw)


def test_normalize_adjacency_by_hand() -> None:
    adj = torch.tensor([[1.0, 1, 0], [0, 1, 0], [1, 1, 1]])  # directed; row degrees 2, 1, 3
    expected = torch.tensor([
        [1 / 2, 1 / math.sqrt(2), 0],
        [0, 1, 0],
        [1 / math.sqrt(6), 1 / math.sqrt(3), 1 / 3],
    ])
    torch.testing.assert_close(normalize_adjacency(adj), expected)
    torch.testing.assert_close(normalize_adjacency(adj.expand(4, 3, 3)), expected.expand(4, 3, 3))


def test_skeleton_adjacency_official_and_symmetric() -> None:
    official = skeleton_adjacency(PARENTS, OFFICIAL_MISSING_EDGES)
    reference = torch.zeros(17, 17)
    for i, nbrs in OFFICIAL_NEIGHBOURS.items():
        reference[i, nbrs] = 1
    assert torch.equal(official, reference)
    assert official.diagonal().sum() == 0 and official.sum() == 29
    symmetric = skeleton_adjacency(PARENTS)
    assert torch.equal(symmetric, symmetric.T) and symmetric.sum() == 2 * 16
    missing = torch.zeros(17, 17)
    missing[[0, 8, 8], [4, 11, 14]] = 1  # pelvis <- l_hip, thorax <- l_shoulder, thorax <- r_shoulder
    assert torch.equal(symmetric - official, missing)
    with pytest.raises(ValueError, match=r"\(0, 3\) to remove is not a bone"):
        skeleton_adjacency(PARENTS, [(0, 3)])


def test_spatial_gcn_uses_the_normalised_official_graph() -> None:
    gcn = tiny().blocks[0].graph_spatial.mixer
    deg = {i: len(n) for i, n in OFFICIAL_NEIGHBOURS.items()}
    expected = torch.zeros(17, 17)
    for i, nbrs in OFFICIAL_NEIGHBOURS.items():
        for k in nbrs:
            expected[i, k] = 1 / math.sqrt(deg[i] * deg[k])
    torch.testing.assert_close(gcn.skeleton, expected)
    assert "skeleton" not in gcn.state_dict()  # not a checkpoint entry, as in the official model
    sym = tiny(symmetric_skeleton=True).blocks[0].graph_spatial.mixer.skeleton
    torch.testing.assert_close(sym, sym.T)


def test_similarity_adjacency_tiny_cases() -> None:
    x = torch.tensor([[[1.0, 0], [2, 0], [0, 1], [0, 3]]])  # S = x x^T, two blocks
    assert torch.equal(similarity_adjacency(x, 2)[0], torch.tensor(
        [[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]))
    # A node is not forced into its own neighbourhood: row 0 of S = [1, 3, 2] keeps 1 and 2 only.
    x = torch.tensor([[[1.0, 0], [3, 0], [2, 0]]])
    assert torch.equal(similarity_adjacency(x, 2)[0, 0], torch.tensor([0.0, 1, 1]))
    # Ties at the threshold are all kept.
    assert torch.equal(similarity_adjacency(torch.ones(1, 3, 2), 1)[0], torch.ones(3, 3))
    with pytest.raises(ValueError, match="4 neighbours requested but the clip has only 3 frames"):
        similarity_adjacency(torch.ones(1, 3, 2), 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("k", [1, 2, 4, 8, 9])
def test_kth_largest_is_topks_last_value(dtype: torch.dtype, k: int) -> None:
    torch.manual_seed(k)
    x = torch.randn(3, 5, 24).to(dtype)
    x[0, 0, :6] = x[0, 0, 7]  # duplicates of one value are counted one by one, as by topk
    x[1, 1] = x[1, 1].round()  # many ties
    x[2, 2, 3] = float("inf")
    x[2, 3, :2] = float("-inf")
    got = kth_largest(x, k)
    assert got.dtype == dtype and got.shape == (3, 5, 1)
    assert torch.equal(got, x.topk(k, dim=-1).values[..., -1:])


def test_kth_largest_nan_and_bounds() -> None:
    x = torch.tensor([[1.0, float("nan"), 3.0, 2.0], [float("nan"), float("nan"), 0.0, 1.0]])
    for k in (1, 2, 3):
        torch.testing.assert_close(kth_largest(x, k), x.topk(k, dim=-1).values[..., -1:], equal_nan=True)
    for k in (0, 5):
        with pytest.raises(ValueError, match=f"kth_largest: k={k} outside 1..4"):
            kth_largest(x, k)


def test_kth_largest_leaves_input_and_graph_alone() -> None:
    x = torch.randn(2, 6, 6, requires_grad=True)
    before = x.detach().clone()
    assert not kth_largest(x, 3).requires_grad
    assert torch.equal(x.detach(), before)


def test_temporal_gcn_matches_formula() -> None:
    gcn = tiny().blocks[0].graph_temporal.mixer.eval()
    nn.init.normal_(gcn.batch_norm.running_mean)
    nn.init.uniform_(gcn.batch_norm.weight, 0.5, 2.0)
    x = torch.randn(B, F, 17, DIM)
    out = torch.empty_like(x)
    with torch.no_grad():
        for b in range(B):
            for j in range(17):
                seq = x[b, :, j]  # (f, c)
                sim = seq @ seq.T
                adj = (sim >= sim.sort(dim=-1, descending=True).values[:, 2:3]).float()
                deg = adj.sum(-1)
                agg = adj / torch.sqrt(deg[:, None] * deg[None, :]) @ gcn.V(seq) + gcn.U(seq)
                bn = gcn.batch_norm
                agg = (agg - bn.running_mean[:, None]) / torch.sqrt(bn.running_var[:, None] + bn.eps)
                agg = agg * bn.weight[:, None] + bn.bias[:, None]
                out[b, :, j] = torch.relu(seq + agg)
        torch.testing.assert_close(gcn(x), out, rtol=1e-5, atol=1e-5)


def test_streams_mix_the_right_axes_and_fusion_starts_equal() -> None:
    block = tiny().eval().blocks[0]
    x = torch.randn(B, F, 17, DIM)
    bumped = x.clone()
    bumped[:, 0, 0] += 1.0
    with torch.no_grad():
        for name, same_frame in (("att_spatial", True), ("graph_spatial", True), ("att_temporal", False),
                                 ("graph_temporal", False)):
            sub = getattr(block, name)
            changed = (sub(bumped) - sub(x)).abs().amax(dim=-1) > 0  # (b, f, j)
            if same_frame:  # spatial mixing stays inside frame 0
                assert changed[:, 0].any() and not changed[:, 1:].any(), name
            else:  # temporal mixing stays inside joint 0
                assert changed[:, :, 0].any() and not changed[:, :, 1:].any(), name
        attn = block.att_temporal(block.att_spatial(x))
        graph = block.graph_temporal(block.graph_spatial(x))
        torch.testing.assert_close(block(x), (attn + graph) / 2)


def test_official_initial_values() -> None:
    model = tiny()
    block = model.blocks[1]
    assert torch.all(block.fusion.weight == 0) and torch.all(block.fusion.bias == 0.5)
    assert torch.all(block.graph_temporal.layer_scale_2 == 1e-5)
    assert torch.all(model.pos_embed == 0)
    assert model.final_norm.eps == 1e-5 and block.att_spatial.norm1.eps == 1e-5
    assert block.att_spatial.mixer.qkv.bias is None and block.att_spatial.mixer.heads == 2


def test_seam_shapes_and_backward() -> None:
    model = tiny().train()
    tokens = model.embed(torch.randn(B, F, 17, 3))
    assert tokens.shape == (B, F, 17, DIM) and model.num_blocks == 2 and model.token_dim == DIM
    for i in range(model.num_blocks):
        tokens = model.forward_block(i, tokens)
    assert model.frame_features(tokens).shape == (B, F, DIM)
    pose = model.head(model.norm(tokens))
    assert pose.shape == (B, F, 17, 3)
    pose.square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_pruned_schedule_sizes_the_temporal_batchnorm() -> None:
    model = tiny(block_frames=[F, 5]).eval()
    assert model.blocks[0].graph_temporal.mixer.batch_norm.num_features == F
    assert model.blocks[1].graph_temporal.mixer.batch_norm.num_features == 5
    with torch.no_grad():
        tokens = model.forward_block(0, model.embed(torch.randn(B, F, 17, 3)))
        kept = torch.tensor([[0, 2, 4, 6, 8], [1, 2, 3, 4, 5]])
        pruned = model.forward_block(1, tokens[torch.arange(B)[:, None], kept])
        assert model.head(model.norm(pruned)).shape == (B, 5, 17, 3)
        with pytest.raises(ValueError, match="block 1 was built for 5 frames .* got 9 frames"):
            model.forward_block(1, tokens)


def test_paper_parameter_counts() -> None:
    with torch.device("meta"):
        model = MotionAGFormer()
        hot = MotionAGFormer(block_frames=[243] * 7 + [81] * 9)
    assert count_parameters(model) == 11_723_811
    assert len(model.state_dict()) == 1065
    # the 9 pruned blocks lose (243 - 81) BatchNorm weights and biases each
    assert count_parameters(hot) == 11_723_811 - 9 * 2 * (243 - 81)
    assert [b.graph_temporal.mixer.batch_norm.num_features for b in hot.blocks] == [243] * 7 + [81] * 9
    shapes = {k: tuple(v.shape) for k, v in hot.state_dict().items()}
    assert shapes["blocks.15.graph_temporal.mixer.batch_norm.running_mean"] == (81,)
    assert shapes["blocks.0.graph_spatial.mixer.batch_norm.weight"] == (17,)
    assert shapes["blocks.3.att_temporal.mixer.qkv.weight"] == (384, 128)
    assert shapes["pose_head.weight"] == (3, 512) and shapes["rep_logit.fc.weight"] == (512, 128)


def test_config_mirrors_the_constructor() -> None:
    cfg = OmegaConf.load(CONFIG)
    assert (cfg.name, cfg.frames, cfg.in_channels, cfg.prune_layer, cfg.prune_tokens) == (
        "motionagformer", 243, 3, 7, 81)
    assert (cfg.prune_layer, cfg.prune_tokens) == MotionAGFormer.paper_prune
    signature = inspect.signature(MotionAGFormer.__init__).parameters
    params = set(signature) - {"self", "block_frames"}
    assert set(cfg.net) - {"_target_", "_partial_"} == params
    net = OmegaConf.to_container(cfg.net, resolve=True)
    assert all(net[k] == signature[k].default for k in params)
    with torch.device("meta"):
        model = instantiate(cfg.net)(block_frames=[243] * 7 + [81] * 9)
    assert isinstance(model, MotionAGFormer)
    assert model.blocks[7].graph_temporal.mixer.batch_norm.num_features == 81


def test_bad_inputs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="block_frames must have depth=2 entries"):
        tiny(block_frames=[F])
    with pytest.raises(ValueError, match="between neighbour_num=3 and frames=9"):
        tiny(block_frames=[F, 2])
    with pytest.raises(ValueError, match="17-joint H36M skeleton"):
        tiny(num_joints=16)
    with pytest.raises(ValueError, match=r"expects input \(b, f, 17, 3\).*got shape \(2, 9, 17, 2\)"):
        tiny().embed(torch.randn(B, F, 17, 2))
