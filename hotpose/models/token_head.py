"""A pose-token output head (TokenHMR's stage 2) that replaces any backbone's regression head.

It reads the hourglass's recovered tokens ``(b, f, n, c)`` (``n`` = joints for MixSTE / MotionBERT /
MotionAGFormer, hypotheses for MHFormer: the head does not care) and, per output frame::

    m learned queries (m = the tokenizer's tokens per pose) cross-attend to the n tokens of the frame
    → (b, f, m, h) → MLP → Linear(h → k) logits over the codebook for every token position
    → softmax @ codebook (soft, differentiable codes) → frozen tokenizer decoder → pose (b, f, 17, 3)

The tokenizer (a trained :class:`~hotpose.models.tokenizer.PoseTokenizer`, ``tokenizer_ckpt``) is frozen:
its parameters take no gradient and it stays in eval mode (no codebook update), but gradients flow through
its decoder into the logits, so the head is trained end to end by the pose loss. Optionally a cross-entropy
on the codes of the ground-truth pose (the frozen encoder's nearest codes) is added (``ce_weight``).
With a ``bones`` tokenizer the bone lengths are not tokens: a linear layer regresses them from the queries.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hotpose.models.layers import Linear
from hotpose.models.tokenizer import PoseTokenizer, build_tokenizer, load_tokenizer

NUM_BONES = 16
#: initial bone length (metres) of the length regressor of a ``bones`` tokenizer
_INITIAL_BONE_LENGTH = 0.25


def masked_mean(values: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of ``values (b, f)`` over the frames where ``valid (b, f)``; all of them without a mask."""
    if valid is None:
        return values.mean()
    m = valid.to(values.dtype)
    return (values * m).sum() / m.sum().clamp_min(1.0)


class TokenHead(nn.Module):
    """Codebook logits per token position → soft decoding through a frozen tokenizer (module docstring).

    Built by the hourglass as ``TokenHead(dim=c, joints=17, **config)``.

    Args:
        dim: channel width ``c`` of the backbone's tokens.
        joints: joints of the output pose (must match the tokenizer).
        tokenizer_ckpt: ``tokenizer.pt`` or a ``task=tokenizer`` checkpoint; None builds an *untrained*
            tokenizer from ``tokenizer`` (tests and smoke runs only; a warning says so).
        tokenizer: :class:`PoseTokenizer` keyword arguments for the untrained case.
        hidden: width ``h`` of the queries.
        heads: attention heads of the query cross-attention.
        temperature: softmax temperature of the soft decoding.
        ce_weight: weight of the cross-entropy on ground-truth codes (0: pose loss only, as TokenHMR).
    """

    def __init__(self, dim: int, joints: int = 17, tokenizer_ckpt: str | None = None,
                 tokenizer: Mapping[str, Any] | None = None, hidden: int = 128, heads: int = 4,
                 temperature: float = 1.0, ce_weight: float = 0.0) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"token head: hidden={hidden} must be divisible by heads={heads}")
        if temperature <= 0 or ce_weight < 0:
            raise ValueError(f"token head: temperature must be > 0 and ce_weight >= 0, got {temperature}, {ce_weight}")
        if tokenizer_ckpt:
            self.tokenizer: PoseTokenizer = load_tokenizer(tokenizer_ckpt)
        else:
            warnings.warn("head=token without head.tokenizer_ckpt: using an UNTRAINED tokenizer (fine for tests "
                          "and smoke runs, meaningless otherwise; train one with `python -m hotpose.train "
                          "task=tokenizer`)", stacklevel=2)
            self.tokenizer = build_tokenizer(dict(tokenizer or {}))
        if self.tokenizer.num_joints != joints:
            raise ValueError(f"token head: the tokenizer decodes {self.tokenizer.num_joints} joints, the model "
                             f"outputs {joints}")
        self.tokenizer.requires_grad_(False)
        self.tokenizer.eval()
        self.heads, self.temperature, self.ce_weight = int(heads), float(temperature), float(ce_weight)
        tokens, codes = self.tokenizer.tokens, self.tokenizer.codebook_size
        self.queries = nn.Parameter(torch.randn(tokens, hidden) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.key = Linear(dim, hidden)
        self.value = Linear(dim, hidden)
        self.mlp = nn.Sequential(nn.LayerNorm(hidden), Linear(hidden, 2 * hidden), nn.GELU(),
                                 Linear(2 * hidden, hidden))
        self.classifier = nn.Sequential(nn.LayerNorm(hidden), Linear(hidden, codes))
        self.bone_lengths = None
        if self.tokenizer.representation == "bones":
            self.bone_lengths = Linear(hidden, NUM_BONES)
            nn.init.zeros_(self.bone_lengths.weight)
            nn.init.constant_(self.bone_lengths.bias, math.log(math.expm1(_INITIAL_BONE_LENGTH)))

    def train(self, mode: bool = True) -> TokenHead:
        super().train(mode)
        self.tokenizer.eval()  # frozen: never update its codebook, whatever the trainer does
        return self

    def features(self, t: Tensor) -> Tensor:
        """``(b, f, n, c)`` tokens → one ``h``-vector per frame and token position ``(b, f, m, h)``."""
        if t.ndim != 4 or t.shape[-1] != self.norm.normalized_shape[0]:
            raise ValueError(f"token head expects tokens (b, f, n, {self.norm.normalized_shape[0]}), "
                             f"got {tuple(t.shape)}")
        b, f, n, _ = t.shape
        m, h = self.queries.shape
        d = h // self.heads
        x = self.norm(t).reshape(b * f, n, -1)
        keys = self.key(x).reshape(b * f, n, self.heads, d).transpose(1, 2)  # (bf, heads, n, d)
        values = self.value(x).reshape(b * f, n, self.heads, d).transpose(1, 2)
        queries = self.queries.reshape(m, self.heads, d).transpose(0, 1).expand(b * f, -1, -1, -1)
        pooled = F.scaled_dot_product_attention(queries, keys, values)  # (bf, heads, m, d)
        q = self.queries + pooled.transpose(1, 2).reshape(b, f, m, h)
        return q + self.mlp(q)

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``(b, f, n, c)`` → ``pose (b, f, 17, 3)`` (soft-decoded) and ``logits (b, f, m, k)``."""
        q = self.features(t)
        logits = self.classifier(q)
        lengths = None
        if self.bone_lengths is not None:
            lengths = F.softplus(self.bone_lengths(q.mean(dim=2)))
        return self.tokenizer.decode_logits(logits, lengths, self.temperature), logits

    def loss_terms(self, logits: Tensor, target: Tensor,
                   valid: Tensor | None = None) -> dict[str, tuple[float, Tensor]]:
        """``{"token_ce": (weight, value)}`` when ``ce_weight > 0``: cross-entropy of ``logits (b, f, m, k)``
        against the frozen encoder's codes of ``target (b, f, 17, 3)``, averaged over the real frames."""
        if not self.ce_weight:
            return {}
        if logits.shape[:2] != target.shape[:2]:
            raise ValueError(f"token head: logits {tuple(logits.shape)} and target {tuple(target.shape)} disagree "
                             "on (b, f)")
        with torch.no_grad():
            codes = self.tokenizer.tokenize(target)  # (b, f, m)
        ce = F.cross_entropy(logits.flatten(0, 2), codes.flatten(), reduction="none").view(codes.shape)
        return {"token_ce": (self.ce_weight, masked_mean(ce.mean(dim=-1), valid))}
