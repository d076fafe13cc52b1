"""Token (frame) selection policies for the hourglass: which frames survive a pruning stage.

Every policy maps per-frame features to kept frame indices::

    policy.select(features (b, f, d), tokens: int, center: int | Tensor (b,) | None) -> kept (b, tokens)

``kept`` is int64, sorted in time, and contains ``center`` whenever it is given (seq2frame keeps the
frame it scores). Selection runs under ``torch.no_grad()``: it is not differentiable, gradients reach
the network only through the gathered tokens. Policies know nothing about backbones; the features
come from ``Backbone.frame_features`` (the mean over joints for most backbones).

Ties between equal scores are broken towards the lower frame index (a stable descending sort), so
every policy except ``TPC(tie_break="official")`` is a deterministic function of its input.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from hotpose.models.layers import batched_matmul, fast_cpu_products

TIE_BREAKS = ("deterministic", "official")
# Size of the official random density perturbation that breaks ties between equal densities.
OFFICIAL_DENSITY_NOISE = 1e-6


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
    squared = torch.where(squared <= DUPLICATE_TOLERANCE * d * norms, 0.0, squared)
    f = features.shape[1]
    upper = torch.ones(f, f, dtype=torch.bool, device=features.device).triu()
    squared = torch.where(upper, squared, squared.transpose(1, 2))
    return (squared.sqrt() / d**0.5).to(features.dtype)


def knn_density(distances: Tensor, k: int) -> Tensor:
    """DPC-kNN local density ``rho_i = exp(-mean_{j in kNN(i)} D_ij^2)``, the ``k`` nearest including ``i``
    itself: ``(b, f, f)`` → ``(b, f)``."""
    nearest = torch.topk(distances, k=k, dim=-1, largest=False).values
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
    largest = distances.flatten(1).max(dim=-1).values[:, None, None]
    return torch.where(denser, distances, largest).min(dim=-1).values


def dpc_knn_scores(features: Tensor, k: int = 2, density_noise: Tensor | None = None,
                   exact: bool = True) -> Tensor:
    """DPC-kNN cluster-centre score ``delta * rho`` of each frame: ``(b, f, d)`` → ``(b, f)``.

    ``D = ||x_i - x_j|| / sqrt(d)``, ``rho`` = :func:`knn_density`, ``delta`` = :func:`parent_distances`.
    Without ``density_noise`` (``exact=True`` expected) equal densities are ordered by frame index (lower
    wins); with it, ``density + density_noise`` decides and no index rule is applied (the official way).
    """
    distances = pairwise_distances(features, exact=exact)
    density = knn_density(distances, k)
    if density_noise is not None:
        density = density + density_noise
    return parent_distances(distances, density, index_tie_break=density_noise is None) * density


def _check_request(name: str, features: Tensor, tokens: int, center: int | Tensor | None) -> None:
    if features.ndim != 3:
        raise ValueError(f"{name}.select: features must be (b, f, d), got shape {tuple(features.shape)}")
    f = features.shape[1]
    if not 1 <= tokens <= f:
        raise ValueError(f"{name}.select: tokens={tokens} must be in [1, {f}] (frames of the features)")
    if center is not None:
        c = torch.as_tensor(center)
        if c.ndim > 1 or (c.ndim == 1 and c.shape[0] != features.shape[0]):
            raise ValueError(f"{name}.select: center must be an int or a (b,) tensor, "
                             f"got shape {tuple(c.shape)}")
        # a device tensor of centres comes from the hourglass itself; reading it back would sync
        if c.device.type == "cpu" and (bool((c < 0).any()) or bool((c >= f).any())):
            raise ValueError(f"{name}.select: center {c.tolist()} is outside [0, {f})")


def top_frames(scores: Tensor, tokens: int, center: int | Tensor | None = None,
               stable: bool = True) -> Tensor:
    """The ``tokens`` highest-scoring frames, sorted in time: ``(b, f)`` → ``(b, tokens)`` int64.

    With ``center`` (an int or one index per sample), that frame is kept and the other ``tokens - 1`` are
    the best of the rest. ``stable=True`` breaks score ties towards the lower frame index;
    ``stable=False`` uses ``torch.topk`` (the official TPC, whose ties are decided by random noise).
    """
    b = scores.shape[0]
    picks = tokens
    if center is not None:
        centers = torch.as_tensor(center, device=scores.device, dtype=torch.long).expand(b)
        scores = scores.scatter(1, centers[:, None], -math.inf)
        picks = tokens - 1
    if stable:
        kept = torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :picks]
    else:
        kept = torch.topk(scores, k=picks, dim=-1).indices
    if center is not None:
        kept = torch.cat([kept, centers[:, None]], dim=-1)
    return torch.sort(kept, dim=-1).values


class Pruner:
    """Base class: ``select(features (b, f, d), tokens, center) -> kept (b, tokens)`` int64, sorted."""

    def select(self, features: Tensor, tokens: int, center: int | Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def __call__(self, features: Tensor, tokens: int, center: int | Tensor | None = None) -> Tensor:
        return self.select(features, tokens, center)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class TPC(Pruner):
    """Token Pruning Cluster (HoT): keep the DPC-kNN cluster centres (highest ``delta * rho``).

    The selected frames are kept as they are (no merging), as in the official code.

    Args:
        k: neighbours (the frame itself included) in the density estimate; 2 in HoT.
        tie_break: how frames of equal density are ordered. Mutual nearest neighbours always have equal
            density, so this decides which member of such a pair becomes the other's parent.

            - ``"deterministic"`` (default): distances with an exactly zero diagonal and an exactly
              symmetric matrix (:func:`product_form_distances`), so mutual nearest neighbours have
              bit-equal densities; the lower frame index counts as denser, and equal
              scores prefer the lower index. Same input → same selection, whatever the RNG state.
            - ``"official"``: as the HoT code: ``torch.cdist`` default mode, ``torch.rand(rho.shape) * 1e-6``
              added to the density (global RNG, dtype/device of ``rho``, drawn once per call right after
              the density), ``torch.topk`` for the final pick. Seeding torch right before a forward
              reproduces the official selection (given bit-identical features); each call advances the
              global RNG. In float32 a density near 0.6 has only ~17 representable values within 1e-6,
              so a tied pair stays tied about 6% of the time; then neither member has the other as parent.
    """

    def __init__(self, k: int = 2, tie_break: str = "deterministic") -> None:
        if tie_break not in TIE_BREAKS:
            raise ValueError(f"TPC: tie_break must be one of {TIE_BREAKS}, got {tie_break!r}")
        if k < 1:
            raise ValueError(f"TPC: k={k} must be >= 1")
        self.k = k
        self.tie_break = tie_break

    @torch.no_grad()
    def select(self, features: Tensor, tokens: int, center: int | Tensor | None = None) -> Tensor:
        _check_request("TPC", features, tokens, center)
        if self.k > features.shape[1]:
            raise ValueError(f"TPC: k={self.k} neighbours but only {features.shape[1]} frames")
        if self.tie_break == "deterministic":
            return top_frames(dpc_knn_scores(features, self.k, exact=True), tokens, center, stable=True)
        distances = pairwise_distances(features, exact=False)
        density = knn_density(distances, self.k)
        noise = torch.rand(density.shape, device=density.device, dtype=density.dtype) * OFFICIAL_DENSITY_NOISE
        density = density + noise
        scores = parent_distances(distances, density, index_tie_break=False) * density
        return top_frames(scores, tokens, center, stable=False)

    def __repr__(self) -> str:
        return f"TPC(k={self.k}, tie_break={self.tie_break!r})"


def uniform_frames(frames: int, tokens: int, center: int | None = None) -> Tensor:
    """Evenly spaced frames ``round(linspace(0, frames-1, tokens))``: → ``(tokens,)`` int64, sorted.

    With ``center``, the sample nearest to it (the earlier one on a tie) is moved onto it; the result
    stays sorted and duplicate-free because no other sample is closer to the centre.
    """
    kept = torch.linspace(0, frames - 1, tokens, dtype=torch.float64).round().long()
    if center is not None:
        kept[torch.argmin((kept - center).abs())] = center
    return kept


class Uniform(Pruner):
    """Keep evenly spaced frames (content-blind sampling; see :func:`uniform_frames`)."""

    @torch.no_grad()
    def select(self, features: Tensor, tokens: int, center: int | Tensor | None = None) -> Tensor:
        _check_request("Uniform", features, tokens, center)
        b, f = features.shape[:2]
        if center is None or torch.as_tensor(center).ndim == 0:
            center = None if center is None else int(center)
            return uniform_frames(f, tokens, center).to(features.device).expand(b, tokens).clone()
        rows = [uniform_frames(f, tokens, int(c)) for c in torch.as_tensor(center).tolist()]
        return torch.stack(rows).to(features.device)


def attention_received(features: Tensor) -> Tensor:
    """Attention each frame receives in a parameter-free self-attention of the frame features:
    column sums of ``softmax(F F^T / sqrt(d))`` (rows are queries): ``(b, f, d)`` → ``(b, f)``."""
    logits = features @ features.transpose(1, 2) / (features.shape[-1] ** 0.5)
    return logits.softmax(dim=-1).sum(dim=1)


class Attention(Pruner):
    """Keep the frames that receive the most attention (:func:`attention_received`).

    A backbone-agnostic stand-in for "attention-score pruning": the backbones' own attention maps live
    inside SDPA kernels, so the score is computed from the frame features with identity projections.
    """

    @torch.no_grad()
    def select(self, features: Tensor, tokens: int, center: int | Tensor | None = None) -> Tensor:
        _check_request("Attention", features, tokens, center)
        return top_frames(attention_received(features.float()), tokens, center)


def feature_motion(features: Tensor) -> Tensor:
    """``||f_t - f_{t-1}||`` per frame, 0 for the first frame (no predecessor): ``(b, f, d)`` → ``(b, f)``."""
    motion = (features[:, 1:] - features[:, :-1]).norm(dim=-1)
    return torch.cat([motion.new_zeros(motion.shape[0], 1), motion], dim=1)


class Motion(Pruner):
    """Keep the frames with the largest feature motion (:func:`feature_motion`)."""

    @torch.no_grad()
    def select(self, features: Tensor, tokens: int, center: int | Tensor | None = None) -> Tensor:
        _check_request("Motion", features, tokens, center)
        return top_frames(feature_motion(features.float()), tokens, center)
