"""Evaluation metrics: per-pose error functions and :class:`PoseErrorMetric` (per-action tables, DDP-safe).

Pure functions take poses ``(..., j, 3)`` (root-relative, any unit) and return one error per pose
``(...)``, in the input's unit; nothing is averaged, so callers choose the weighting:

- :func:`mpjpe` (protocol 1, "P1"): mean joint distance.
- :func:`p_mpjpe` (protocol 2, "P2"): MPJPE after the similarity (rotation, scale, translation)
  Procrustes alignment of each pose to its target; reflections are not allowed.
- :func:`n_mpjpe`: MPJPE after the least-squares scale of the prediction.
- :func:`mpjve`: velocity error between consecutive frames ``(b, f, j, 3)`` → ``(b, f-1)``.
- :func:`adjacent_pairs`: which neighbouring scored frames are also neighbours in time. MPJVE only
  counts those: a pruned seq2seq model without recovery outputs its kept frames, whose differences
  are not velocities (uniform pruning to half the frames or fewer keeps no two neighbours, so its MPJVE
  is absent; TPC's kept frames are scored on their adjacent pairs only).

Two evaluation protocols (``mode``) are implemented by :class:`PoseErrorMetric`:

``exact`` (hotpose's default)
    Every real frame once: edge-replicated padding frames are excluded, each scored frame has weight
    one inside its action; the action score is the mean over its frames.

``paper`` (the official HoT/MixSTE/MHFormer test loop)
    Each window has weight one inside its action, whatever its number of frames; a window's P1 is the
    mean over *all* its output frames (in seq2seq the padding frames included). P1 and P2 are computed
    in float32, as the official code does. P2 reproduces the official accumulation: when a batch holds
    windows of more than one action, every window of that batch gets the *batch's* mean P2 instead of
    its own, and the per-action sums are kept in float32, batch after batch. The result therefore
    depends on the batch size and order (and on the rank split under DDP), exactly as the official
    number does (see docs/protocols.md).

Both protocols report the action score averaged over actions (the literature's number, ``mpjpe_mm``)
and the pooled average over every scored unit (frames in ``exact``, windows in ``paper``;
``pooled/mpjpe_mm``). Results are in millimetres for inputs in metres.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

MODES = ("exact", "paper")
#: the metric names reported per action and overall
NAMES = ("mpjpe", "p_mpjpe", "n_mpjpe", "mpjve")
_KEY_NONE = -1


def _check_pair(pred: Tensor, target: Tensor) -> None:
    if pred.shape != target.shape or pred.ndim < 2 or pred.shape[-1] != 3:
        raise ValueError(f"poses must both be (..., j, 3); got {tuple(pred.shape)} and {tuple(target.shape)}")


def mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint position error of each pose: ``(..., j, 3)`` → ``(...)``."""
    _check_pair(pred, target)
    return torch.linalg.vector_norm(pred - target, dim=-1).mean(dim=-1)


def procrustes_align(pred: Tensor, target: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Align each pose ``pred (..., j, 3)`` to ``target`` by the best similarity transform.

    Minimises ``||s · pred · R + t - target||`` over rotations ``R`` (det +1), scales ``s`` and
    translations ``t`` (Umeyama / VideoPose3D's P-MPJPE). Computed and returned in ``dtype`` (float64;
    the paper protocol uses float32, as the official code does).
    """
    _check_pair(pred, target)
    p, q = pred.to(dtype), target.to(dtype)
    mu_p, mu_q = p.mean(dim=-2, keepdim=True), q.mean(dim=-2, keepdim=True)
    p0, q0 = p - mu_p, q - mu_q
    # clamp: a collapsed pose (all joints at one point) has norm 0 and no defined rotation
    norm_p = torch.linalg.vector_norm(p0, dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    norm_q = torch.linalg.vector_norm(q0, dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    p0, q0 = p0 / norm_p, q0 / norm_q
    u, s, vh = torch.linalg.svd(q0.transpose(-1, -2) @ p0)  # (..., 3, 3) cross-covariance
    v = vh.transpose(-1, -2)
    # a reflection would fit better when det(V Uᵀ) < 0: flip the weakest axis instead
    sign = torch.sign(torch.linalg.det(v @ u.transpose(-1, -2)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    v = torch.cat([v[..., :-1], v[..., -1:] * sign[..., None, None]], dim=-1)
    s = torch.cat([s[..., :-1], s[..., -1:] * sign[..., None]], dim=-1)
    rot = v @ u.transpose(-1, -2)
    scale = s.sum(dim=-1)[..., None, None] * norm_q / norm_p
    shift = mu_q - scale * (mu_p @ rot)
    return scale * (p @ rot) + shift


def p_mpjpe(pred: Tensor, target: Tensor, dtype: torch.dtype = torch.float64) -> Tensor:
    """Procrustes-aligned MPJPE of each pose, in ``dtype``: ``(..., j, 3)`` → ``(...)``."""
    return mpjpe(procrustes_align(pred, target, dtype), target.to(dtype))


def n_mpjpe(pred: Tensor, target: Tensor) -> Tensor:
    """MPJPE after scaling each pose by ``<pred, target> / <pred, pred>``: ``(..., j, 3)`` → ``(...)``."""
    _check_pair(pred, target)
    p, q = pred.double(), target.double()
    scale = (p * q).sum(dim=(-2, -1), keepdim=True) / (p * p).sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return mpjpe(scale * p, q)


def mpjve(pred: Tensor, target: Tensor) -> Tensor:
    """Mean per-joint velocity error between consecutive frames: ``(b, f, j, 3)`` → ``(b, f-1)``."""
    _check_pair(pred, target)
    if pred.ndim != 4:
        raise ValueError(f"mpjve needs sequences (b, f, j, 3), got {tuple(pred.shape)}")
    return mpjpe(pred.diff(dim=1), target.diff(dim=1))


def adjacent_pairs(position: Tensor) -> Tensor:
    """``(b, f)`` window positions of the scored frames → ``(b, f-1)`` bool, True where frame ``i + 1``
    directly follows frame ``i`` in time (the only pairs whose difference is a velocity)."""
    if position.ndim != 2:
        raise ValueError(f"position must be (b, f), got {tuple(position.shape)}")
    return position.diff(dim=1) == 1


class PoseErrorMetric(Metric):
    """P1 / P2 / N-MPJPE / MPJVE per action and overall, in mm, under the ``exact`` or ``paper`` protocol.

    Every window of the evaluation set adds one row per state (``cat`` states, gathered under DDP);
    :meth:`compute` drops repeated windows (same ``key``), which the distributed sampler adds to even
    out the ranks, so that the DDP result equals the single-process one.

    Args:
        actions: the fixed action vocabulary (the same on every rank). ``None`` learns it from the
            batches, which is only valid in a single process.
        mode: ``"exact"`` or ``"paper"`` (module docstring).
        scale: factor from the input unit to the reported one (1000: metres → mm).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = False

    def __init__(self, actions: Sequence[str] | None = None, mode: str = "exact", scale: float = 1000.0,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"evaluation mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.scale = float(scale)
        self.fixed_vocabulary = actions is not None
        self.actions: list[str] = list(dict.fromkeys(str(a) for a in (actions or [])))
        for name in ("action", "key", "batch"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._batches = 0  # updates seen: the batch number of the paper protocol's P2 accumulation
        for name in (*NAMES, "count", "mpjve_count"):
            self.add_state(f"sum_{name}" if name in NAMES else name, default=[], dist_reduce_fx="cat")

    def _action_ids(self, actions: Sequence[str], device: torch.device) -> Tensor:
        ids = []
        for a in actions:
            if a not in self.actions:
                if self.fixed_vocabulary:
                    raise ValueError(f"action {a!r} is not in the metric's vocabulary {self.actions}")
                self.actions.append(a)
            ids.append(self.actions.index(a))
        return torch.tensor(ids, dtype=torch.long, device=device)

    def update(self, pred: Tensor, target: Tensor, valid: Tensor, actions: Sequence[str],
               key: Tensor | None = None, position: Tensor | None = None) -> None:
        """Add a batch of windows.

        Args:
            pred, target: ``(b, f, j, 3)`` scored output frames (root already zeroed), float.
            valid: ``(b, f)`` bool, True on real frames (``exact`` scores only those).
            actions: ``b`` action-group names.
            key: ``(b,)`` int64 unique id of each window (repeats are counted once), or None.
            position: ``(b, f)`` window position of each scored frame; MPJVE counts only the pairs of
                frames adjacent in time (:func:`adjacent_pairs`). None: the frames are consecutive.
        """
        _check_pair(pred, target)
        if pred.ndim != 4:
            raise ValueError(f"PoseErrorMetric.update expects (b, f, j, 3) poses, got {tuple(pred.shape)}")
        b, f = pred.shape[:2]
        if tuple(valid.shape) != (b, f):
            raise ValueError(f"valid must be (b, f) = {(b, f)}, got {tuple(valid.shape)}")
        if len(actions) != b:
            raise ValueError(f"got {len(actions)} action names for {b} windows")
        dev = pred.device
        precision = torch.float64 if self.mode == "exact" else torch.float32
        per_frame = {"mpjpe": mpjpe(pred.to(precision), target.to(precision)).double(),
                     "p_mpjpe": p_mpjpe(pred, target, precision).double(),
                     "n_mpjpe": n_mpjpe(pred, target)}  # each (b, f)
        vel = mpjve(pred.double(), target.double()) if f > 1 else pred.new_zeros(b, 0, dtype=torch.float64)
        if position is not None and tuple(position.shape) != (b, f):
            raise ValueError(f"position must be (b, f) = {(b, f)}, got {tuple(position.shape)}")
        adjacent = (adjacent_pairs(position.to(dev)) if position is not None
                    else torch.ones(b, max(f - 1, 0), dtype=torch.bool, device=dev))
        vel = torch.where(adjacent, vel, 0.0)  # non-adjacent pairs: not a velocity, weight 0 below
        ids = self._action_ids(actions, dev)
        if self.mode == "exact":
            w = valid.double()
            pair_w = (valid[:, 1:] & valid[:, :-1] & adjacent).double()
            row = {name: (v * w).sum(dim=1) for name, v in per_frame.items()}
            row["mpjve"] = (vel * pair_w).sum(dim=1)
            count, vel_count = w.sum(dim=1), pair_w.sum(dim=1)
        else:
            row = {name: v.mean(dim=1) for name, v in per_frame.items()}
            # the official P2: the batch mean (float32) for every window; compute() accumulates it
            row["p_mpjpe"] = per_frame["p_mpjpe"].float().mean().double().expand(b)
            pairs = adjacent.double().sum(dim=1)
            row["mpjve"] = vel.sum(dim=1) / pairs.clamp_min(1)  # mean over the window's adjacent pairs
            count = torch.ones(b, dtype=torch.float64, device=dev)
            vel_count = (pairs > 0).double()
        self.action.append(ids)
        dist = torch.distributed
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        self.batch.append(torch.full((b,), (rank << 40) + self._batches, dtype=torch.long, device=dev))
        self._batches += 1
        self.key.append(torch.full((b,), _KEY_NONE, dtype=torch.long, device=dev) if key is None
                        else key.to(dev, torch.long).reshape(b))
        for name in NAMES:
            getattr(self, f"sum_{name}").append(row[name])
        self.count.append(count)
        self.mpjve_count.append(vel_count)

    def _unique_rows(self, key: Tensor) -> Tensor:
        """Indices of the first row of every distinct key (rows without a key are all kept)."""
        rows = torch.arange(len(key), device=key.device)
        keyed = key != _KEY_NONE
        if not keyed.any():
            return rows
        uniq, inverse = torch.unique(key[keyed], return_inverse=True)
        first = torch.full((len(uniq),), len(key), dtype=torch.long, device=key.device)
        first = first.scatter_reduce(0, inverse, rows[keyed], reduce="amin")
        return torch.cat([rows[~keyed], first]).sort().values

    def compute(self) -> dict[str, Tensor]:
        """Flat dict: ``mpjpe_mm`` etc. (mean over actions), ``pooled/<name>_mm``, ``action/<a>/<name>_mm``.
        """
        dist = torch.distributed
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not self.fixed_vocabulary and distributed:
            raise ValueError("PoseErrorMetric under DDP needs a fixed action vocabulary (actions=[...])")
        if isinstance(self.action, list) and not self.action:
            raise ValueError("PoseErrorMetric.compute() called before any update")
        state = {name: dim_zero_cat(getattr(self, name)) for name in
                 ("action", "key", "batch", "count", "mpjve_count", *(f"sum_{n}" for n in NAMES))}
        keep = self._unique_rows(state["key"])
        state = {k: v[keep] for k, v in state.items()}
        n_actions = len(self.actions)
        per_action_count = {
            name: torch.bincount(state["action"], minlength=n_actions,
                                 weights=state["mpjve_count" if name == "mpjve" else "count"])
            for name in NAMES
        }
        out: dict[str, Tensor] = {}
        for name in NAMES:
            sums = torch.bincount(state["action"], weights=state[f"sum_{name}"], minlength=n_actions)
            counts = per_action_count[name]
            present = counts > 0
            if not present.any():
                continue  # e.g. MPJVE with one scored frame per window (seq2frame)
            per_action = sums / counts.clamp_min(1)
            overall = per_action[present].mean() * self.scale
            if name == "p_mpjpe" and self.mode == "paper":
                per_action, overall = official_p2(state["batch"], state["action"], state["sum_p_mpjpe"],
                                                  n_actions, self.scale)
            out[f"{name}_mm"] = overall
            out[f"pooled/{name}_mm"] = sums.sum() / counts.sum() * self.scale
            for i in torch.nonzero(present).flatten().tolist():
                value = per_action[i] if name == "p_mpjpe" and self.mode == "paper" else per_action[i] * self.scale
                out[f"action/{self.actions[i]}/{name}_mm"] = value
        out["windows"] = torch.tensor(float(len(keep)), dtype=torch.float64)
        out["scored"] = state["count"].sum()  # frames in ``exact``, windows in ``paper``
        return out


def official_p2(batch: Tensor, action: Tensor, batch_mean: Tensor, n_actions: int,
                scale: float) -> tuple[Tensor, Tensor]:
    """Per-action and overall P2 accumulated as the official test loop does (``common/utils.py``).

    ``batch``, ``action`` and ``batch_mean`` have one entry per window, in test order; ``batch_mean``
    is its batch's mean P2 (float32). A batch of one action adds ``mean * b`` with weight ``b`` to that
    action, a mixed batch adds ``mean`` with weight 1 per window. The official sums are NumPy float32
    scalars, so they are rounded to float32 after every addition; so are the ``scale`` and the mean over
    actions. Returns ``(per_action (n_actions,) scaled, NaN where absent; overall)``, float64 tensors.
    """
    sums = np.zeros(n_actions, dtype=np.float32)
    counts = np.zeros(n_actions, dtype=np.int64)
    batches, actions, means = (t.cpu().numpy() for t in (batch, action, batch_mean.float()))
    starts = np.flatnonzero(np.r_[True, batches[1:] != batches[:-1]])
    for start, stop in zip(starts, np.r_[starts[1:], len(batches)]):
        ids, mean = actions[start:stop], means[start]
        if (ids == ids[0]).all():
            sums[ids[0]] = sums[ids[0]] + mean * np.float32(stop - start)
            counts[ids[0]] += stop - start
        else:
            for a in ids:
                sums[a] = sums[a] + mean
                counts[a] += 1
    present = counts > 0
    per_action = np.full(n_actions, np.nan)
    per_action[present] = sums[present] / counts[present].astype(np.float32) * np.float32(scale)
    total = np.float32(0.0)
    for value in per_action[present].astype(np.float32):
        total = total + value
    overall = total / np.float32(max(int(present.sum()), 1))
    return torch.from_numpy(per_action), torch.tensor(float(overall), dtype=torch.float64)


def per_action_table(result: dict[str, Tensor | float]) -> dict[str, dict[str, float]]:
    """``compute()`` output → ``{action: {"mpjpe_mm": ..., ...}}`` plus an ``"Average"`` row."""
    table: dict[str, dict[str, float]] = {}
    for k, v in result.items():
        if k.startswith("action/"):
            _, action, name = k.split("/", 2)
            table.setdefault(action, {})[name] = float(v)
    table["Average"] = {f"{n}_mm": float(result[f"{n}_mm"]) for n in NAMES if f"{n}_mm" in result}
    return table
