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

from hotpose.models.dpc import dpc_knn_scores, knn_density, pairwise_distances, parent_distances

TIE_BREAKS = ("deterministic", "official")
# Size of the official random density perturbation that breaks ties between equal densities.
OFFICIAL_DENSITY_NOISE = 1e-6


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
              symmetric matrix (:mod:`hotpose.models.dpc`), so mutual nearest neighbours have
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
