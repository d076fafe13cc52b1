"""FLOP counter: checked against analytic counts worked out by hand for small modules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hotpose.flops import (
    attention_macs,
    cdist_macs,
    conv_macs,
    count_flops,
    count_parameters,
    linear_macs,
    mean_macs,
    pool_macs,
)
from hotpose.models.layers import CrossAttention, TransformerBlock

# one pre-norm block, B=2, N=81, d=64, MLP 4d: B*(12*N*d^2 + 2*N^2*d) MACs
B, N, D = 2, 81, 64
LINEAR_MACS = B * 12 * N * D * D
ATTENTION_MACS = B * 2 * N * N * D


def test_block_analytic_formula_numbers() -> None:
    # the figures quoted for this block in the reference notes (fvcore B-d)
    assert LINEAR_MACS == 7_962_624
    assert ATTENTION_MACS == 1_679_616
    assert LINEAR_MACS + ATTENTION_MACS == 9_642_240


def test_transformer_block_matches_analytic_count() -> None:
    block = TransformerBlock(D, heads=8, mlp_hidden=4 * D)
    out = count_flops(block, torch.randn(B, N, D))
    layer_norm_macs = 2 * 5 * B * N * D  # two affine LayerNorms, 5 per element
    assert out["paper_by_op"] == {"linear": 2 * LINEAR_MACS}
    assert out["paper_flops"] == 2 * LINEAR_MACS
    assert out["full_by_op"] == {"linear": 2 * LINEAR_MACS, "attention": 2 * ATTENTION_MACS,
                                 "norm": 2 * layer_norm_macs}
    assert out["full_flops"] == 2 * (LINEAR_MACS + ATTENTION_MACS + layer_norm_macs)
    assert out["paper_gflops"] == pytest.approx(2 * LINEAR_MACS / 1e9)
    # per-module breakdown: qkv is 3*N*d^2 per sample
    assert out["by_module"]["attn.qkv"] == 2 * B * 3 * N * D * D
    assert out["by_module"]["attn"] == 2 * (B * 4 * N * D * D + ATTENTION_MACS)
    assert out["params"] == count_parameters(block) == 12 * D * D + 13 * D  # weights + biases + 2 LN
    assert "gelu" in out["uncounted_ops"]


class ExplicitAttention(nn.Module):
    """The official code's ``q @ kᵀ → softmax → @ v``: must count the same as SDPA in *full*."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1)).softmax(-1)
        return (attn @ v).transpose(1, 2).reshape(b, n, c)


def test_explicit_matmul_attention_equals_sdpa() -> None:
    explicit = count_flops(ExplicitAttention(D, 8), torch.randn(B, N, D))
    assert explicit["full_by_op"]["matmul"] == 2 * ATTENTION_MACS
    assert explicit["paper_flops"] == 2 * B * N * D * 3 * D  # thop misses the products


def test_cross_attention_with_different_lengths() -> None:
    # TRA: 243 queries against 81 kept tokens
    f, k, c = 24, 8, 32
    attn = CrossAttention(c, heads=4)
    q, kv = torch.randn(3, f, c), torch.randn(3, k, c)
    out = count_flops(attn, (q, kv, kv))
    assert out["full_by_op"]["attention"] == 2 * 3 * (f * k * c + f * k * c)
    assert out["paper_by_op"]["linear"] == 2 * 3 * c * c * (f + k + k + f)


def test_conv_batchnorm_pool_follow_thop_0_0_31() -> None:
    model = nn.Sequential(nn.Conv1d(4, 8, 3), nn.BatchNorm1d(8), nn.AdaptiveAvgPool1d(2))
    out = count_flops(model, torch.randn(2, 4, 10))  # conv output (2, 8, 8)
    conv = 2 * 8 * 8 * (4 * 3)
    bias = 2 * 8 * 8
    bn = 2 * (2 * 8 * 8)
    pool = (8 // 2 + 1) * (2 * 8 * 2)
    assert out["paper_by_op"] == {"conv": 2 * conv, "conv_bias": 2 * bias, "batch_norm": 2 * bn,
                                  "avg_pool": 2 * pool}
    assert out["full_flops"] == 2 * (conv + bn + pool)  # the bias add is not a multiply-add
    assert model.training  # the mode is restored


class JointPooling(nn.Module):
    """HoT's pooling over joints, once as the official module and once as ``mean``."""

    def __init__(self, as_module: bool) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool1d(1) if as_module else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, f, j, c) -> (b, f, c)
        if self.pool is None:
            return x.mean(dim=2)
        b, f, j, c = x.shape
        return self.pool(x.permute(0, 1, 3, 2).reshape(b, f * c, j)).reshape(b, f, c)


def test_joint_pooling_counts_like_adaptive_avg_pool() -> None:
    x = torch.randn(1, 9, 17, 16)
    expected = 2 * (17 + 1) * 9 * 16  # thop: (window + 1) per output element, x2
    assert count_flops(JointPooling(True), x)["paper_flops"] == expected
    assert count_flops(JointPooling(False), x)["paper_flops"] == expected


class Selection(nn.Module):
    """DPC-kNN-like selection: cdist and topk are outside the paper convention."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist = torch.cdist(x, x)
        return torch.topk(dist.sum(-1), 3, dim=-1).indices.float()


def test_selection_ops() -> None:
    out = count_flops(Selection(), torch.randn(2, 10, 6))
    assert out["paper_flops"] == 0
    assert out["full_by_op"] == {"cdist": 2 * 2 * 10 * 10 * 6}
    assert out["uncounted_ops"]["topk"] == 1


def test_pure_formulas() -> None:
    assert linear_macs((2, 5, 3), (2, 5, 7)) == 2 * 5 * 3 * 7
    assert attention_macs((2, 4, 10, 8), (2, 4, 6, 8), (2, 4, 6, 5)) == 2 * 4 * 10 * 6 * (8 + 5)
    assert conv_macs((16, 4, 3), (2, 16, 9)) == 2 * 16 * 9 * 12
    assert pool_macs((1, 32, 17), (1, 32, 1), 1) == 18 * 32
    assert pool_macs((1, 3, 8, 8), (1, 3, 2, 4), 2) == (4 * 2 + 1) * 24
    assert mean_macs((2, 9, 17, 4), (2, 9, 4)) == 18 * 72
    assert cdist_macs((3, 10, 4), (3, 7, 4)) == 3 * 10 * 7 * 4


class TupleOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 2, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc(x), F.relu(x)


def test_tuple_output() -> None:
    assert count_flops(TupleOut(), torch.randn(4, 3))["paper_flops"] == 2 * 4 * 3 * 2
    assert count_flops(TupleOut(), [torch.randn(4, 3)])["paper_flops"] == 2 * 4 * 3 * 2


class NoisyScore(nn.Module):
    """Draws tie-breaking noise in forward, as TPC does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.rand(x.shape) * 1e-6


def test_global_rng_is_restored() -> None:
    model, x = NoisyScore(), torch.ones(4, 3)
    state = torch.random.get_rng_state()
    count_flops(model, x)
    assert torch.equal(state, torch.random.get_rng_state())
    model(x)  # the check can fail: a plain forward does advance the RNG
    assert not torch.equal(state, torch.random.get_rng_state())


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="tensor"):
        count_flops(nn.Linear(3, 2), [1, 2])
    with pytest.raises(ValueError, match="nn.Module"):
        count_flops(lambda x: x, torch.ones(1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nn.Module"):
        count_parameters("model")  # type: ignore[arg-type]
