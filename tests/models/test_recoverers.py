"""Recoverers: interpolation exact on linear signals, nearest by hand, TRA against explicit attention math."""

from __future__ import annotations

import math

import pytest
import torch

from hotpose.models.recoverers import TRA, Linear, Nearest, NoRecovery, linear_sources, nearest_source


def _tokens_from(values: torch.Tensor, n: int = 3, c: int = 2) -> torch.Tensor:
    """``(b, k)`` scalar values → ``(b, k, n, c)`` tokens carrying them."""
    return values[:, :, None, None].expand(-1, -1, n, c).clone()


def test_nearest_source_by_hand() -> None:
    kept = torch.tensor([[1, 4, 8]])
    # t=6 is 2 from both 4 and 8: the earlier kept frame wins
    assert nearest_source(kept, 10).tolist() == [[0, 0, 0, 1, 1, 1, 1, 2, 2, 2]]


def test_nearest_recoverer_copies_nearest_kept_frame() -> None:
    kept = torch.tensor([[1, 4, 8], [0, 2, 9]])
    tokens = _tokens_from(torch.tensor([[10.0, 40.0, 80.0], [0.0, 20.0, 90.0]]))
    out = Nearest(dim=2, frames=10)(tokens, kept, 10)
    assert out.shape == (2, 10, 3, 2)
    assert out[0, :, 0, 0].tolist() == [10, 10, 10, 40, 40, 40, 40, 80, 80, 80]
    assert out[1, :, 0, 0].tolist() == [0, 0, 20, 20, 20, 20, 90, 90, 90, 90]


def test_linear_sources_by_hand() -> None:
    lo, hi, w = linear_sources(torch.tensor([[2, 5]]), 7)
    assert lo.tolist() == [[0, 0, 0, 0, 0, 1, 1]]
    assert hi.tolist() == [[0, 0, 1, 1, 1, 1, 1]]
    torch.testing.assert_close(w, torch.tensor([[0, 0, 0, 1 / 3, 2 / 3, 0, 0]]))


def test_linear_recoverer_is_exact_on_linear_signals() -> None:
    kept = torch.tensor([[2, 5, 9, 10], [0, 3, 7, 11]])
    slope, offset = torch.tensor([0.5, -2.0]), torch.tensor([1.0, 3.0])
    signal = lambda t: slope[:, None] * t + offset[:, None]  # noqa: E731
    out = Linear(dim=2, frames=12)(_tokens_from(signal(kept.float())), kept, 12)[:, :, 0, 0]
    t = torch.arange(12).float().expand(2, 12)
    inside = (t >= kept[:, :1]) & (t <= kept[:, -1:])
    torch.testing.assert_close(out[inside], signal(t)[inside])
    # constant beyond the first / last kept frame
    assert torch.equal(out[0, :2], signal(kept.float())[0, :1].expand(2))
    assert torch.equal(out[0, 10:], signal(kept.float())[0, -1:].expand(2))


def test_interpolation_keeps_kept_frames_and_passes_gradients() -> None:
    kept = torch.tensor([[0, 3, 4, 8]])
    tokens = torch.randn(1, 4, 2, 5, requires_grad=True)
    for recoverer in (Linear(), Nearest()):
        out = recoverer(tokens, kept, 9)
        assert torch.equal(out[:, kept[0]], tokens)
        out.sum().backward()
        assert tokens.grad is not None and tokens.grad.abs().sum() > 0
        tokens.grad = None


def test_no_recovery_is_identity() -> None:
    tokens = torch.randn(2, 3, 4, 5)
    assert NoRecovery(dim=5, frames=9)(tokens, torch.tensor([[0, 4, 8]] * 2), 9) is tokens


def _explicit_cross_attention(tra: TRA, q: torch.Tensor, x: torch.Tensor, heads: int) -> torch.Tensor:
    ca = tra.cross_attention
    (bn, f, c), d = q.shape, q.shape[-1] // heads
    split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, d).transpose(1, 2)  # noqa: E731
    qh, kh, vh = split(ca.linear_q(q)), split(ca.linear_k(x)), split(ca.linear_v(x))
    attn = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(d), dim=-1)
    return ca.proj((attn @ vh).transpose(1, 2).reshape(bn, f, c))


def test_tra_matches_explicit_formula() -> None:
    b, k, n, c, frames, heads = 2, 3, 4, 8, 7, 2
    tra = TRA(dim=c, frames=frames, heads=heads)
    assert tra.queries.abs().sum() == 0  # zeros at init
    with torch.no_grad():
        tra.queries.normal_()
    tokens = torch.randn(b, k, n, c)
    out = tra(tokens, torch.tensor([[0, 2, 5]] * b), frames)
    assert out.shape == (b, frames, n, c)
    x = tokens.permute(0, 2, 1, 3).reshape(b * n, k, c)
    q = tra.queries.expand(b * n, -1, -1)
    expected = (q + _explicit_cross_attention(tra, q, x, heads)).reshape(b, n, frames, c).permute(0, 2, 1, 3)
    torch.testing.assert_close(out, expected)


def test_tra_options_and_errors() -> None:
    tra = TRA(dim=16, frames=5, heads=4, qkv_bias=False, init_std=0.02)
    assert tra.cross_attention.linear_q.bias is None
    assert tra.cross_attention.proj.bias.abs().sum() == 0
    assert sum(p.numel() for p in tra.parameters()) == 5 * 16 + 4 * 16 * 16 + 16
    with pytest.raises(ValueError, match="built for 5 frames"):
        tra(torch.randn(1, 2, 3, 16), torch.tensor([[0, 1]]), 6)
    with pytest.raises(ValueError, match="expected tokens"):
        tra(torch.randn(1, 2, 16), torch.tensor([[0, 1]]), 5)
