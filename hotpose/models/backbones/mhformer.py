"""MHFormer (Li et al., CVPR 2022): multi-hypothesis generation, then per-hypothesis and cross-hypothesis
transformers over time, as the HoT repository builds it (seq2frame, 351 frames in the paper).

Pipeline and seams::

    x (b, f, j, cin) -> 'b (j cin) f'                 the j*cin keypoint coordinates are the tokens,
                                                      each a frames-wide vector
    MHG: three residual encoders over those tokens    -> three hypotheses (b, j*cin, f)
    embeddings (Conv1d k=1) + pos_embeds + dropout    -> tokens (b, f, 3, c)          [embed]
    blocks = [SHR, SHR, CHI] over time, per hypothesis / across hypotheses           [forward_block]
    final LayerNorm over the concatenated 3*c features                               [norm]
    BatchNorm1d + Conv1d(3*c, j*3) -> (b, f, j, 3)                                    [head]

After ``embed`` everything works frame by frame along time, so a pruned clip (fewer frames) simply
runs through the remaining blocks shorter; no module is sized by the frame count after ``embed``.
The token group on dim 2 is the three hypotheses; token selection sees their concatenation
(``frame_features``), as the official TPC-MHFormer clusters ``cat(x1, x2, x3)`` without pooling.

``norm`` applies the final LayerNorm(3*c) of the hypothesis transformer. The official model has no
recovery, so putting the norm before or after a recoverer gives the same result there; we put it
before, like every other backbone (HoT normalises, then recovers).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from einops import rearrange
from torch import Tensor, nn

from hotpose.models.backbones.base import Backbone
from hotpose.models.layers import Attention, CrossAttention, Mlp, TransformerBlock, drop_path, residual

NUM_HYPOTHESES = 3
# The official code switches the hypothesis embedding to Conv+BN+ReLU+Dropout for short clips.
SHORT_CLIP_FRAMES = 27
SHORT_CLIP_EMBED_DROPOUT = 0.25
BLOCK_NORM_EPS = 1e-6  # every LayerNorm inside the encoders and hypothesis blocks
MHG_INPUT_NORM_EPS = 1e-5  # the three LayerNorms in front of the MHG encoders (PyTorch default)


class MHGEncoder(nn.Module):
    """One multi-hypothesis-generation encoder: ``(b, n, d)`` → ``(b, n, d)``.

    ``n`` keypoint-coordinate tokens, each a ``d = frames``-wide vector; learned position embedding,
    dropout, pre-norm transformer blocks, final LayerNorm.
    """

    def __init__(self, tokens: int, dim: int, depth: int, heads: int, mlp_hidden: int, drop: float,
                 drop_path_rate: float) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))
        self.pos_drop = nn.Dropout(drop)
        rates = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, heads, mlp_hidden, qkv_bias=True, drop=drop, drop_path_rate=rate,
                             norm_eps=BLOCK_NORM_EPS)
            for rate in rates
        )
        self.norm = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pos_drop(x + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class SelfHypothesisBlock(nn.Module):
    """SHR block: self-attention over time inside each hypothesis, then one MLP on the concatenation.

    ``(b, f, 3, c)`` → ``(b, f, 3, c)``. The MLP mixes the three hypotheses (width 3*c).
    """

    def __init__(self, dim: int, heads: int, mlp_hidden: int, drop: float, drop_path_rate: float) -> None:
        super().__init__()
        self.attn_norms = nn.ModuleList(nn.LayerNorm(dim, eps=BLOCK_NORM_EPS) for _ in range(NUM_HYPOTHESES))
        self.attns = nn.ModuleList(
            Attention(dim, heads, qkv_bias=True, proj_drop=drop) for _ in range(NUM_HYPOTHESES)
        )
        self.drop_path = drop_path(drop_path_rate)
        self.mlp_norm = nn.LayerNorm(NUM_HYPOTHESES * dim, eps=BLOCK_NORM_EPS)
        self.mlp = Mlp(NUM_HYPOTHESES * dim, mlp_hidden, drop=drop)

    def forward(self, x: Tensor) -> Tensor:
        hyps = [residual(x[:, :, k], self.drop_path(self.attns[k](self.attn_norms[k](x[:, :, k]))))
                for k in range(NUM_HYPOTHESES)]
        return _concat_mlp_residual(self, hyps)


class CrossHypothesisBlock(nn.Module):
    """CHI block: each hypothesis is updated by attention whose queries and keys come from the other two.

    ``(b, f, 3, c)`` → ``(b, f, 3, c)``. Hypothesis ``k`` takes its query from the first other
    hypothesis, its key from the second (in index order) and its value from itself. The updates are
    sequential: hypothesis 1 already sees the updated hypothesis 0, hypothesis 2 sees both updated.
    """

    def __init__(self, dim: int, heads: int, mlp_hidden: int, drop: float, drop_path_rate: float) -> None:
        super().__init__()

        def norms() -> nn.ModuleList:
            return nn.ModuleList(nn.LayerNorm(dim, eps=BLOCK_NORM_EPS) for _ in range(NUM_HYPOTHESES))

        self.query_norms, self.key_norms, self.value_norms = norms(), norms(), norms()
        self.cross_attns = nn.ModuleList(
            CrossAttention(dim, heads, qkv_bias=True, proj_drop=drop) for _ in range(NUM_HYPOTHESES)
        )
        self.drop_path = drop_path(drop_path_rate)
        self.mlp_norm = nn.LayerNorm(NUM_HYPOTHESES * dim, eps=BLOCK_NORM_EPS)
        self.mlp = Mlp(NUM_HYPOTHESES * dim, mlp_hidden, drop=drop)

    def forward(self, x: Tensor) -> Tensor:
        hyps = list(x.unbind(dim=2))
        for k in range(NUM_HYPOTHESES):
            q_src, k_src = (h for h in range(NUM_HYPOTHESES) if h != k)
            update = self.cross_attns[k](self.query_norms[k](hyps[q_src]), self.key_norms[k](hyps[k_src]),
                                         self.value_norms[k](hyps[k]))
            hyps[k] = residual(hyps[k], self.drop_path(update))
        return _concat_mlp_residual(self, hyps)


def _concat_mlp_residual(block: SelfHypothesisBlock | CrossHypothesisBlock, hyps: list[Tensor]) -> Tensor:
    """Stack hypotheses ``3 × (b, f, c)`` → ``(b, f, 3, c)`` and add the MLP on their concatenation."""
    x = torch.stack(hyps, dim=2)
    flat = x.flatten(2)  # hypothesis-major, the same order as torch.cat(hyps, dim=-1)
    flat = residual(flat, block.drop_path(block.mlp(block.mlp_norm(flat))))
    return flat.view_as(x)


def hypothesis_embedding(tokens: int, dim: int, frames: int) -> nn.Module:
    """``(b, tokens, f)`` → ``(b, dim, f)``: a 1x1 convolution, with BN+ReLU+Dropout for short clips."""
    conv = nn.Conv1d(tokens, dim, kernel_size=1)
    if frames > SHORT_CLIP_FRAMES:
        return conv
    return nn.Sequential(conv, nn.BatchNorm1d(dim, momentum=0.1), nn.ReLU(inplace=True),
                         nn.Dropout(SHORT_CLIP_EMBED_DROPOUT))


class MHFormer(Backbone):
    """MHFormer split into HoT's seams; tokens are ``(b, f, 3, dim)`` (the three hypotheses on dim 2).

    Args:
        frames: clip length ``F``; also the MHG encoders' width, so it must be divisible by
            ``mhg_heads``. Clips of at most 27 frames get the official Conv+BN+ReLU+Dropout embedding.
        in_channels: channels per input joint (2 in the paper: x, y).
        num_joints: joints in and out.
        dim: width of each hypothesis in the SHR/CHI transformer.
        heads: attention heads in the SHR/CHI blocks.
        mlp_hidden: hidden width of the SHR/CHI MLPs (they act on the 3*dim concatenation).
        mhg_depth: transformer blocks per MHG encoder.
        mhg_heads: attention heads in the MHG encoders.
        mhg_mlp_ratio: MHG MLP hidden width as a multiple of ``frames``.
        drop: dropout after position embeddings, attention projections and MLPs.
        drop_path: largest stochastic-depth rate (linearly spaced from 0 over each stack).
        block_frames: frames each of the 3 blocks sees (no module depends on it; checked for length).
    """

    paper_prune = (1, 117)

    def __init__(self, frames: int = 351, in_channels: int = 2, num_joints: int = 17, dim: int = 512,
                 heads: int = 8, mlp_hidden: int = 1024, mhg_depth: int = 4, mhg_heads: int = 9,
                 mhg_mlp_ratio: float = 2.0, drop: float = 0.1, drop_path: float = 0.2,
                 block_frames: Sequence[int] | None = None) -> None:
        super().__init__(block_frames)
        if frames < 1 or frames % mhg_heads:
            raise ValueError(
                f"MHFormer: frames={frames} must be a positive multiple of mhg_heads={mhg_heads} "
                f"(the MHG encoders attend over frames-wide tokens with {mhg_heads} heads)"
            )
        if dim % heads:
            raise ValueError(f"MHFormer: dim={dim} is not divisible by heads={heads}")
        if block_frames is not None and len(self._block_frames) != 3:
            raise ValueError(
                f"MHFormer: block_frames needs 3 entries (SHR, SHR, CHI), got {list(block_frames)}"
            )
        self.frames = frames
        self.in_channels = in_channels
        self.num_joints = num_joints
        self.token_dim = dim
        tokens = num_joints * in_channels

        # Multi-hypothesis generation: x_k = x_{k-1} + encoder_k(norm_k(x_{k-1})).
        hyps = range(NUM_HYPOTHESES)
        self.mhg_norms = nn.ModuleList(nn.LayerNorm(frames, eps=MHG_INPUT_NORM_EPS) for _ in hyps)
        self.mhg_encoders = nn.ModuleList(
            MHGEncoder(tokens, frames, mhg_depth, mhg_heads, int(frames * mhg_mlp_ratio), drop, drop_path)
            for _ in hyps
        )
        self.embeddings = nn.ModuleList(hypothesis_embedding(tokens, dim, frames) for _ in hyps)
        self.pos_embeds = nn.ParameterList(nn.Parameter(torch.zeros(1, frames, dim)) for _ in hyps)
        self.pos_drop = nn.Dropout(drop)

        rates = torch.linspace(0, drop_path, 3, device="cpu").tolist()
        self.blocks = nn.ModuleList([
            SelfHypothesisBlock(dim, heads, mlp_hidden, drop, rates[0]),
            SelfHypothesisBlock(dim, heads, mlp_hidden, drop, rates[1]),
            CrossHypothesisBlock(dim, heads, mlp_hidden, drop, rates[2]),
        ])
        self.final_norm = nn.LayerNorm(NUM_HYPOTHESES * dim, eps=BLOCK_NORM_EPS)
        self.regression_norm = nn.BatchNorm1d(NUM_HYPOTHESES * dim, momentum=0.1)
        self.regression_conv = nn.Conv1d(NUM_HYPOTHESES * dim, 3 * num_joints, kernel_size=1)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def embed(self, x: Tensor) -> Tensor:
        """``(b, F, j, cin)`` keypoints → ``(b, F, 3, dim)`` hypothesis tokens."""
        self.check_input(x)
        # Tokens are the joint-major (x, y) coordinates; each is a vector over the whole clip.
        h = rearrange(x, "b f j c -> b (j c) f")
        hyps = []
        for norm, encoder, embedding, pos in zip(self.mhg_norms, self.mhg_encoders, self.embeddings,
                                                 self.pos_embeds):
            h = residual(h, encoder(norm(h)))
            hyps.append(embedding(h).transpose(1, 2) + pos)
        return self.pos_drop(torch.stack(hyps, dim=2))

    def forward_block(self, i: int, x: Tensor) -> Tensor:
        """Block ``i`` (0, 1: SHR; 2: CHI) on ``(b, f_i, 3, dim)``."""
        return self.blocks[i](x)

    def norm(self, x: Tensor) -> Tensor:
        """LayerNorm over the concatenated hypotheses: ``(b, f, 3, dim)`` → same shape."""
        return self.final_norm(x.flatten(2)).view_as(x)

    def frame_features(self, x: Tensor) -> Tensor:
        """``(b, f, 3, dim)`` → ``(b, f, 3*dim)``: the concatenation the official TPC clusters."""
        return x.flatten(2)

    def head(self, x: Tensor) -> Tensor:
        """``(b, f, 3, dim)`` → ``(b, f, j, 3)``; the 3*j output channels are joint-major."""
        y = self.regression_conv(self.regression_norm(x.flatten(2).transpose(1, 2)))
        return rearrange(y, "b (j c) f -> b f j c", j=self.num_joints)
