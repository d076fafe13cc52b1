"""MHFormer backbone: seams, the MHG/SHR/CHI formulas written out by hand, sizes, config, errors."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from hotpose.models.backbones.mhformer import MHFormer
from hotpose.models.layers import count_parameters

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "backbone" / "mhformer.yaml"
B, F, DIM = 2, 18, 16


def tiny(frames: int = F, **kw) -> MHFormer:
    return MHFormer(frames=frames, dim=DIM, heads=2, mlp_hidden=32, mhg_depth=1, **kw)


def test_seam_shapes_and_backward() -> None:
    model = tiny().train()
    x = torch.randn(B, F, 17, 2)
    tokens = model.embed(x)
    assert tokens.shape == (B, F, 3, DIM)
    assert model.num_blocks == 3 and model.token_dim == DIM
    for i in range(model.num_blocks):
        tokens = model.forward_block(i, tokens)
        assert tokens.shape == (B, F, 3, DIM)
    assert model.frame_features(tokens).shape == (B, F, 3 * DIM)
    pose = model.head(model.norm(tokens))
    assert pose.shape == (B, F, 17, 3)
    pose.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_pruned_frames_run_through_later_blocks() -> None:
    """After a (simulated) prune before block 1 the SHR and CHI blocks run on the kept frames only."""
    model = tiny().eval()
    with torch.no_grad():
        tokens = model.forward_block(0, model.embed(torch.randn(B, F, 17, 2)))
        kept = torch.tensor([[0, 3, 9, 17], [2, 9, 10, 11]])
        pruned = tokens[torch.arange(B)[:, None], kept]
        for i in (1, 2):
            pruned = model.forward_block(i, pruned)
        assert pruned.shape == (B, 4, 3, DIM)
        assert model.head(model.norm(pruned)).shape == (B, 4, 17, 3)


def test_blocks_are_time_permutation_equivariant() -> None:
    """No position enters after ``embed``: permuting frames permutes the outputs of every block."""
    model = tiny().eval()
    tokens = torch.randn(B, 7, 3, DIM)
    perm = torch.randperm(7)
    with torch.no_grad():
        for i in range(model.num_blocks):
            torch.testing.assert_close(model.forward_block(i, tokens[:, perm]),
                                       model.forward_block(i, tokens)[:, perm], rtol=1e-5, atol=1e-5)


def test_embed_matches_the_mhg_formula() -> None:
    """x -> 'b (j c) f' (joint-major, x before y); x_k = x_{k-1} + E_k(LN_k(x_{k-1})); embed; + pos."""
    model = tiny(frames=36).eval()  # > 27 frames: plain 1x1 convolution embeddings
    for p in model.pos_embeds:
        nn.init.normal_(p)
    x = torch.randn(B, 36, 17, 2)
    with torch.no_grad():
        h = x.permute(0, 2, 3, 1).reshape(B, 34, 36)
        assert h[0, 2 * 5 + 1, 7] == x[0, 7, 5, 1]
        expected = []
        for k in range(3):
            h = h + model.mhg_encoders[k](model.mhg_norms[k](h))
            expected.append(model.embeddings[k](h).transpose(1, 2) + model.pos_embeds[k])
        torch.testing.assert_close(model.embed(x), torch.stack(expected, dim=2))


def test_shr_block_matches_formula() -> None:
    block = tiny().eval().blocks[0]
    x = torch.randn(B, 5, 3, DIM)
    with torch.no_grad():
        hyps = [x[:, :, k] + block.attns[k](block.attn_norms[k](x[:, :, k])) for k in range(3)]
        cat = torch.cat(hyps, dim=-1)
        cat = cat + block.mlp(block.mlp_norm(cat))
        expected = torch.stack(cat.split(DIM, dim=-1), dim=2)
        torch.testing.assert_close(block(x), expected)


def test_chi_block_sequential_cross_updates() -> None:
    """x1 += A1(q=x2, k=x3, v=x1); x2 += A2(q=x1', k=x3, v=x2); x3 += A3(q=x1', k=x2', v=x3)."""
    block = tiny().eval().blocks[2]
    x = torch.randn(B, 5, 3, DIM)
    qn, kn, vn, att = block.query_norms, block.key_norms, block.value_norms, block.cross_attns
    with torch.no_grad():
        x1, x2, x3 = x.unbind(dim=2)
        x1 = x1 + att[0](qn[0](x2), kn[0](x3), vn[0](x1))
        x2 = x2 + att[1](qn[1](x1), kn[1](x3), vn[1](x2))
        x3 = x3 + att[2](qn[2](x1), kn[2](x2), vn[2](x3))
        cat = torch.cat([x1, x2, x3], dim=-1)
        cat = cat + block.mlp(block.mlp_norm(cat))
        torch.testing.assert_close(block(x), torch.stack(cat.split(DIM, dim=-1), dim=2))


def test_norm_features_and_head_order() -> None:
    model = tiny().eval()
    nn.init.normal_(model.regression_norm.running_mean)
    tokens = torch.randn(B, 5, 3, DIM)
    cat = torch.cat(tokens.unbind(dim=2), dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(model.frame_features(tokens), cat)
        torch.testing.assert_close(model.norm(tokens).flatten(2), model.final_norm(cat))
        y = model.regression_conv(model.regression_norm(cat.transpose(1, 2)))  # (b, 51, f)
        pose = model.head(tokens)
    # output channel 3*j + c is coordinate c of joint j
    assert torch.equal(pose[1, 4, 6, 2], y[1, 3 * 6 + 2, 4])
    torch.testing.assert_close(pose, y.reshape(B, 17, 3, 5).permute(0, 3, 1, 2))


def test_short_clip_embedding_switch() -> None:
    assert isinstance(tiny(frames=27).embeddings[0], nn.Sequential)
    emb = tiny(frames=27).embeddings[0]
    assert [type(m) for m in emb] == [nn.Conv1d, nn.BatchNorm1d, nn.ReLU, nn.Dropout] and emb[3].p == 0.25
    assert isinstance(tiny(frames=36).embeddings[0], nn.Conv1d)


def test_paper_parameter_count_and_key_shapes() -> None:
    with torch.device("meta"):
        model = MHFormer()
    assert count_parameters(model) == 31_516_125
    sd = model.state_dict()
    assert len(sd) == 273
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["mhg_encoders.2.pos_embed"] == (1, 34, 351)
    assert shapes["mhg_encoders.0.blocks.3.attn.qkv.weight"] == (1053, 351)
    assert shapes["mhg_encoders.0.blocks.0.mlp.fc1.weight"] == (702, 351)
    assert shapes["embeddings.1.weight"] == (512, 34, 1)
    assert shapes["pos_embeds.2"] == (1, 351, 512)
    assert shapes["blocks.1.mlp.fc1.weight"] == (1024, 1536)
    assert shapes["blocks.2.cross_attns.0.linear_q.weight"] == (512, 512)
    assert shapes["final_norm.weight"] == (1536,)
    assert shapes["regression_conv.weight"] == (51, 1536, 1)
    assert "regression_norm.running_var" in sd
    rates = [getattr(b.drop_path, "p", 0.0) for b in model.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    assert model.final_norm.eps == 1e-6 and model.mhg_norms[0].eps == 1e-5


def test_config_mirrors_the_constructor() -> None:
    cfg = OmegaConf.load(CONFIG)
    top = (cfg.name, cfg.frames, cfg.in_channels, cfg.prune_layer, cfg.prune_tokens)
    assert top == ("mhformer", 351, 2, 1, 117)
    assert (cfg.prune_layer, cfg.prune_tokens) == MHFormer.paper_prune
    params = set(inspect.signature(MHFormer.__init__).parameters) - {"self", "block_frames"}
    assert set(cfg.net) - {"_target_", "_partial_"} == params
    defaults = {k: v.default for k, v in inspect.signature(MHFormer.__init__).parameters.items()}
    assert all(OmegaConf.to_container(cfg.net, resolve=True)[k] == defaults[k] for k in params)
    with torch.device("meta"):
        model = instantiate(cfg.net)(block_frames=[351, 117, 117])
    assert isinstance(model, MHFormer) and count_parameters(model) == 31_516_125


def test_bad_inputs_fail_clearly() -> None:
    with pytest.raises(ValueError, match="multiple of mhg_heads=9"):
        MHFormer(frames=20, dim=DIM, heads=2)
    with pytest.raises(ValueError, match="block_frames needs 3 entries"):
        tiny(block_frames=[F, F])
    model = tiny()
    with pytest.raises(ValueError, match=r"expects input \(b, 18, 17, 2\).*got shape \(2, 9, 17, 2\)"):
        model.embed(torch.randn(B, 9, 17, 2))
    with pytest.raises(ValueError, match="got shape"):
        model.embed(torch.randn(B, F, 17, 3))
