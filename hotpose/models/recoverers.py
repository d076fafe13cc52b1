"""Token recovery for the hourglass: from the kept frames' tokens back to every frame of the clip.

Every recoverer is built as ``factory(dim=c, frames=F)`` and called as::

    recoverer(tokens (b, k, n, c), kept (b, k), frames) -> (b, frames, n, c)

``kept`` holds the input-frame index of each token, sorted in time. :class:`NoRecovery` is the one
exception: it returns the ``k`` tokens unchanged (the hourglass then outputs the kept frames only).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor, nn

from hotpose.models.layers import CrossAttention


def _check_tokens(name: str, tokens: Tensor, kept: Tensor) -> None:
    if tokens.ndim != 4 or kept.shape != tokens.shape[:2]:
        raise ValueError(f"{name}: expected tokens (b, k, n, c) and kept (b, k), got {tuple(tokens.shape)} "
                         f"and {tuple(kept.shape)}")


class TRA(nn.Module):
    """Token Recovering Attention (HoT): ``frames`` learnable queries attend to the kept tokens.

    Per token group (joint): ``q = queries`` (zeros at init), ``out = q + cross_attention(q, x, x)``; no
    norm and no MLP, as in the official model. The kept frame indices are not used: where a token came
    from is only known through the features it carries (and the hourglass's token embedding).

    Args:
        dim: token width ``c``.
        frames: number of recovered frames ``F`` (rows of ``queries``).
        heads: attention heads (8 for MixSTE / MotionBERT, 4 for MotionAGFormer in HoT).
        qkv_bias: bias on ``linear_q/k/v`` (False for MotionAGFormer in HoT).
        init_std: if given, truncated-normal init of the attention Linears with this std and zero
            biases (HoT's MotionBERT initialises them so); else PyTorch's default Linear init.
    """

    def __init__(self, dim: int, frames: int, heads: int = 8, qkv_bias: bool = True,
                 init_std: float | None = None) -> None:
        super().__init__()
        self.frames = frames
        self.queries = nn.Parameter(torch.zeros(1, frames, dim))
        self.cross_attention = CrossAttention(dim, heads, qkv_bias=qkv_bias)
        if init_std is not None:
            for module in self.cross_attention.modules():
                if isinstance(module, nn.Linear):
                    nn.init.trunc_normal_(module.weight, std=init_std)
                    if module.bias is not None:
                        nn.init.zeros_(module.bias)

    def forward(self, tokens: Tensor, kept: Tensor, frames: int) -> Tensor:
        _check_tokens("TRA", tokens, kept)
        if frames != self.frames:
            raise ValueError(f"TRA was built for {self.frames} frames, asked to recover {frames}")
        b, _, n, c = tokens.shape
        x = rearrange(tokens, "b k n c -> (b n) k c")
        q = self.queries.expand(b * n, -1, -1)
        out = q + self.cross_attention(q, x, x)
        return rearrange(out, "(b n) f c -> b f n c", b=b)


def nearest_source(kept: Tensor, frames: int) -> Tensor:
    """For every frame ``t < frames``, the position in ``kept`` of the nearest kept frame (the earlier
    one on a tie): ``kept (b, k)`` sorted → ``(b, frames)`` int64."""
    t = torch.arange(frames, device=kept.device).expand(kept.shape[0], frames).contiguous()
    after = torch.searchsorted(kept.contiguous(), t)  # first kept frame >= t
    last = kept.shape[1] - 1
    hi, lo = after.clamp(max=last), (after - 1).clamp(min=0)
    gap_hi = kept.gather(1, hi) - t
    gap_lo = t - kept.gather(1, lo)
    # hi is behind t only when every kept frame is (after == k); lo is ahead only when after == 0.
    use_hi = (after == 0) | ((after <= last) & (gap_hi < gap_lo))
    return torch.where(use_hi, hi, lo)


def linear_sources(kept: Tensor, frames: int) -> tuple[Tensor, Tensor, Tensor]:
    """Piecewise-linear interpolation in time: for every frame ``t``, positions ``lo, hi`` in ``kept`` and
    weight ``w`` so that ``value(t) = (1 - w) * value[lo] + w * value[hi]``; ``(b, k)`` → 3 × ``(b, frames)``.

    Before the first and after the last kept frame the value is held constant (``lo == hi``, ``w = 0``).
    """
    t = torch.arange(frames, device=kept.device).expand(kept.shape[0], frames).contiguous()
    upto = torch.searchsorted(kept.contiguous(), t, right=True)  # kept frames <= t
    last = kept.shape[1] - 1
    lo, hi = (upto - 1).clamp(0, last), upto.clamp(0, last)
    t_lo, t_hi = kept.gather(1, lo), kept.gather(1, hi)
    span = (t_hi - t_lo).clamp(min=1)
    w = torch.where(hi != lo, (t - t_lo).clamp(min=0) / span, 0.0)
    return lo, hi, w


def _gather_frames(tokens: Tensor, index: Tensor) -> Tensor:
    """``tokens (b, k, n, c)``, ``index (b, f)`` → ``(b, f, n, c)``."""
    return tokens[torch.arange(tokens.shape[0], device=tokens.device)[:, None], index]


class Nearest(nn.Module):
    """Copy each frame's tokens from the nearest kept frame (parameter-free; see :func:`nearest_source`)."""

    def __init__(self, dim: int | None = None, frames: int | None = None) -> None:
        super().__init__()

    def forward(self, tokens: Tensor, kept: Tensor, frames: int) -> Tensor:
        _check_tokens("Nearest", tokens, kept)
        return _gather_frames(tokens, nearest_source(kept, frames))


class Linear(nn.Module):
    """Linear interpolation in time between kept frames, constant beyond the first/last kept frame
    (parameter-free; see :func:`linear_sources`)."""

    def __init__(self, dim: int | None = None, frames: int | None = None) -> None:
        super().__init__()

    def forward(self, tokens: Tensor, kept: Tensor, frames: int) -> Tensor:
        _check_tokens("Linear", tokens, kept)
        lo, hi, w = linear_sources(kept, frames)
        w = w.to(tokens.dtype)[:, :, None, None]
        return _gather_frames(tokens, lo) * (1 - w) + _gather_frames(tokens, hi) * w


class NoRecovery(nn.Module):
    """No recovery: the kept frames' tokens pass through, so the output covers the kept frames only."""

    def __init__(self, dim: int | None = None, frames: int | None = None) -> None:
        super().__init__()

    def forward(self, tokens: Tensor, kept: Tensor, frames: int) -> Tensor:
        return tokens
