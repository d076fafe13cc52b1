"""Selection policies: DPC-kNN on hand-checkable 1-D points, centre handling, determinism, official RNG."""

from __future__ import annotations

import math

import pytest
import torch

from hotpose.models.dpc import (
    dpc_knn_scores,
    knn_density,
    official_form_distances,
    pairwise_distances,
    parent_distances,
)
from hotpose.models.pruners import (
    TPC,
    Attention,
    Motion,
    Uniform,
    attention_received,
    feature_motion,
    top_frames,
    uniform_frames,
)

# 1-D points 0, 1, 3, 7 (d = 1, so the 1/sqrt(d) scaling is 1). Nearest other point: 1, 1, 2, 4.
POINTS = torch.tensor([[[0.0], [1.0], [3.0], [7.0]]])
HAND_DENSITY = [math.exp(-0.5), math.exp(-0.5), math.exp(-2.0), math.exp(-8.0)]
# 0 and 1 tie on density; the lower index counts as denser, so 0 is the peak (delta = max distance 7),
# 1's parent is 0 (delta 1), 3's nearest denser point is 1 (delta 2), 7's is 3 (delta 4).
HAND_DELTA = [7.0, 1.0, 2.0, 4.0]


def test_density_and_delta_by_hand() -> None:
    dist = pairwise_distances(POINTS)
    assert dist[0].diagonal().eq(0).all()
    density = knn_density(dist, k=2)
    torch.testing.assert_close(density[0], torch.tensor(HAND_DENSITY))
    delta = parent_distances(dist, density, index_tie_break=True)
    torch.testing.assert_close(delta[0], torch.tensor(HAND_DELTA))
    scores = dpc_knn_scores(POINTS, k=2)
    torch.testing.assert_close(scores[0], torch.tensor([d * r for d, r in zip(HAND_DELTA, HAND_DENSITY)]))


def test_distance_scaled_by_sqrt_dim() -> None:
    # (x, x) in 2-D is sqrt(2) |dx| apart; dividing by sqrt(2) gives the 1-D scores back.
    torch.testing.assert_close(dpc_knn_scores(POINTS.repeat(1, 1, 2)), dpc_knn_scores(POINTS))


def test_knn_density_with_larger_k() -> None:
    # k = 3: self (0) and the two nearest others: for point 3 those are 1 and 0 at distances 2 and 3.
    density = knn_density(pairwise_distances(POINTS), k=3)
    assert density[0, 2].item() == pytest.approx(math.exp(-(0 + 4 + 9) / 3), rel=1e-6)


def test_tpc_selects_cluster_centres_and_keeps_centre() -> None:
    tpc = TPC()
    assert tpc.select(POINTS, 2).tolist() == [[0, 1]]
    assert tpc.select(POINTS, 3).tolist() == [[0, 1, 2]]
    # with the centre 2 forced in, one more pick: the best of the others (point 0)
    assert tpc.select(POINTS, 2, center=2).tolist() == [[0, 2]]
    assert tpc.select(POINTS, 1, center=3).tolist() == [[3]]


PAIRS = torch.tensor([0.0, 1.0, 10.0, 11.0, 20.0, 21.0, 30.0, 31.0]).reshape(1, 8, 1)


def test_deterministic_tpc_breaks_ties_by_index() -> None:
    # Four mutual-nearest pairs, all of equal density: the lower member of each pair is the centre.
    tpc = TPC(tie_break="deterministic")
    torch.manual_seed(1)
    first = tpc.select(PAIRS, 4)
    torch.manual_seed(2)
    assert torch.equal(first, tpc.select(PAIRS, 4))
    assert first.tolist() == [[0, 2, 4, 6]]


def test_deterministic_tpc_is_repeatable_on_random_features() -> None:
    x = torch.randn(3, 40, 8)
    x[:, 1] = x[:, 0]  # duplicates: distance exactly 0
    tpc = TPC()
    kept = tpc.select(x, 13)
    assert torch.equal(kept, tpc.select(x.clone(), 13))
    assert kept.dtype == torch.int64 and kept.shape == (3, 13)
    assert (kept[:, 1:] > kept[:, :-1]).all()


def test_official_tpc_ties_follow_the_seed() -> None:
    tpc = TPC(tie_break="official")
    selections = set()
    for seed in range(6):
        torch.manual_seed(seed)
        kept = tpc.select(PAIRS, 4)
        torch.manual_seed(seed)
        assert torch.equal(kept, tpc.select(PAIRS, 4))  # same seed, same selection
        selections.add(tuple(kept[0].tolist()))
    assert len(selections) > 1  # the random tie-break decides


def _reference_official(x: torch.Tensor, tokens: int, noise: torch.Tensor) -> list[list[int]]:
    """Loop-based DPC-kNN (k = 2) with given density noise: an independent formula."""
    out = []
    for sample, eps in zip(x, noise):
        f, d = sample.shape
        dist = [[float((sample[i] - sample[j]).norm()) / math.sqrt(d) for j in range(f)] for i in range(f)]
        two_nearest = [sorted(row)[:2] for row in dist]
        rho = [math.exp(-(a**2 + b**2) / 2) + float(e) for (a, b), e in zip(two_nearest, eps)]
        top = max(max(row) for row in dist)
        delta = [min([dist[i][j] for j in range(f) if rho[j] > rho[i]], default=top) for i in range(f)]
        score = [a * b for a, b in zip(delta, rho)]
        out.append(sorted(sorted(range(f), key=lambda i: -score[i])[:tokens]))
    return out


def test_official_tpc_draws_noise_once_after_density() -> None:
    x = torch.randn(2, 12, 5)
    torch.manual_seed(7)
    kept = TPC(tie_break="official").select(x, 5)
    torch.manual_seed(7)
    noise = torch.rand(2, 12) * 1e-6  # the one draw the official code makes, shape (b, f)
    assert kept.tolist() == _reference_official(x, 5, noise)
    # the selection advanced the global RNG by exactly that draw
    torch.manual_seed(7)
    TPC(tie_break="official").select(x, 5)
    after = torch.rand(1)
    torch.manual_seed(7)
    torch.rand(2, 12)
    assert torch.equal(after, torch.rand(1))


def test_top_frames_per_sample_centre_and_stable_ties() -> None:
    scores = torch.zeros(2, 6)
    assert top_frames(scores, 3).tolist() == [[0, 1, 2], [0, 1, 2]]
    kept = top_frames(scores, 3, center=torch.tensor([5, 4]))
    assert kept.tolist() == [[0, 1, 5], [0, 1, 4]]


def test_uniform_frames() -> None:
    assert uniform_frames(9, 3).tolist() == [0, 4, 8]
    assert uniform_frames(10, 4, center=4).tolist() == [0, 4, 6, 9]
    kept = uniform_frames(243, 81, center=121)
    assert 121 in kept.tolist() and kept.unique().numel() == 81 and (kept.diff() > 0).all()
    sel = Uniform().select(torch.randn(2, 9, 4), 3, center=torch.tensor([4, 5]))
    assert sel.tolist() == [[0, 4, 8], [0, 5, 8]]


def test_attention_received_by_hand() -> None:
    # frames 0 and 1 attend uniformly (logits all 0), frame 2 attends (almost) only to itself
    x = torch.tensor([[[0.0], [0.0], [10.0]]])
    received = attention_received(x)
    torch.testing.assert_close(received, torch.tensor([[2 / 3, 2 / 3, 2 / 3 + 1]]), atol=1e-6, rtol=0)
    assert Attention().select(x, 1).tolist() == [[2]]


def test_attention_received_matches_explicit_formula() -> None:
    x = torch.randn(2, 7, 3)
    logits = torch.einsum("bid,bjd->bij", x, x) / math.sqrt(3)
    expected = (logits.exp() / logits.exp().sum(-1, keepdim=True)).sum(1)
    torch.testing.assert_close(attention_received(x), expected)


def test_motion_by_hand() -> None:
    x = torch.tensor([[[0.0], [0.0], [5.0], [6.0], [6.0]]])
    torch.testing.assert_close(feature_motion(x), torch.tensor([[0.0, 0.0, 5.0, 1.0, 0.0]]))
    assert Motion().select(x, 2).tolist() == [[2, 3]]
    assert Motion().select(x, 2, center=0).tolist() == [[0, 2]]


@pytest.mark.parametrize("policy", [TPC(), TPC(tie_break="official"), Uniform(), Attention(), Motion()])
def test_every_policy_keeps_centre_sorted(policy) -> None:
    x = torch.randn(3, 27, 6)
    kept = policy.select(x, 9, center=13)
    assert kept.shape == (3, 9) and kept.dtype == torch.int64
    assert (kept[:, 1:] > kept[:, :-1]).all() and (kept == 13).any(dim=1).all()
    kept = policy.select(x, 9, center=torch.tensor([0, 13, 26]))
    assert [13 in row or 0 in row or 26 in row for row in kept.tolist()] == [True] * 3
    assert kept[0].tolist().count(0) == 1 and 13 in kept[1].tolist() and 26 in kept[2].tolist()


def test_selection_has_no_gradient() -> None:
    x = torch.randn(1, 9, 4, requires_grad=True)
    assert not TPC().select(x, 3).requires_grad


@pytest.mark.parametrize("tokens, center", [(0, None), (10, None), (3, 9), (3, -1)])
def test_bad_requests(tokens: int, center: int | None) -> None:
    with pytest.raises(ValueError):
        TPC().select(torch.randn(1, 9, 4), tokens, center)


def test_bad_options() -> None:
    with pytest.raises(ValueError, match="tie_break"):
        TPC(tie_break="random")
    with pytest.raises(ValueError, match="features must be"):
        Motion().select(torch.randn(9, 4), 3)


def _difference_form_selection(x: torch.Tensor, tokens: int, center: int | None = None, k: int = 2) -> torch.Tensor:
    """Deterministic TPC on the coordinate-difference distances (the previous, slower computation)."""
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") / x.shape[-1] ** 0.5
    density = knn_density(dist, k)
    scores = parent_distances(dist, density, index_tie_break=True) * density
    return top_frames(scores, tokens, center, stable=True)


def _tie_cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    dup = torch.randn(2, 30, 16, generator=g)
    dup[:, 10:20] = dup[:, 10:11]  # a run of bit-identical frames (edge padding looks like this)
    blocks = torch.randn(1, 3, 24, generator=g).repeat_interleave(9, dim=1)  # 3 frames, 9 copies each
    grid = torch.arange(20.0).reshape(1, 20, 1).repeat(2, 1, 3)  # equal spacing: every interior frame ties
    offset = grid + 1000.0  # large common offset: cancellation in a naive product form
    return {"pairs": PAIRS, "duplicates": dup, "blocks": blocks, "grid": grid, "offset": offset,
            "constant": torch.full((2, 12, 5), 0.25)}


@pytest.mark.parametrize("case", ["pairs", "duplicates", "blocks", "grid", "offset", "constant"])
def test_product_form_keeps_the_difference_form_selection_on_ties(case: str) -> None:
    x = _tie_cases()[case]
    dist = pairwise_distances(x)
    assert dist.diagonal(dim1=1, dim2=2).eq(0).all()
    assert torch.equal(dist, dist.transpose(1, 2))
    f = x.shape[1]
    for tokens in (1, f // 3, f - 1):
        assert torch.equal(TPC().select(x, tokens), _difference_form_selection(x, tokens)), tokens
        assert torch.equal(TPC().select(x, tokens, center=(f - 1) // 2),
                           _difference_form_selection(x, tokens, center=(f - 1) // 2)), tokens


def test_product_form_ties_are_bit_equal() -> None:
    x = _tie_cases()["duplicates"]
    dist = pairwise_distances(x)
    assert dist[:, 10:20, 10:20].eq(0).all()  # duplicates exactly 0 apart
    assert torch.equal(dist[:, 10], dist[:, 15])  # and exactly as far from every other frame
    grid = pairwise_distances(_tie_cases()["offset"])
    density = knn_density(grid, 2)
    assert density[:, 1:-1].eq(density[:, 1:2]).all()  # interior grid frames tie bit for bit


@pytest.mark.parametrize("shape, k", [((4, 81, 32), 2), ((2, 243, 64), 2), ((3, 40, 8), 3), ((1, 351, 1536), 2)])
def test_product_form_keeps_the_difference_form_selection_on_random_features(shape, k) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    # smooth, video-like features: a random walk over frames on top of a large shared offset
    x = torch.randn(shape, generator=g).cumsum(dim=1) * 0.1 + 3.0
    exact = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") / shape[-1] ** 0.5
    torch.testing.assert_close(pairwise_distances(x), exact, rtol=2e-6, atol=1e-6)
    for tokens in (shape[1] // 3, shape[1] // 9):
        assert torch.equal(TPC(k=k).select(x, tokens), _difference_form_selection(x, tokens, k=k))


def test_product_form_distances_ignore_autocast() -> None:
    x = torch.randn(2, 27, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = pairwise_distances(x)
    assert inside.dtype == torch.float32 and torch.equal(inside, pairwise_distances(x))


def test_official_form_distances_are_cdists_formula_with_a_zero_diagonal() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 60, 48, generator=g).cumsum(dim=1) * 0.1 + 2.0
    fast = official_form_distances(x)
    reference = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist") / 48**0.5
    off = ~torch.eye(60, dtype=torch.bool)
    # float32 product form: the error is a few float32 ulps of |x|^2, relative to the squared distance
    torch.testing.assert_close(fast[:, off].double(), reference[:, off], rtol=1e-4, atol=1e-5)
    assert fast.diagonal(dim1=1, dim2=2).max() <= 1e-15  # sqrt of cdist's 1e-30 floor
    assert fast.dtype == torch.float32


def test_official_tie_break_distances_keep_cdist_in_float32_and_official_kernels() -> None:
    from hotpose.models.layers import fast_cpu_products, official_kernels

    x = torch.randn(2, 40, 16)
    cdist = torch.cdist(x, x) / 4.0
    assert torch.equal(pairwise_distances(x, exact=False), cdist)  # float32: cdist's own kernel
    fast = fast_cpu_products(x)  # False only outside plain eager CPU execution
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = official_form_distances(x) if fast else torch.cdist(x, x) / 4.0
        assert torch.equal(pairwise_distances(x, exact=False), expected)
        with official_kernels():
            assert torch.equal(pairwise_distances(x, exact=False), torch.cdist(x, x) / 4.0)
        few = x[:, :20]  # cdist computes <= 25 frames by coordinate differences: kept
        assert torch.equal(pairwise_distances(few, exact=False), torch.cdist(few, few) / 4.0)
    bf16 = x.bfloat16()
    inside = pairwise_distances(bf16, exact=False)
    assert inside.dtype == torch.bfloat16
    if fast:
        torch.testing.assert_close(inside, official_form_distances(bf16.float()).bfloat16())


def test_official_tie_break_selection_under_bf16_autocast_is_valid_and_close_to_float32() -> None:
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 81, 32, generator=g).cumsum(dim=1) * 0.1
    plain = dpc_knn_scores(x, exact=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = dpc_knn_scores(x, exact=False)
        torch.manual_seed(3)
        kept = TPC(tie_break="official").select(x, 27, center=40)
    assert fast.dtype == torch.float32
    # scores agree except where a tied pair's order moved (then one score drops to its parent distance)
    close = torch.isclose(fast, plain, rtol=1e-4, atol=1e-5)
    assert close.float().mean() > 0.7  # ~0.87 measured; a wrong formula gives ~0
    assert kept.shape == (2, 27) and (kept.diff(dim=1) > 0).all() and (kept == 40).any(dim=1).all()
