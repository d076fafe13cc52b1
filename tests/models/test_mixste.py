"""MixSTE: paper parameter count, official layout (shared norms, temporal embedding order), errors."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from hotpose.models.backbones.mixste import MixSTE
from hotpose.models.layers import count_parameters

TINY = dict(frames=9, dim=16, depth=3, heads=2, mlp_hidden=32)


def test_paper_parameter_count_and_keys() -> None:
    with torch.device("meta"):
        model = MixSTE()
    assert count_parameters(model) == 33_783_811
    keys = model.state_dict()
    assert len(keys) == 204
    assert keys["temporal_pos_embed"].shape == (1, 243, 512)
    assert keys["spatial_blocks.7.attn.qkv.weight"].shape == (1536, 512)
    assert keys["temporal_blocks.0.mlp.fc1.weight"].shape == (1024, 512)
    for name in ("spatial_norm.weight", "temporal_norm.weight", "head_norm.weight", "head_proj.weight"):
        assert name in keys


def test_hyperparameters_follow_paper() -> None:
    with torch.device("meta"):
        model = MixSTE()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 8 * 2 * 2 + 3  # two per block, one shared spatial, one shared temporal, one head
    assert model.head_norm.eps == 1e-5 and model.spatial_norm.eps == 1e-6
    assert model.spatial_blocks[0].norm1.eps == 1e-6
    rates = torch.linspace(0, 0.1, 8)
    for i in range(1, 8):
        assert model.spatial_blocks[i].drop_path.p == pytest.approx(rates[i].item())
        assert model.temporal_blocks[i].drop_path.p == model.spatial_blocks[i].drop_path.p


def _official_order(model: MixSTE, x: torch.Tensor) -> torch.Tensor:
    """The official forward written with the (b f) n c / (b n) f c reshapes."""
    b, f, n, _ = x.shape
    t = rearrange(model.joint_embed(x), "b f n c -> (b f) n c") + model.spatial_pos_embed
    for i in range(model.num_blocks):
        t = model.spatial_norm(model.spatial_blocks[i](t))
        t = rearrange(t, "(b f) n c -> (b n) f c", f=f)
        if i == 0:
            t = t + model.temporal_pos_embed
        t = model.temporal_norm(model.temporal_blocks[i](t))
        t = rearrange(t, "(b n) f c -> (b f) n c", n=n)
    return model.head_proj(model.head_norm(t)).reshape(b, f, n, 3)


def test_forward_matches_official_order() -> None:
    model = MixSTE(**TINY).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.2)  # embeddings are zeros at init: make their placement matter
        x = torch.randn(2, 9, 17, 2)
        torch.testing.assert_close(model(x), _official_order(model, x), atol=1e-5, rtol=1e-5)
        # adding the temporal embedding in embed instead would give a different result
        early = model.embed(x) + model.temporal_pos_embed[:, :, None]
        early = model.spatial_norm(model.spatial_blocks[0](early))
        moved = model.temporal_norm(model.temporal_blocks[0](early.transpose(1, 2)).transpose(1, 2))
        assert not torch.allclose(moved, model.forward_block(0, model.embed(x)), atol=1e-4)


def test_pruned_pairs_run_on_fewer_frames() -> None:
    model = MixSTE(**TINY, block_frames=[9, 4, 4])
    t = model.forward_block(0, model.embed(torch.randn(1, 9, 17, 2)))
    assert model.forward_block(1, t[:, :4]).shape == (1, 4, 17, 16)


def test_layer_zero_pruning_refused() -> None:
    with pytest.raises(ValueError, match="pruning at layer 0 is not supported"):
        MixSTE(**TINY, block_frames=[4, 4, 4])
    with pytest.raises(ValueError, match="needs 3 entries"):
        MixSTE(**TINY, block_frames=[9, 4])


def test_bad_input_and_config() -> None:
    model = MixSTE(**TINY)
    with pytest.raises(ValueError, match=r"expects input \(b, 9, 17, 2\)"):
        model(torch.randn(1, 8, 17, 2))
    with pytest.raises(ValueError, match="not divisible"):
        MixSTE(frames=9, dim=10, heads=3)
