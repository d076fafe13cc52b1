"""DPC-kNN (density peaks clustering with k nearest neighbours) on frame features: the scores by which
TPC keeps cluster-centre frames.

``D = ||x_i - x_j|| / sqrt(d)`` between the frames of a sample, the local density
``rho_i = exp(-mean_{kNN} D^2)`` and ``delta_i`` = the distance to the nearest denser frame; a frame's
score is ``delta * rho``. The functions are pure and batched over samples: ``(b, f, d)`` features,
``(b, f, f)`` distances, ``(b, f)`` densities and scores.

Deterministic scores (:func:`dpc_knn_scores` with ``exact=True``) are a function of the exact distances
alone. At float32 inference on CPU they are computed by :func:`screened_dpc_knn_scores` (a float32
product screens the pairs, the few that decide a score are computed exactly), elsewhere from the full
float64 product form (:func:`product_form_distances`).
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from hotpose.models.layers import batched_matmul, fast_cpu_products, gram_matrix


def pairwise_distances(features: Tensor, exact: bool = True) -> Tensor:
    """Euclidean distances between frames scaled by ``1/sqrt(d)``: ``(b, f, d)`` → ``(b, f, f)``.

    ``exact=True`` (deterministic TPC): the matrix-product form ``|x_i|² + |x_j|² - 2 x_i·x_j`` in
    float64 on features centred over frames, made exact where ties are decided: the diagonal is exactly
    0, the matrix exactly symmetric, and bit-identical frames exactly 0 apart (see
    :func:`product_form_distances`), so mutual nearest neighbours and duplicates tie bit for bit.
    ``exact=False`` uses ``torch.cdist``'s default, which switches to the float32 matrix-product formula
    for more than 25 frames (what the official code does); its self-distances may be slightly non-zero.
    At reduced precision (autocast or bf16 features) in plain eager CPU execution, the same formula runs
    with oneDNN's GEMM (:func:`official_form_distances`). Not in float32: there the rounding residue of
    cdist's own MKL kernel on the diagonal takes part in deciding tied densities, and another GEMM
    changes kept frames against the official classes (measured on TPC w. MHFormer and HoT w. MixSTE).
    """
    if exact:
        return product_form_distances(features)
    reduced = features.dtype == torch.bfloat16 or torch.is_autocast_enabled(features.device.type)
    if reduced and features.shape[1] > 25 and fast_cpu_products(features):
        return official_form_distances(features)
    return torch.cdist(features, features) / (features.shape[-1] ** 0.5)


def official_form_distances(features: Tensor) -> Tensor:
    """``torch.cdist``'s matrix-product formula ``sqrt(max(|x_i|² + |x_j|² - 2 x_i·x_j, 1e-30))`` in
    float32 (as under autocast), ``/ sqrt(d)``: ``(b, f, d)`` → ``(b, f, f)``.

    The Gram matrix goes through :func:`~hotpose.models.layers.batched_matmul` (oneDNN on CPU) instead
    of cdist's MKL product of two concatenated copies: 2x less time for TPC w. MHFormer's 351 × 1536
    features under bf16 autocast, the same off-diagonal numbers to float32 rounding (~1e-7 relative).
    The squared norms are the Gram diagonal, so self-distances come out 0 (cdist leaves a rounding
    residue there, up to ~1e-3 after the scaling).
    """
    out_dtype = torch.float32 if torch.is_autocast_enabled(features.device.type) else features.dtype
    x = features.float()
    with torch.autocast(features.device.type, enabled=False):
        gram = batched_matmul(x, x.transpose(1, 2))
        sq = gram.diagonal(dim1=1, dim2=2)
        squared = (sq[:, :, None] + sq[:, None, :]).sub_(gram, alpha=2)
    return squared.clamp_min_(1e-30).sqrt_().div_(features.shape[-1] ** 0.5).to(out_dtype)


# A squared distance at most this many float64 epsilons per feature of |x_i|² + |x_j|² is rounding
# noise of the product form (a dot product over d features errs by up to ~d epsilons): it is set to 0,
# so that bit-identical frames (e.g. edge-padded ones) are exactly 0 apart as with coordinate differences.
DUPLICATE_TOLERANCE = 4 * torch.finfo(torch.float64).eps


def zero_duplicates(squared: Tensor, norm_sums: Tensor, d: int) -> Tensor:
    """``squared`` distances with those within :data:`DUPLICATE_TOLERANCE` of ``|x_i|² + |x_j|²``
    (``norm_sums``, centred norms) set to 0: the same rule for every deterministic computation."""
    return torch.where(squared <= DUPLICATE_TOLERANCE * d * norm_sums, 0.0, squared)


def product_form_distances(features: Tensor) -> Tensor:
    """Deterministic frame distances ``(b, f, d)`` → ``(b, f, f)`` (``/ sqrt(d)``, in the input dtype).

    One float64 GEMM instead of the coordinate-difference kernel (``cdist``'s
    ``donot_use_mm_for_euclid_dist``, 5-12x slower on CPU). Centring over frames (distances do not
    change) and float64 keep the cancellation error ~1e-16 of the squared spread, far below float32
    resolution, so the float32 result matches the difference form to rounding. Exactness where it
    decides ties: the diagonal is ``sq_i + sq_i - 2 sq_i = 0`` exactly, pairs within
    :data:`DUPLICATE_TOLERANCE` are 0, and the lower triangle is the mirror of the upper one.
    Under autocast the float64 matmul is left alone (autocast only lowers float32).
    """
    d = features.shape[-1]
    x = features.double()
    x = x - x.mean(dim=1, keepdim=True)
    gram = x @ x.transpose(1, 2)
    sq = gram.diagonal(dim1=1, dim2=2)
    norms = sq[:, :, None] + sq[:, None, :]  # bitwise symmetric: float addition commutes
    squared = norms - 2 * gram
    squared = zero_duplicates(squared, norms, d)
    f = features.shape[1]
    upper = torch.ones(f, f, dtype=torch.bool, device=features.device).triu()
    squared = torch.where(upper, squared, squared.transpose(1, 2))
    return (squared.sqrt() / d**0.5).to(features.dtype)


def knn_density(distances: Tensor, k: int) -> Tensor:
    """DPC-kNN local density ``rho_i = exp(-mean_{j in kNN(i)} D_ij^2)``, the ``k`` nearest including ``i``
    itself: ``(b, f, f)`` → ``(b, f)``."""
    return density_of_nearest(torch.topk(distances, k=k, dim=-1, largest=False).values)


def density_of_nearest(nearest: Tensor) -> Tensor:
    """``exp(-mean(D^2))`` over the last dimension: the density from each frame's ``k`` smallest distances
    in ascending order, ``(b, f, k)`` → ``(b, f)``."""
    return (-(nearest**2).mean(dim=-1)).exp()


def parent_distances(distances: Tensor, density: Tensor, index_tie_break: bool) -> Tensor:
    """DPC ``delta_i``: distance to the nearest denser frame, or the sample's largest distance for the
    densest frame. ``(b, f, f)``, ``(b, f)`` → ``(b, f)``.

    With ``index_tie_break`` a frame of equal density and lower index also counts as denser, which makes
    "denser" a strict total order (exactly one frame per sample gets the largest distance).
    """
    f = density.shape[-1]
    denser = density[:, None, :] > density[:, :, None]  # [b, i, j]: frame j is denser than frame i
    if index_tie_break:
        index = torch.arange(f, device=density.device)
        lower = index[None, :] < index[:, None]  # [i, j]: j < i
        denser = denser | ((density[:, None, :] == density[:, :, None]) & lower)
    largest = distances.flatten(1).amax(dim=-1)[:, None]
    # The other frames are pushed to the top of the dtype's range by an added penalty: a float add and a
    # plain minimum instead of a select per element (torch.where is ~6x slower on CPU here).
    ceiling = torch.finfo(distances.dtype).max
    nearest = torch.add(distances, (~denser).to(distances.dtype), alpha=ceiling).amin(dim=-1)
    return torch.where(nearest < ceiling, nearest, largest)


def dpc_knn_scores(features: Tensor, k: int = 2, density_noise: Tensor | None = None,
                   exact: bool = True) -> Tensor:
    """DPC-kNN cluster-centre score ``delta * rho`` of each frame: ``(b, f, d)`` → ``(b, f)``.

    ``D = ||x_i - x_j|| / sqrt(d)``, ``rho`` = :func:`knn_density`, ``delta`` = :func:`parent_distances`.
    Without ``density_noise`` (``exact=True`` expected) equal densities are ordered by frame index (lower
    wins); with it, ``density + density_noise`` decides and no index rule is applied (the official way).
    """
    if exact and density_noise is None and screening_applies(features, k):
        scores = screened_dpc_knn_scores(features, k)
        if scores is not None:
            return scores
    distances = pairwise_distances(features, exact=exact)
    density = knn_density(distances, k)
    if density_noise is not None:
        density = density + density_noise
    return parent_distances(distances, density, index_tie_break=density_noise is None) * density


# Screening pays for itself once the float64 product it replaces outweighs its ~20 elementwise passes
# over the (f, f) matrices: from about 512 features on this CPU (the MixSTE and MHFormer sizes).
SCREEN_MIN_FEATURES = 512
SCREEN_MIN_FRAMES = 32
# More pairs to compute exactly than this many per frame (a long run of near-identical frames, such as
# edge padding, whose order the float32 product cannot resolve) and the full float64 product is cheaper.
SCREEN_PAIRS_PER_FRAME = 6
_UNIT_ROUNDOFF = 2.0**-24  # float32
_SMALLEST_NORMAL = 2.0**-126  # float32: a product below it loses up to this much (also with flush-to-zero)
# Rank penalty that takes a pair out of a minimum: rank * 2^100 is exact in float32 below 2^24 frames.
_EXCLUDED = 2.0**100


def screening_applies(features: Tensor, k: int) -> bool:
    """Whether :func:`screened_dpc_knn_scores` runs for these features: plain eager float32/bf16 CPU
    inference with oneDNN in IEEE float32 mode, at least :data:`SCREEN_MIN_FRAMES` frames and
    :data:`SCREEN_MIN_FEATURES` features, and ``2 <= k <= frames``."""
    b, f, d = features.shape
    return (features.dtype in (torch.float32, torch.bfloat16) and fast_cpu_products(features)
            and b > 0 and f >= SCREEN_MIN_FRAMES and d >= SCREEN_MIN_FEATURES and 2 <= k <= f
            and not features.requires_grad and _ieee_float32_products())


def _ieee_float32_products() -> bool:
    # The error bound assumes IEEE float32 products; oneDNN can be told to compute them in bf16 or tf32.
    modes = (os.environ.get("ONEDNN_DEFAULT_FPMATH_MODE", "strict"),
             os.environ.get("DNNL_DEFAULT_FPMATH_MODE", "strict"))
    return (all(m.lower() == "strict" for m in modes)
            and torch.backends.mkldnn.matmul.fp32_precision in ("none", "ieee"))


def screened_dpc_knn_scores(features: Tensor, k: int = 2) -> Tensor | None:
    """Deterministic DPC-kNN scores with a float32 screening product: ``(b, f, d)`` → ``(b, f)``, or
    ``None`` when too many pairs stay undecided (then the full product form is the cheaper way).

    A score needs three kinds of values from the distance matrix: each frame's ``k - 1`` smallest
    distances (density), its smallest distance to a denser frame (``delta``) and the sample's largest
    distance. A float32 Gram matrix of the centred features brackets every squared distance
    (:func:`screening_bounds`); only the pairs whose bracket reaches one of those extremes are computed
    exactly (:func:`exact_squared_distances`), about one per frame on video features. Every other pair is
    provably no nearer (no farther) than one that was computed, and the extremes are values, not
    indices, so the scores are those of the exact distances rounded once to the features' dtype, ties
    included. :func:`product_form_distances` agrees up to its float64 cancellation error (~1e-16 of the
    squared norms, which can move a float32 rounding only for features whose norms span several
    decades). 2-3x less time than the full product for TPC w. MHFormer's 351 x 1536 features.
    """
    b, f, d = features.shape
    dtype = features.dtype
    x = features.float()
    with torch.autocast("cpu", enabled=False):
        lo, hi, norms = screening_bounds(x)
    if not bool(torch.isfinite(norms).all()):
        return None  # non-finite features: the full computation propagates them as it always did
    pairs = _ExactPairs(x, norms, lo, hi, dtype, limit=SCREEN_PAIRS_PER_FRAME * b * f)
    exact = pairs.distances

    # density: the pairs that can be among the k-1 smallest off-diagonal distances of their row
    hi.diagonal(dim1=1, dim2=2).fill_(math.inf)
    kth = hi.amin(dim=-1) if k == 2 else torch.topk(hi, k - 1, dim=-1, largest=False).values[..., -1]
    if not pairs.compute(lo <= kth[:, :, None]):
        return None
    if k == 2:
        nearest = exact.amin(dim=-1, keepdim=True)
    else:
        nearest = torch.topk(exact, k - 1, dim=-1, largest=False).values
    density = density_of_nearest(torch.cat([nearest.new_zeros(b, f, 1), nearest], dim=-1).to(dtype))

    # delta: j is denser than i if it comes first in a stable descending sort of the densities (equal
    # densities: the lower index). A penalty of >= 2^99 on every other pair (0 on the denser ones) keeps
    # each minimum over "denser" a plain minimum.
    order = torch.sort(density.float(), dim=-1, descending=True, stable=True).indices
    rank = torch.empty(b, f, dtype=torch.float32).scatter_(1, order, torch.arange(f, dtype=torch.float32).expand(b, f))
    rank.mul_(_EXCLUDED)
    penalty = torch.sub((rank + _EXCLUDED / 2)[:, None, :], rank[:, :, None]).clamp_min_(0)
    reach = (hi + penalty).amin(dim=-1, keepdim=True)
    wanted = lo + penalty <= reach
    # the largest distance: the pairs whose upper bound reaches the largest lower bound
    hi.diagonal(dim1=1, dim2=2).zero_()
    wanted |= hi >= lo.flatten(1).amax(dim=-1)[:, None, None]
    if not pairs.compute(wanted):
        return None
    nearest_denser = (exact + penalty).amin(dim=-1)
    delta = torch.where(nearest_denser < _EXCLUDED / 4, nearest_denser, pairs.largest()[:, None])
    return delta.to(dtype) * density


def screening_bounds(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Lower and upper bounds on the exact squared distances ``||x_i - x_j||^2`` of float32 features
    ``(b, f, d)`` from one float32 Gram matrix: ``lo``, ``hi`` (b, f, f) and the centred squared norms
    ``n`` (b, f).

    With ``y = fl(x - c)`` (``c`` the frame mean; distances do not change) and ``n_i = |y_i|^2`` from
    the Gram diagonal: centring moves a squared distance by at most about ``2u (|y_i| + |y_j|)^2``
    (``u = 2^-24``); a float32 dot product of length ``d`` errs by at most ``gamma_d |y_i| |y_j|``
    (``gamma_d = d u / (1 - d u)``, in any summation order), ``n_i + n_j - 2 g_ij`` adds two roundings,
    and ``(|y_i| + |y_j|)^2 <= 2 (n_i + n_j)``. The slack ``4 (gamma_d + 8u) (n_i + n_j)`` covers all of
    these twice over, with the rounding of the bounds themselves and of the float64 exact values.
    Those error bounds hold for products above float32's smallest normal number ``t = 2^-126``; one
    below it errs by up to ``t`` absolutely, so the slack also has ``8 d t`` (three dot products per
    distance, twice over). It decides nothing for features of ordinary size (1e-34 for d = 1536) and
    keeps the bounds true for tiny ones (from about 1e-20 the relative bound alone fails), whose
    brackets become too wide to screen, so the full computation takes them.
    """
    d = x.shape[-1]
    y = x - x.mean(dim=1, keepdim=True)
    gram = gram_matrix(y)
    norms = gram.diagonal(dim1=1, dim2=2)
    total = norms[:, :, None] + norms[:, None, :]
    squared = total - 2 * gram
    gamma = d * _UNIT_ROUNDOFF / (1 - d * _UNIT_ROUNDOFF)
    slack = total.mul_(4 * (gamma + 8 * _UNIT_ROUNDOFF)).add_(8 * d * _SMALLEST_NORMAL)
    return squared - slack, squared.add_(slack), norms


class _ExactPairs:
    """The frame pairs of float32 features ``x`` (b, f, d) computed exactly so far, at most ``limit``.

    ``distances`` (b, f, f) holds their distances (rounded to ``dtype``) at both ``(i, j)`` and ``(j, i)``
    and inf elsewhere; a pair is computed once. Each exact value is checked against its screening
    bounds ``lo``/``hi``: one outside (a product that was not IEEE float32 after all) gives up.
    """

    def __init__(self, x: Tensor, centred_norms: Tensor, lo: Tensor, hi: Tensor, dtype: torch.dtype,
                 limit: int) -> None:
        self.b, self.f, d = x.shape
        self.rows, self.norms = x.reshape(-1, d), centred_norms.reshape(-1)
        self.lo, self.hi, self.dtype, self.limit = lo, hi, dtype, limit
        self.distances = torch.full((self.b, self.f, self.f), math.inf, dtype=torch.float32)
        self.keys = torch.empty(0, dtype=torch.long)
        self.values = torch.empty(0, dtype=torch.float32)

    def compute(self, wanted: Tensor) -> bool:
        """Compute the pairs ``wanted`` (b, f, f) marks; False if the limit or a bound was broken."""
        s, i, j = wanted.nonzero(as_tuple=True)
        if s.numel() > 2 * self.limit + self.b * self.f:  # each pair twice, and the diagonal
            return False
        f = self.f
        keys = torch.unique((s * f + torch.minimum(i, j)) * f + torch.maximum(i, j))
        keys = keys[(keys % f != keys // f % f) & ~torch.isin(keys, self.keys)]  # off-diagonal, new
        if self.keys.numel() + keys.numel() > self.limit:
            return False
        s, i, j = keys // (f * f), keys // f % f, keys % f
        squared = exact_squared_distances(self.rows, s * f + i, s * f + j, self.norms)
        if not bool(((self.lo[s, i, j] <= squared) & (squared <= self.hi[s, i, j])).all()):
            return False
        values = (squared.sqrt() / self.rows.shape[-1] ** 0.5).to(self.dtype).float()
        self.distances[s, i, j] = values
        self.distances[s, j, i] = values
        self.keys = torch.cat([self.keys, keys])
        self.values = torch.cat([self.values, values])
        return True

    def largest(self) -> Tensor:
        """Each sample's largest computed distance (0 if none), ``(b,)``."""
        return torch.zeros(self.b, dtype=torch.float32).scatter_reduce_(0, self.keys // self.f**2, self.values, "amax")


# Rows of float64 differences per step of exact_distances: 64k values (512 KiB), so that the
# temporaries stay in a core's L2 cache instead of streaming through memory.
_EXACT_CHUNK = 1 << 16


def exact_squared_distances(rows: Tensor, first: Tensor, second: Tensor, centred_norms: Tensor) -> Tensor:
    """``||rows[first] - rows[second]||^2`` in float64 for float32 ``rows`` (n, d): ``(pairs,)``.

    The difference of two float32 numbers is exact in float64, so the float64 sum is the only rounding
    (1e-16 relative). A value within :data:`DUPLICATE_TOLERANCE` of the two frames' centred squared
    norms ``centred_norms`` (n,) counts as 0, as in :func:`product_form_distances`.
    """
    d = rows.shape[-1]
    pairs = first.shape[0]
    step = max(1, _EXACT_CHUNK // d)
    squared = torch.empty(pairs, dtype=torch.float64)
    diff = torch.empty(min(step, pairs), d, dtype=torch.float64)
    gathered = torch.empty(min(step, pairs), d, dtype=rows.dtype)
    for start in range(0, pairs, step):
        n = min(step, pairs - start)
        a, b = diff[:n], gathered[:n]
        a.copy_(torch.index_select(rows, 0, first[start:start + n], out=b))
        a.sub_(torch.index_select(rows, 0, second[start:start + n], out=b)).square_()
        torch.sum(a, dim=-1, out=squared[start:start + n])
    norms = centred_norms.double()
    return zero_duplicates(squared, norms[first] + norms[second], d)
