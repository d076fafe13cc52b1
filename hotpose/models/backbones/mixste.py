"""MixSTE (Zhang et al., CVPR 2022): alternating spatial (over joints) and temporal (over frames)
transformer blocks, seq2seq, in the layout the HoT repository uses (243 frames in the paper).

Pipeline and seams::

    x (b, f, j, cin) -> joint_embed (Linear cin->c) + spatial_pos_embed (1, j, c)   [embed]
    pair i:  spatial_blocks[i] over joints -> spatial_norm                           [forward_block(i)]
             (pair 0 only) + temporal_pos_embed (1, F, c)
             temporal_blocks[i] over frames -> temporal_norm
    head_norm (LayerNorm, eps 1e-5) -> head_proj (Linear c->3) -> (b, f, j, 3)        [head]

As in the official model there is exactly one ``spatial_norm`` and one ``temporal_norm``, shared by
all pairs and re-applied after every block; ``norm`` is the identity (the head has its own norm).

The temporal positional embedding is added after spatial block 0 and its norm, before temporal
block 0 (the official order; adding it in ``embed`` would change the result because the spatial
block and norm are not linear). Consequently pair 0 always needs all ``frames`` frames: pruning
before pair 0 (HoT layer 0) is refused at construction with a ValueError. Prune at layer >= 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hotpose.models.backbones.base import Backbone
from hotpose.models.layers import Linear, TransformerBlock, over_time


class MixSTE(Backbone):
    """MixSTE split into HoT's seams; tokens are ``(b, f, j, dim)``.

    Args:
        frames: clip length ``F`` (size of ``temporal_pos_embed``; input must have exactly F frames).
        in_channels: channels per input joint (2: x, y).
        num_joints: joints in and out.
        dim: token width ``c``.
        depth: number of (spatial, temporal) block pairs.
        heads: attention heads in every block.
        mlp_hidden: MLP hidden width in every block.
        qkv_bias: bias on the fused qkv projections.
        drop: dropout after the positional embeddings, attention projections and MLPs.
        attn_drop: dropout on the attention weights.
        drop_path: stochastic-depth rate of the last pair; pair ``i`` uses
            ``linspace(0, drop_path, depth)[i]`` for both of its blocks.
        block_norm_eps: eps of the LayerNorms inside blocks and of the shared spatial/temporal norms.
        head_norm_eps: eps of the LayerNorm in the regression head.
        block_frames: frames each pair sees; pair 0 must see all ``frames``.
    """

    paper_prune = (3, 81)

    def __init__(self, frames: int = 243, in_channels: int = 2, num_joints: int = 17, dim: int = 512,
                 depth: int = 8, heads: int = 8, mlp_hidden: int = 1024, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.1,
                 block_norm_eps: float = 1e-6, head_norm_eps: float = 1e-5,
                 block_frames: Sequence[int] | None = None) -> None:
        super().__init__(block_frames)
        if frames < 1 or depth < 1:
            raise ValueError(f"MixSTE: frames={frames} and depth={depth} must be positive")
        if dim % heads:
            raise ValueError(f"MixSTE: dim={dim} is not divisible by heads={heads}")
        if self._block_frames is not None:
            if len(self._block_frames) != depth:
                raise ValueError(f"MixSTE: block_frames needs {depth} entries (one per pair), "
                                 f"got {self._block_frames}")
            if self._block_frames[0] != frames:
                raise ValueError(
                    f"MixSTE: pair 0 must see all {frames} frames (block_frames[0]={self._block_frames[0]}): "
                    "the temporal positional embedding is added inside pair 0, so pruning at layer 0 is "
                    "not supported; prune at layer >= 1"
                )
        self.frames = frames
        self.in_channels = in_channels
        self.num_joints = num_joints
        self.token_dim = dim

        self.joint_embed = Linear(in_channels, dim)
        self.spatial_pos_embed = nn.Parameter(torch.zeros(1, num_joints, dim))
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, frames, dim))
        self.pos_drop = nn.Dropout(drop)

        # Pure-Python linspace: the same rates as torch.linspace(...).tolist(), without a tensor.
        rates = [drop_path * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]

        def block(rate: float) -> TransformerBlock:
            return TransformerBlock(dim, heads, mlp_hidden, qkv_bias=qkv_bias, drop=drop, attn_drop=attn_drop,
                                    drop_path_rate=rate, norm_eps=block_norm_eps)

        self.spatial_blocks = nn.ModuleList(block(rate) for rate in rates)
        self.temporal_blocks = nn.ModuleList(block(rate) for rate in rates)
        self.spatial_norm = nn.LayerNorm(dim, eps=block_norm_eps)
        self.temporal_norm = nn.LayerNorm(dim, eps=block_norm_eps)
        self.head_norm = nn.LayerNorm(dim, eps=head_norm_eps)
        self.head_proj = Linear(dim, 3)

    @property
    def num_blocks(self) -> int:
        return len(self.spatial_blocks)

    def embed(self, x: Tensor) -> Tensor:
        """``(b, F, j, cin)`` keypoints → ``(b, F, j, dim)`` joint tokens."""
        self.check_input(x)
        return self.pos_drop(self.joint_embed(x) + self.spatial_pos_embed)

    def forward_block(self, i: int, x: Tensor) -> Tensor:
        """Pair ``i`` on ``(b, f_i, j, dim)``: spatial block + shared norm, temporal block + shared norm."""
        x = self.spatial_norm(self.spatial_blocks[i](x))
        if i == 0:
            if x.shape[1] != self.frames:
                raise ValueError(f"MixSTE pair 0 needs all {self.frames} frames, got {x.shape[1]} "
                                 "(pruning before pair 0 is not supported)")
            x = self.pos_drop(x + self.temporal_pos_embed[:, :, None, :])
        return self.temporal_norm(over_time(self.temporal_blocks[i], x))

    def frame_features(self, x: Tensor) -> Tensor:
        """The default joint pooling, on the memory layout the official MixSTE pools (its tokens come
        from a ``(b n) f c`` tensor): the layout decides the summation order, and so the last bits."""
        return super().frame_features(x.transpose(1, 2).contiguous().transpose(1, 2))

    def head(self, x: Tensor) -> Tensor:
        """``(b, f, j, dim)`` → ``(b, f, j, 3)``."""
        return self.head_proj(self.head_norm(x))
