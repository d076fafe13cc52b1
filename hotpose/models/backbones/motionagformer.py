"""MotionAGFormer (Mehraban et al., WACV 2024), the Base layout of the HoT repository's file.

Every block runs two streams on ``(b, f, j, c)`` tokens and fuses them per token:

* attention stream: spatial self-attention over the joints of each frame, then temporal
  self-attention over the frames of each joint;
* graph stream: a spatial GCN over the fixed skeleton, then a temporal GCN whose graph links each
  frame to its ``neighbour_num`` most similar frames (dot product of the joint's features);
* fusion: ``softmax(Linear(cat(attn, graph)))`` gives two weights per token.

Each of the four sub-blocks is a pre-norm residual block with layer scale (MetaFormer style). The
temporal GCN owns a ``BatchNorm1d`` over the *frames* (time is its channel axis), so its size is the
number of frames its block sees: with a pruned schedule the hourglass passes ``block_frames`` and
the blocks after the pruning point are built for the shorter clip.

Seams: ``embed`` = joint embedding + joint position embedding; 16 blocks; ``norm`` = final LayerNorm;
``head`` = Linear + Tanh (``rep_logit``) + Linear to 3D. ``frame_features`` is the base class's mean
over joints (HoT's pooling).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hotpose.data.skeleton import PARENTS
from hotpose.models.backbones.base import Backbone
from hotpose.models.layers import Attention, Linear, Mlp, batched_matmul, drop_path, residual, scale

# The official neighbour lists (MotionAGFormer's GCN, copied by HoT) leave out three directions of
# the bone graph: the pelvis does not aggregate from the left hip, nor the thorax from the two
# shoulders. Kept by default so that official weights compute what they were trained with.
OFFICIAL_MISSING_EDGES: tuple[tuple[int, int], ...] = ((0, 4), (8, 11), (8, 14))


def skeleton_adjacency(parents: Sequence[int], missing: Sequence[tuple[int, int]] = ()) -> Tensor:
    """0/1 bone adjacency ``(j, j)`` from a parent list (root's parent is -1); no self loops.

    ``adj[i, k] = 1`` means node ``i`` aggregates from node ``k``. Both directions of every bone are
    set, then the ``(i, k)`` pairs in ``missing`` are removed (the official graph is directed).
    """
    edges = {pair for child, parent in enumerate(parents) if parent >= 0
             for pair in ((child, parent), (parent, child))}
    for pair in missing:
        if tuple(pair) not in edges:
            raise ValueError(
                f"skeleton_adjacency: {tuple(pair)} to remove is not a bone of parents {list(parents)}"
            )
        edges.remove(tuple(pair))
    # Built on the CPU from Python data, so that it also works under a meta-device context.
    adj = torch.zeros(len(parents), len(parents), device="cpu")
    for i, k in edges:
        adj[i, k] = 1.0
    return adj


def normalize_adjacency(adj: Tensor) -> Tensor:
    """``D^-1/2 A D^-1/2`` with ``D`` the row sums (out-degrees) of ``A``; works on ``(..., n, n)``.

    The temporal similarity graph is not symmetric; the official GCN still scales both sides by the
    row degrees, and so do we. Every node must have at least one neighbour.
    """
    inv_sqrt = adj.sum(dim=-1) ** -0.5
    return inv_sqrt.unsqueeze(-1) * adj * inv_sqrt.unsqueeze(-2)


def similarity_adjacency(x: Tensor, neighbours: int) -> Tensor:
    """Link each of ``t`` nodes to its ``neighbours`` most similar nodes: ``(m, t, c)`` → ``(m, t, t)`` 0/1.

    Similarity is the dot product. A node counts itself if it is among its own top ``neighbours``
    (it usually is, not always); ties at the threshold are all kept, so a row may have more ones.
    """
    if x.shape[-2] < neighbours:
        raise ValueError(f"temporal GCN: {neighbours} neighbours requested but the clip has only "
                         f"{x.shape[-2]} frames")
    similarity = batched_matmul(x, x.transpose(-1, -2))
    return (similarity >= kth_largest(similarity, neighbours)).to(x.dtype)


# Up to this k, k-1 rounds of argmax + masking beat torch.topk (8.3 → 4.7 ms on MotionAGFormer's
# 17 x 243 x 243 similarities at 1 thread, AMD EPYC); topk's cost grows less with k.
_MASKING_MAX_K = 8


def kth_largest(x: Tensor, k: int) -> Tensor:
    """``x.topk(k, dim=-1).values[..., -1:]``: the k-th largest value of each row, duplicates counted.

    For small ``k`` by removing the row maximum (one element, the first of equal ones) ``k - 1``
    times, in float32 (exact for bfloat16/float16 values, whose topk is slower): the same values as
    topk, NaN counted largest as topk does.
    """
    if not 1 <= k <= x.shape[-1]:
        raise ValueError(f"kth_largest: k={k} outside 1..{x.shape[-1]} (the row length)")
    if k > _MASKING_MAX_K or x.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return x.topk(k, dim=-1).values[..., -1:]
    with torch.no_grad():
        rest = x.to(torch.float32, copy=True)
        for _ in range(k - 1):
            rest.scatter_(-1, rest.argmax(dim=-1, keepdim=True), float("-inf"))
        return rest.amax(dim=-1, keepdim=True).to(x.dtype)


class GraphConv(nn.Module):
    """Residual GCN mixer on ``(b, f, j, c)``: ``relu(x + BN(Â V(x) + U(x)))``.

    ``spatial``: nodes are the joints of each frame, ``Â`` is the normalised H36M skeleton (fixed;
    the official directed neighbour lists unless ``symmetric_skeleton``), BN runs over the ``j``
    joints. ``temporal``: nodes are the frames of each joint, ``Â`` is the
    normalised similarity graph recomputed from the input, BN runs over the ``nodes`` frames.
    """

    def __init__(self, dim: int, nodes: int, mode: str, neighbour_num: int = 4,
                 symmetric_skeleton: bool = False) -> None:
        super().__init__()
        if mode not in ("spatial", "temporal"):
            raise ValueError(f"GraphConv mode must be 'spatial' or 'temporal', got {mode!r}")
        self.mode = mode
        self.neighbour_num = neighbour_num
        self.U = Linear(dim, dim)
        self.V = Linear(dim, dim)
        self.batch_norm = nn.BatchNorm1d(nodes)
        self.relu = nn.ReLU()
        # He-normal U/V weights, as the official GCN initialises them.
        nn.init.normal_(self.U.weight, 0.0, math.sqrt(2.0 / dim))
        nn.init.normal_(self.V.weight, 0.0, math.sqrt(2.0 / dim))
        if mode == "spatial":
            # Not a checkpoint entry (the official keeps it as a plain attribute); it follows .to(device).
            missing = () if symmetric_skeleton else OFFICIAL_MISSING_EDGES
            skeleton = normalize_adjacency(skeleton_adjacency(PARENTS, missing))
            self.register_buffer("skeleton", skeleton, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        b, f, j, c = x.shape
        if self.mode == "spatial":
            nodes = x.reshape(b * f, j, c)
            adj = self.skeleton
        else:
            nodes = x.transpose(1, 2).reshape(b * j, f, c)
            adj = normalize_adjacency(similarity_adjacency(nodes, self.neighbour_num))
        mixed = adj @ self.V(nodes) if self.mode == "spatial" else batched_matmul(adj, self.V(nodes))
        out = self.relu(nodes + self.batch_norm(mixed + self.U(nodes)))
        if self.mode == "spatial":
            return out.reshape(b, f, j, c)
        return out.reshape(b, j, f, c).transpose(1, 2)


class TemporalAttention(Attention):
    """Self-attention over the frames of each joint: ``(b, f, j, c)`` → same."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class LayerScaleBlock(nn.Module):
    """``x + ls1 * mixer(norm1(x))`` then ``x + ls2 * mlp(norm2(x))`` (per-channel layer scales)."""

    def __init__(self, dim: int, mixer: nn.Module, mlp_ratio: float, drop: float, drop_path_rate: float,
                 layer_scale_init: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = drop_path(drop_path_rate)
        self.layer_scale_1 = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.layer_scale_2 = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: Tensor) -> Tensor:
        x = residual(x, self.drop_path(scale(self.mixer(self.norm1(x)), self.layer_scale_1)))
        return residual(x, self.drop_path(scale(self.mlp(self.norm2(x)), self.layer_scale_2)))


class MotionAGFormerBlock(nn.Module):
    """Attention stream and graph stream in parallel, fused by per-token softmax weights.

    ``(b, f, j, c)`` → same; ``frames`` sizes the temporal GCN's BatchNorm and must equal ``f``.
    """

    def __init__(self, dim: int, frames: int, num_joints: int, heads: int, mlp_ratio: float, qkv_bias: bool,
                 drop: float, attn_drop: float, drop_path_rate: float, layer_scale_init: float,
                 neighbour_num: int, symmetric_skeleton: bool = False) -> None:
        super().__init__()

        def sub_block(mixer: nn.Module) -> LayerScaleBlock:
            return LayerScaleBlock(dim, mixer, mlp_ratio, drop, drop_path_rate, layer_scale_init)

        self.att_spatial = sub_block(Attention(dim, heads, qkv_bias, attn_drop, drop))
        self.att_temporal = sub_block(TemporalAttention(dim, heads, qkv_bias, attn_drop, drop))
        self.graph_spatial = sub_block(GraphConv(dim, num_joints, "spatial",
                                                 symmetric_skeleton=symmetric_skeleton))
        self.graph_temporal = sub_block(GraphConv(dim, frames, "temporal", neighbour_num))
        self.fusion = Linear(2 * dim, 2)
        # Equal weights at start: zero weight, equal bias.
        nn.init.zeros_(self.fusion.weight)
        nn.init.constant_(self.fusion.bias, 0.5)

    def forward(self, x: Tensor) -> Tensor:
        x_attn = self.att_temporal(self.att_spatial(x))
        x_graph = self.graph_temporal(self.graph_spatial(x))
        alpha = self.fusion(torch.cat((x_attn, x_graph), dim=-1)).softmax(dim=-1)
        return x_attn * alpha[..., 0:1] + x_graph * alpha[..., 1:2]


class MotionAGFormer(Backbone):
    """MotionAGFormer split into HoT's seams; tokens are ``(b, f, j, dim)``.

    Args:
        frames: clip length ``F``.
        in_channels: channels per input joint (3 in the HoT file: x, y, confidence).
        num_joints: joints in and out (the spatial graph is the H36M skeleton, so 17).
        dim: token width.
        depth: number of MotionAGFormer blocks.
        heads: attention heads (4 in HoT's file; upstream MotionAGFormer-B uses 8).
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        qkv_bias: bias on the fused qkv projection.
        drop, attn_drop, drop_path: dropout rates (drop path is the same in every block).
        layer_scale_init: initial value of the per-channel layer scales.
        neighbour_num: frames each frame links to in the temporal similarity graph (4 in HoT's
            file; upstream Base uses 2).
        symmetric_skeleton: use both directions of every bone in the spatial GCN; the default
            (False) keeps the official neighbour lists, which miss pelvis←l_hip and thorax←shoulders.
        dim_rep: width of the Tanh representation layer before the 3D head.
        out_channels: output channels per joint.
        block_frames: frames each block sees (``depth`` entries); sizes the temporal-GCN BatchNorms.
    """

    paper_prune = (7, 81)

    def __init__(self, frames: int = 243, in_channels: int = 3, num_joints: int = 17, dim: int = 128,
                 depth: int = 16, heads: int = 4, mlp_ratio: float = 4.0, qkv_bias: bool = False,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 layer_scale_init: float = 1e-5, neighbour_num: int = 4, symmetric_skeleton: bool = False,
                 dim_rep: int = 512,
                 out_channels: int = 3, block_frames: Sequence[int] | None = None) -> None:
        super().__init__(block_frames)
        if num_joints != len(PARENTS):
            raise ValueError(f"MotionAGFormer: the spatial graph is the {len(PARENTS)}-joint H36M skeleton, "
                             f"got num_joints={num_joints}")
        if block_frames is not None:
            bad = [n for n in self._block_frames if not neighbour_num <= n <= frames]
            if len(self._block_frames) != depth or bad:
                raise ValueError(
                    f"MotionAGFormer: block_frames must have depth={depth} entries, each between "
                    f"neighbour_num={neighbour_num} and frames={frames}; got {list(block_frames)}"
                )
        self.frames = frames
        self.in_channels = in_channels
        self.num_joints = num_joints
        self.token_dim = dim
        self.joints_embed = Linear(in_channels, dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_joints, dim))
        self.blocks = nn.ModuleList(
            MotionAGFormerBlock(dim, self.block_frames(i), num_joints, heads, mlp_ratio, qkv_bias, drop,
                                attn_drop, drop_path, layer_scale_init, neighbour_num, symmetric_skeleton)
            for i in range(depth)
        )
        self.final_norm = nn.LayerNorm(dim)
        self.rep_logit = nn.Sequential(OrderedDict([("fc", Linear(dim, dim_rep)), ("act", nn.Tanh())]))
        self.pose_head = Linear(dim_rep, out_channels)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def embed(self, x: Tensor) -> Tensor:
        """``(b, f, j, cin)`` keypoints → ``(b, f, j, dim)`` tokens (any ``f`` ≤ ``frames``)."""
        if x.ndim != 4 or tuple(x.shape[2:]) != (self.num_joints, self.in_channels):
            raise ValueError(
                f"MotionAGFormer.embed expects input (b, f, {self.num_joints}, {self.in_channels}) "
                f"(b, frames, joints, channels), got shape {tuple(x.shape)}"
            )
        return self.joints_embed(x) + self.pos_embed

    def forward_block(self, i: int, x: Tensor) -> Tensor:
        """Block ``i`` on ``(b, f_i, j, dim)``; ``f_i`` must be the ``block_frames(i)`` it was built for."""
        if x.shape[1] != self.block_frames(i):
            raise ValueError(
                f"MotionAGFormer block {i} was built for {self.block_frames(i)} frames (its temporal-GCN "
                f"BatchNorm is sized by block_frames) but got {x.shape[1]} frames, shape {tuple(x.shape)}"
            )
        return self.blocks[i](x)

    def norm(self, x: Tensor) -> Tensor:
        return self.final_norm(x)

    def head(self, x: Tensor) -> Tensor:
        """``(b, f, j, dim)`` → ``(b, f, j, out_channels)``."""
        return self.pose_head(self.rep_logit(x))
