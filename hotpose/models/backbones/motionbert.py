"""MotionBERT's DSTformer (Zhu et al., ICCV 2023), "train from scratch" configuration, as the HoT
repository builds it (243 frames, width 256, 5 dual-stream blocks, 3 input channels).

Pipeline and seams::

    x (b, f, j, 3) -> joint_embed (Linear 3->c) + spatial_pos_embed (1, j, c)
                   + temporal_pos_embed (1, F, 1, c)                                 [embed]
    block i: st stream = spatial then temporal transformer block,
             ts stream = temporal then spatial transformer block,
             alpha = softmax(fusion[i](cat(st, ts))), x = alpha_0 * st + alpha_1 * ts  [forward_block(i)]
    final_norm (LayerNorm)                                                           [norm]
    pre_logits (Linear c->dim_rep, Tanh) -> head_proj (Linear dim_rep->3)             [head]

Each stream of the official ``Block`` is two pre-norm residual transformer blocks in a row (attention
then MLP over joints, attention then MLP over frames, or the reverse), so a stream here is a pair of
:class:`TransformerBlock` named ``spatial`` and ``temporal``; the official ``norm1_s/attn_s/norm2_s/mlp_s``
map to ``spatial.norm1/attn/norm2/mlp`` and the ``_t`` ones to ``temporal.*``.

Every input frame gets its temporal embedding in ``embed``, before any block, so pruning may happen
before any block, layer 0 included. Input must have exactly ``frames`` frames (no slicing, as in HoT).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hotpose.models.backbones.base import Backbone
from hotpose.models.layers import Linear, TransformerBlock, over_time


class DualStreamBranch(nn.Module):
    """One stream of a DSTformer block: ``spatial`` (over joints) and ``temporal`` (over frames) blocks
    run in ``order`` ("st" or "ts") on ``(b, f, j, c)`` tokens."""

    def __init__(self, order: str, dim: int, heads: int, mlp_hidden: int, qkv_bias: bool, drop: float,
                 attn_drop: float, drop_path_rate: float, norm_eps: float) -> None:
        super().__init__()
        if order not in ("st", "ts"):
            raise ValueError(f"DualStreamBranch: order must be 'st' or 'ts', got {order!r}")
        self.order = order

        def block() -> TransformerBlock:
            return TransformerBlock(dim, heads, mlp_hidden, qkv_bias=qkv_bias, drop=drop, attn_drop=attn_drop,
                                    drop_path_rate=drop_path_rate, norm_eps=norm_eps)

        self.spatial = block()
        self.temporal = block()

    def forward(self, x: Tensor) -> Tensor:
        if self.order == "st":
            return over_time(self.temporal, self.spatial(x))
        return self.spatial(over_time(self.temporal, x))

    def extra_repr(self) -> str:
        return f"order={self.order}"


class MotionBERT(Backbone):
    """DSTformer split into HoT's seams; tokens are ``(b, f, j, dim)``.

    Args:
        frames: clip length ``F`` (MotionBERT's maxlen; input must have exactly F frames).
        in_channels: channels per input joint (3: x, y, confidence).
        num_joints: joints in and out.
        dim: token width (dim_feat).
        depth: number of dual-stream blocks.
        heads: attention heads.
        mlp_hidden: MLP hidden width.
        dim_rep: width of the Tanh representation layer before the head.
        qkv_bias: bias on the fused qkv projections.
        drop: dropout after the positional embeddings, attention projections and MLPs.
        attn_drop: dropout on the attention weights.
        drop_path: stochastic-depth rate of the last block (linearly spaced from 0).
        norm_eps: eps of every LayerNorm, the final one included.
        init_std: std of the truncated-normal init of embeddings and Linear weights (biases 0);
            the stream-fusion Linears start at weight 0, bias 0.5 (equal mixing).
        block_frames: frames each block sees (no module depends on it; checked for length).
    """

    paper_prune = (1, 81)

    def __init__(self, frames: int = 243, in_channels: int = 3, num_joints: int = 17, dim: int = 256,
                 depth: int = 5, heads: int = 8, mlp_hidden: int = 1024, dim_rep: int = 512,
                 qkv_bias: bool = True, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 norm_eps: float = 1e-6, init_std: float = 0.02,
                 block_frames: Sequence[int] | None = None) -> None:
        super().__init__(block_frames)
        if frames < 1 or depth < 1:
            raise ValueError(f"MotionBERT: frames={frames} and depth={depth} must be positive")
        if dim % heads:
            raise ValueError(f"MotionBERT: dim={dim} is not divisible by heads={heads}")
        if self._block_frames is not None and len(self._block_frames) != depth:
            raise ValueError(f"MotionBERT: block_frames needs {depth} entries, got {self._block_frames}")
        self.frames = frames
        self.in_channels = in_channels
        self.num_joints = num_joints
        self.token_dim = dim

        self.joint_embed = Linear(in_channels, dim)
        self.spatial_pos_embed = nn.Parameter(torch.zeros(1, num_joints, dim))
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, frames, 1, dim))
        self.pos_drop = nn.Dropout(drop)
        rates = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]

        def branch(order: str, rate: float) -> DualStreamBranch:
            return DualStreamBranch(order, dim, heads, mlp_hidden, qkv_bias, drop, attn_drop, rate, norm_eps)

        self.st_blocks = nn.ModuleList(branch("st", rate) for rate in rates)
        self.ts_blocks = nn.ModuleList(branch("ts", rate) for rate in rates)
        self.final_norm = nn.LayerNorm(dim, eps=norm_eps)
        self.pre_logits = nn.Sequential(OrderedDict([("fc", Linear(dim, dim_rep)), ("act", nn.Tanh())]))
        self.head_proj = Linear(dim_rep, 3)
        self.fusion = nn.ModuleList(Linear(2 * dim, 2) for _ in range(depth))
        self._init_weights(init_std)

    def _init_weights(self, std: float) -> None:
        nn.init.trunc_normal_(self.spatial_pos_embed, std=std)
        nn.init.trunc_normal_(self.temporal_pos_embed, std=std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Both streams start equally weighted (softmax of equal logits).
        for fusion in self.fusion:
            nn.init.zeros_(fusion.weight)
            nn.init.constant_(fusion.bias, 0.5)

    @property
    def num_blocks(self) -> int:
        return len(self.st_blocks)

    def embed(self, x: Tensor) -> Tensor:
        """``(b, F, j, cin)`` keypoints → ``(b, F, j, dim)`` joint tokens with joint and frame embeddings."""
        self.check_input(x)
        return self.pos_drop(self.joint_embed(x) + self.spatial_pos_embed + self.temporal_pos_embed)

    def forward_block(self, i: int, x: Tensor) -> Tensor:
        """Dual-stream block ``i`` on ``(b, f_i, j, dim)`` with learned per-token stream weights."""
        st, ts = self.st_blocks[i](x), self.ts_blocks[i](x)
        alpha = self.fusion[i](torch.cat([st, ts], dim=-1)).softmax(dim=-1)
        # ts·α₁ + st·α₀ is st·α₀ + ts·α₁ bit for bit (addition commutes), but it is laid out as ts, i.e.
        # as the official tokens (st ends in the temporal block, a transposed view). TPC's joint pooling
        # sums in memory order: the official layout keeps the official features (and frame choices).
        return (ts * alpha[..., 1:2]).add_(st * alpha[..., 0:1])

    def norm(self, x: Tensor) -> Tensor:
        return self.final_norm(x)

    def head(self, x: Tensor) -> Tensor:
        """``(b, f, j, dim)`` → ``(b, f, j, 3)``."""
        return self.head_proj(self.pre_logits(x))
