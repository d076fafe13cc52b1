"""DPC-kNN math: the screened deterministic scores are those of the full computation bit for bit, their
bounds hold on hostile features, and the dispatch steps aside wherever the bound's premises fail."""

from __future__ import annotations

import math

import pytest
import torch

from hotpose.models import dpc, layers
from hotpose.models.dpc import (
    dpc_knn_scores,
    knn_density,
    parent_distances,
    product_form_distances,
    screened_dpc_knn_scores,
    screening_applies,
    screening_bounds,
)
from hotpose.models.pruners import TPC, top_frames

needs_onednn = pytest.mark.skipif(not layers._onednn_linear_available(), reason="torch build without oneDNN linear")


def full_scores(x: torch.Tensor, k: int = 2) -> torch.Tensor:
    """Deterministic scores from the whole float64 product-form distance matrix."""
    distances = product_form_distances(x)
    density = knn_density(distances, k)
    return parent_distances(distances, density, index_tie_break=True) * density


def difference_form_scores(x: torch.Tensor, k: int = 2) -> torch.Tensor:
    """Scores of float64 coordinate-difference distances rounded once to the features' dtype: the exact
    distances to 1e-16 relative, independent of both product forms."""
    distances = (torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")
                 / x.shape[-1] ** 0.5).to(x.dtype)
    density = knn_density(distances, k)
    return parent_distances(distances, density, index_tie_break=True) * density


def difference_form_kept(x: torch.Tensor, tokens: int, k: int = 2) -> torch.Tensor:
    return top_frames(difference_form_scores(x, k), tokens)


def walk(shape: tuple[int, int, int], seed: int, step: float = 0.05, offset: float = 0.0) -> torch.Tensor:
    """Video-like features: a random walk over frames (neighbours close, far frames apart)."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randn(shape[0], 1, shape[2], generator=g)
    return start + (torch.randn(shape, generator=g) * step).cumsum(dim=1) + offset


def cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    grid = torch.arange(48.0).reshape(1, 48, 1).repeat(2, 1, 16)  # equal spacing: every interior frame ties
    pairs = walk((1, 40, 24), 1).repeat_interleave(2, dim=1)
    pairs[:, 1::2] += 1e-3 * torch.randn(1, 40, 24, generator=g)  # 40 tight mutual-nearest pairs
    scaled = walk((2, 64, 40), 2) * torch.logspace(-2, 2, 64).reshape(1, 64, 1)  # norms over 4 decades
    random = torch.randn(3, 50, 200, generator=g)  # no structure: all distances alike
    return {"walk": walk((3, 81, 64), 0), "offset": walk((2, 81, 32), 3, offset=1000.0), "grid": grid,
            "grid+offset": grid + 1e4, "pairs": pairs, "scaled": scaled, "random": random,
            "paper size": walk((1, 120, 1536), 4, step=0.02)}


@pytest.mark.parametrize("case", list(cases()))
@pytest.mark.parametrize("k", [2, 3])
def test_screened_scores_are_the_full_scores_bit_for_bit(case: str, k: int) -> None:
    x = cases()[case]
    screened = screened_dpc_knn_scores(x, k)
    assert screened is not None, "these cases need few exact pairs"
    assert screened.dtype == x.dtype
    assert torch.equal(screened, difference_form_scores(x, k))
    if case != "scaled":
        # The full product form agrees to its float64 cancellation error, ~1e-16 of the squared norms;
        # with norms over 4 decades that reaches float32 rounding for the smallest distances.
        assert torch.equal(screened, full_scores(x, k))
    f = x.shape[1]
    for tokens in (f // 3, f // 9):
        assert torch.equal(top_frames(screened, tokens), difference_form_kept(x, tokens, k))


def test_screened_scores_of_bf16_features_are_the_full_bf16_scores() -> None:
    x = walk((2, 81, 64), 5).bfloat16()
    screened = screened_dpc_knn_scores(x, 2)
    assert screened is not None and screened.dtype == torch.bfloat16
    assert torch.equal(screened, full_scores(x, 2))  # bf16 distances tie often: values, not indices


def test_screening_bounds_hold_on_hostile_features() -> None:
    g = torch.Generator().manual_seed(11)
    for shape, scale in (((2, 60, 2048), 1.0), ((1, 50, 3), 1e3), ((1, 70, 300), 1e-4)):
        x = walk(shape, 6, offset=50.0) * scale
        x[:, ::7] *= 1 + 10 * torch.rand(shape[0], len(range(0, shape[1], 7)), 1, generator=g)
        lo, hi, norms = screening_bounds(x)
        exact = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist") ** 2
        off = ~torch.eye(shape[1], dtype=torch.bool)
        assert (lo.double()[:, off] <= exact[:, off]).all() and (exact[:, off] <= hi.double()[:, off]).all()
        # and not vacuous: the bracket is a float32-rounding-sized slice of the squared norms
        width = (hi - lo).double() / (norms[:, :, None] + norms[:, None, :]).double()
        assert width[:, off].max() < 1e-2 * max(1.0, shape[2] / 1000)


@pytest.mark.parametrize("scale", [1e-20, 1e-22, 1e-25])
def test_screening_bounds_hold_where_products_underflow(scale: float) -> None:
    # Products of features this small fall below float32's normal range, where rounding errors are
    # absolute: a purely relative slack puts exact distances outside their brackets from about 1e-20.
    x = walk((1, 50, 300), 6, offset=50.0) * scale
    lo, hi, _ = screening_bounds(x)
    exact = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist") ** 2
    off = ~torch.eye(50, dtype=torch.bool)
    assert (lo.double()[:, off] <= exact[:, off]).all() and (exact[:, off] <= hi.double()[:, off]).all()
    screened = screened_dpc_knn_scores(x, 2)  # too wide to screen, or right
    assert screened is None or torch.equal(screened, difference_form_scores(x, 2))
    assert torch.equal(dpc_knn_scores(x, 2), difference_form_scores(x, 2))


def test_screening_gives_up_on_a_long_run_of_identical_frames() -> None:
    x = walk((1, 80, 64), 8)
    x[:, 10:70] = x[:, 10:11]  # edge padding looks like this: every duplicate is a candidate of every other
    assert screened_dpc_knn_scores(x, 2) is None
    assert torch.equal(dpc_knn_scores(x, 2), full_scores(x, 2))  # the full product form takes over


def test_non_finite_features_take_the_full_computation() -> None:
    x = walk((2, 64, 40), 15)
    x[1, 5, 3] = math.nan
    assert screened_dpc_knn_scores(x, 2) is None
    torch.testing.assert_close(dpc_knn_scores(x, 2), full_scores(x, 2), rtol=0, atol=0, equal_nan=True)


def test_a_product_outside_its_bound_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    # A Gram matrix from bf16-rounded features (what a bf16 fpmath mode would do) breaks the bound;
    # the exact values fall outside their brackets and the screening gives up instead of mis-ranking.
    monkeypatch.setattr(dpc, "gram_matrix", lambda y: (lambda z: z @ z.transpose(1, 2))(y.bfloat16().float()))
    x = walk((2, 64, 600), 9, offset=3.0)
    assert screened_dpc_knn_scores(x, 2) is None


@needs_onednn
def test_dpc_knn_scores_screens_only_where_the_bound_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    x = walk((2, 64, dpc.SCREEN_MIN_FEATURES), 10)
    if not layers.fast_cpu_products(x):
        pytest.skip("fast CPU paths turned off (official kernels, tracing or a dispatch mode)")
    assert screening_applies(x, 2)
    assert not screening_applies(x[..., :-1], 2)  # too few features for the screening to pay
    assert not screening_applies(x[:, : dpc.SCREEN_MIN_FRAMES - 1], 2)
    assert not screening_applies(x, 65)  # more neighbours than frames
    assert not screening_applies(x.double(), 2)
    assert not screening_applies(x.clone().requires_grad_(), 2)
    with layers.official_kernels():
        assert not screening_applies(x, 2)
    monkeypatch.setenv("ONEDNN_DEFAULT_FPMATH_MODE", "BF16")
    assert not screening_applies(x, 2)
    monkeypatch.delenv("ONEDNN_DEFAULT_FPMATH_MODE")
    calls = []
    monkeypatch.setattr(dpc, "screened_dpc_knn_scores", lambda *a: calls.append(a) or full_scores(*a))
    dpc_knn_scores(x, 2)
    dpc_knn_scores(x[..., :64], 2)
    dpc_knn_scores(x, 2, density_noise=torch.zeros(2, 64))  # the official tie-break never screens
    assert len(calls) == 1


def test_screened_tpc_keeps_the_difference_form_frames_under_autocast() -> None:
    x = walk((2, 96, 640), 12, step=0.02)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        kept = TPC().select(x, 32)
    assert torch.equal(kept, difference_form_kept(x, 32))
    centre = TPC().select(x, 32, center=47)
    assert (centre == 47).any(dim=1).all() and torch.equal(TPC().select(x, 32), kept)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("index_tie_break", [True, False])
def test_parent_distances_are_the_nearest_denser_frame(dtype: torch.dtype, index_tie_break: bool) -> None:
    g = torch.Generator().manual_seed(13)
    distances = torch.rand(3, 30, 30, generator=g).to(dtype)
    distances = (distances + distances.transpose(1, 2)) / 2
    distances.diagonal(dim1=1, dim2=2).zero_()
    density = torch.randint(0, 6, (3, 30), generator=g).to(dtype) / 8  # many exact ties
    got = parent_distances(distances, density, index_tie_break)
    for s in range(3):
        for i in range(30):
            denser = [j for j in range(30) if density[s, j] > density[s, i]
                      or (index_tie_break and density[s, j] == density[s, i] and j < i)]
            expected = distances[s, i, denser].min() if denser else distances[s].max()
            assert got[s, i] == expected, (s, i)
    assert got.dtype == dtype


def test_exact_squared_distances_are_float64_coordinate_differences() -> None:
    g = torch.Generator().manual_seed(14)
    rows = torch.randn(40, 3000, generator=g) + 100.0  # several chunks of rows, a large common offset
    first, second = torch.randint(0, 40, (70,), generator=g), torch.randint(0, 40, (70,), generator=g)
    norms = ((rows - rows.mean(0)) ** 2).sum(-1)
    got = dpc.exact_squared_distances(rows, first, second, norms)
    expected = ((rows[first].double() - rows[second].double()) ** 2).sum(-1)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=0)
    assert (got[first == second] == 0).all() and math.isfinite(got.sum().item())


@pytest.mark.parametrize("kernel", [pytest.param("onednn", marks=needs_onednn), "torch"])
def test_screened_scores_do_not_depend_on_the_gemm(kernel: str) -> None:
    """The screening runs with either float32 GEMM (torch's is the default on AVX2-only CPUs), and its
    scores are the exact ones whichever GEMM built the brackets."""
    x = walk((2, 120, dpc.SCREEN_MIN_FEATURES), 12)
    with layers.cpu_linear(kernel):
        assert screening_applies(x, 2)
        screened = screened_dpc_knn_scores(x, 2)
    assert screened is not None and torch.equal(screened, difference_form_scores(x, 2))
