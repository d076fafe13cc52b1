"""MotionBERT (DSTformer): paper parameter count, initialisation, dual-stream math vs explicit attention."""

from __future__ import annotations

import math

import pytest
import torch

from hotpose.models.backbones.motionbert import MotionBERT
from hotpose.models.layers import count_parameters

TINY = dict(frames=6, dim=16, depth=2, heads=2, mlp_hidden=32, dim_rep=24)


def test_paper_parameter_count_and_keys() -> None:
    with torch.device("meta"):
        model = MotionBERT()
    assert count_parameters(model) == 16_001_549
    keys = model.state_dict()
    assert len(keys) == 260
    assert keys["temporal_pos_embed"].shape == (1, 243, 1, 256)
    assert keys["spatial_pos_embed"].shape == (1, 17, 256)
    assert keys["joint_embed.weight"].shape == (256, 3)
    assert keys["st_blocks.4.temporal.attn.qkv.weight"].shape == (768, 256)
    assert keys["ts_blocks.0.spatial.mlp.fc2.weight"].shape == (256, 1024)
    assert keys["fusion.4.weight"].shape == (2, 512)
    assert keys["pre_logits.fc.weight"].shape == (512, 256) and keys["head_proj.weight"].shape == (3, 512)


def test_initialisation() -> None:
    torch.manual_seed(0)
    model = MotionBERT(dim=64, depth=1, mlp_hidden=256, dim_rep=128)
    assert model.fusion[0].weight.abs().sum() == 0 and torch.all(model.fusion[0].bias == 0.5)
    assert model.st_blocks[0].spatial.mlp.fc1.bias.abs().sum() == 0
    assert model.st_blocks[0].spatial.mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.temporal_pos_embed.std().item() == pytest.approx(0.02, rel=0.1)
    assert all(m.eps == 1e-6 for m in model.modules() if isinstance(m, torch.nn.LayerNorm))


def _attention(attn: torch.nn.Module, x: torch.Tensor, heads: int) -> torch.Tensor:
    """Explicit softmax attention over dim -2 of (g, n, c)."""
    g, n, c = x.shape
    q, k, v = attn.qkv(x).reshape(g, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
    return attn.proj((w @ v).transpose(1, 2).reshape(g, n, c))


def _sublayer(block: torch.nn.Module, x: torch.Tensor, over_time: bool, heads: int) -> torch.Tensor:
    """One TransformerBlock on (b, f, j, c): attention over joints, or over frames per joint."""
    b, f, j, c = x.shape
    seq = x.permute(0, 2, 1, 3).reshape(b * j, f, c) if over_time else x.reshape(b * f, j, c)
    seq = seq + _attention(block.attn, block.norm1(seq), heads)
    seq = seq + block.mlp(block.norm2(seq))
    return seq.reshape(b, j, f, c).permute(0, 2, 1, 3) if over_time else seq.reshape(b, f, j, c)


def test_dual_stream_block_matches_explicit_math() -> None:
    model = MotionBERT(**TINY).eval()
    with torch.no_grad():
        for p in model.fusion.parameters():
            p.normal_()  # unequal stream weights
        x = torch.randn(2, 6, 17, 16)
        st_block, ts_block = model.st_blocks[1], model.ts_blocks[1]
        st = _sublayer(st_block.temporal, _sublayer(st_block.spatial, x, False, 2), True, 2)
        ts = _sublayer(ts_block.spatial, _sublayer(ts_block.temporal, x, True, 2), False, 2)
        alpha = torch.softmax(model.fusion[1](torch.cat([st, ts], -1)), -1)
        expected = alpha[..., :1] * st + alpha[..., 1:] * ts
        torch.testing.assert_close(model.forward_block(1, x), expected, atol=1e-5, rtol=1e-5)


def test_streams_start_equally_weighted_and_shapes() -> None:
    model = MotionBERT(**TINY)
    x = torch.randn(2, 6, 17, 16)
    with torch.no_grad():
        mean = (model.st_blocks[0](x) + model.ts_blocks[0](x)) / 2
        torch.testing.assert_close(model.forward_block(0, x), mean)
    y = model(torch.randn(2, 6, 17, 3))
    assert y.shape == (2, 6, 17, 3)
    assert model.forward_block(0, x[:, :3]).shape == (2, 3, 17, 16)  # fewer frames after pruning


def test_bad_input() -> None:
    model = MotionBERT(**TINY)
    with pytest.raises(ValueError, match=r"expects input \(b, 6, 17, 3\)"):
        model(torch.randn(1, 6, 17, 2))
    with pytest.raises(ValueError, match="block_frames needs 2"):
        MotionBERT(**TINY, block_frames=[6])
