"""MPI-INF-3DHP metrics: PCK at 150 mm, AUC over 0-150 mm, MPJPE; per sequence, per scene, overall.

The definitions are those of the dataset's MATLAB evaluation (``mpii_compute_3d_pck.m``,
``mpii_evaluate_errors.m``; see docs/datasets.md):

- a joint is correct at threshold ``t`` when its root-relative error is **strictly** below ``t`` mm;
- **PCK** = 100 x the fraction of correct (joint, frame) pairs at 150 mm;
- **AUC** = the mean of the PCK over the 31 thresholds 0, 5, ..., 150 mm (in %; the 0 mm term is always 0);
- **MPJPE** = the mean error over all 17 joints (pelvis included, which is 0 for root-relative poses);
- every valid test frame has weight one: a scene or the whole set pools its frames, which equals the
  official frame-weighted average of the per-sequence numbers.

Two joint sets, named in every key so that they cannot be mixed up:

- ``mpii14``: the 14 joints the official evaluation scores (head top, neck, shoulders, elbows, wrists, hips,
  knees, ankles; :data:`~hotpose.data.skeleton.MPI_INF_3DHP_EVAL_JOINTS`). Use these to compare with numbers
  computed by the MATLAB script (P-STMO, MotionAGFormer).
- ``all17``: all 17 joints, as Python re-implementations of the metric compute it; the pelvis, always
  correct, makes these PCK/AUC a little higher.

Keys of :meth:`MPIINF3DHPMetric.compute`: ``pck150_mpii14``, ``auc_mpii14``, ``pck150_all17``, ``auc_all17``,
``mpjpe_mm``, ``frames`` overall; the same under ``sequence/<TS>/`` and ``scene/<GS|noGS|Outdoor>/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from hotpose.data.mpi_inf_3dhp import SCENES
from hotpose.data.skeleton import MPI_INF_3DHP_EVAL_JOINTS, NUM_JOINTS

#: thresholds of the AUC, mm: 0:5:150 as in mpii_compute_3d_pck.m
AUC_THRESHOLDS_MM: tuple[float, ...] = tuple(float(t) for t in range(0, 151, 5))
PCK_THRESHOLD_MM = 150.0
JOINT_SETS: dict[str, tuple[int, ...]] = {"mpii14": MPI_INF_3DHP_EVAL_JOINTS, "all17": tuple(range(NUM_JOINTS))}
#: the name of this benchmark's results in ``HotposeModule.results`` and ``metrics.json``
BENCHMARK = "mpi_inf_3dhp"
#: the overall keys, in table order
KEYS: tuple[str, ...] = ("pck150_mpii14", "auc_mpii14", "pck150_all17", "auc_all17", "mpjpe_mm", "frames")


def joint_errors_mm(pred: Tensor, target: Tensor, scale: float = 1000.0) -> Tensor:
    """Per-joint distance ``(..., j, 3)`` → ``(..., j)`` in mm (inputs in metres for ``scale=1000``), float64."""
    if pred.shape != target.shape or pred.shape[-1] != 3:
        raise ValueError(f"poses must both be (..., j, 3); got {tuple(pred.shape)} and {tuple(target.shape)}")
    return torch.linalg.vector_norm(pred.double() - target.double(), dim=-1) * scale


def pck(errors_mm: Tensor, threshold_mm: float = PCK_THRESHOLD_MM) -> Tensor:
    """Percentage of joint errors ``(n, j)`` strictly below ``threshold_mm`` (0-d tensor, %)."""
    return (errors_mm < threshold_mm).double().mean() * 100


def auc(errors_mm: Tensor, thresholds_mm: Sequence[float] = AUC_THRESHOLDS_MM) -> Tensor:
    """Mean PCK over ``thresholds_mm`` of joint errors ``(n, j)`` (0-d tensor, %)."""
    t = torch.as_tensor(thresholds_mm, dtype=errors_mm.dtype, device=errors_mm.device)
    return (errors_mm[..., None] < t).double().mean() * 100


def summarize(errors_mm: Tensor) -> dict[str, Tensor]:
    """PCK/AUC of both joint sets, MPJPE and the frame count of per-frame joint errors ``(n, 17)``."""
    out: dict[str, Tensor] = {}
    for name, joints in JOINT_SETS.items():
        chosen = errors_mm[:, list(joints)]
        out[f"pck150_{name}"] = pck(chosen)
        out[f"auc_{name}"] = auc(chosen)
    out["mpjpe_mm"] = errors_mm.mean()
    out["frames"] = torch.tensor(float(len(errors_mm)), dtype=torch.float64)
    return out


class MPIINF3DHPMetric(Metric):
    """PCK / AUC / MPJPE of the scored (valid) frames, per test sequence, per scene and overall.

    Every scored frame adds one row (its sequence, its frame number and its 17 joint errors; ``cat`` states,
    gathered under DDP). :meth:`compute` keeps one row per (sequence, frame), so frames that a distributed
    sampler repeats to even out the ranks are counted once and the DDP result equals the single-process one.

    Args:
        sequences: the fixed sequence vocabulary (the same on every rank), e.g. ``["TS1", ..., "TS6"]``.
        scenes: scene name → its sequences; scenes none of whose sequences were scored are left out.
        scale: factor from the input unit to mm (1000 for metres).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True
    #: the key of its results in ``HotposeModule.results`` / ``metrics.json`` (``test/mpi_inf_3dhp``)
    benchmark = BENCHMARK

    def __init__(self, sequences: Sequence[str], scenes: Mapping[str, Sequence[str]] | None = None,
                 scale: float = 1000.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sequences = list(dict.fromkeys(str(s) for s in sequences))
        if not self.sequences:
            raise ValueError("MPIINF3DHPMetric needs the list of test sequences")
        self.scenes = {str(k): [str(s) for s in v] for k, v in (SCENES if scenes is None else scenes).items()}
        self.scale = float(scale)
        self.add_state("sequence", default=[], dist_reduce_fx="cat")
        self.add_state("frame", default=[], dist_reduce_fx="cat")
        self.add_state("errors", default=[], dist_reduce_fx="cat")

    def update(self, pred: Tensor, target: Tensor, valid: Tensor, sequences: Sequence[str], frames: Tensor) -> None:
        """Add the scored frames of a batch of windows.

        Args:
            pred, target: ``(b, f, 17, 3)`` root-relative poses (root zeroed), metres.
            valid: ``(b, f)`` bool, True on the frames to score (real and marked valid in the file).
            sequences: ``b`` sequence names (``"TS1"``).
            frames: ``(b, f)`` int64 frame number of each output frame in its sequence.
        """
        if pred.ndim != 4 or pred.shape[2] != NUM_JOINTS:
            raise ValueError(f"MPIINF3DHPMetric.update expects (b, f, {NUM_JOINTS}, 3) poses, "
                             f"got {tuple(pred.shape)}")
        b, f = pred.shape[:2]
        if tuple(valid.shape) != (b, f) or tuple(frames.shape) != (b, f):
            raise ValueError(f"valid and frames must be (b, f) = {(b, f)}, got {tuple(valid.shape)} and "
                             f"{tuple(frames.shape)}")
        if len(sequences) != b:
            raise ValueError(f"got {len(sequences)} sequence names for {b} windows")
        unknown = sorted(set(sequences) - set(self.sequences))
        if unknown:
            raise ValueError(f"sequences {unknown} are not in the metric's vocabulary {self.sequences}")
        dev = pred.device
        ids = torch.tensor([self.sequences.index(s) for s in sequences], dtype=torch.long, device=dev)
        mask = valid.to(dev).bool()
        errors = joint_errors_mm(pred, target, self.scale)  # (b, f, 17)
        self.sequence.append(ids[:, None].expand(b, f)[mask])
        self.frame.append(frames.to(dev, torch.long)[mask])
        self.errors.append(errors[mask])

    def compute(self) -> dict[str, Tensor]:
        """Flat dict: the :data:`KEYS` overall, under ``sequence/<name>/`` and under ``scene/<name>/``."""
        if isinstance(self.errors, list) and not self.errors:
            return {"frames": torch.tensor(0.0, dtype=torch.float64)}
        sequence, frame = dim_zero_cat(self.sequence), dim_zero_cat(self.frame)
        errors = dim_zero_cat(self.errors).reshape(-1, NUM_JOINTS)
        if len(errors) == 0:
            return {"frames": torch.tensor(0.0, dtype=torch.float64)}
        keep = _first_of_each(sequence * (1 << 32) + frame)
        sequence, errors = sequence[keep], errors[keep]
        out = dict(summarize(errors))
        for i, name in enumerate(self.sequences):
            rows = sequence == i
            if rows.any():
                out.update({f"sequence/{name}/{k}": v for k, v in summarize(errors[rows]).items()})
        for scene, members in self.scenes.items():
            ids = [self.sequences.index(s) for s in members if s in self.sequences]
            rows = torch.isin(sequence, torch.tensor(ids, dtype=torch.long, device=sequence.device))
            if rows.any():
                out.update({f"scene/{scene}/{k}": v for k, v in summarize(errors[rows]).items()})
        return out


def _first_of_each(key: Tensor) -> Tensor:
    """Sorted indices of the first occurrence of every distinct value of ``key``."""
    uniq, inverse = torch.unique(key, return_inverse=True)
    rows = torch.arange(len(key), device=key.device)
    first = torch.full((len(uniq),), len(key), dtype=torch.long, device=key.device)
    return first.scatter_reduce(0, inverse, rows, reduce="amin").sort().values


def benchmark_summary(result: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """``compute()`` output (as floats) → ``{"overall": {...}, "per_sequence": {TS: {...}}, "per_scene": {...}}``."""
    summary: dict[str, dict[str, Any]] = {"overall": {}, "per_sequence": {}, "per_scene": {}}
    for key, value in result.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] in ("sequence", "scene"):
            table = summary["per_sequence" if parts[0] == "sequence" else "per_scene"]
            table.setdefault(parts[1], {})[parts[2]] = float(value)
        else:
            summary["overall"][key] = float(value)
    return summary


def format_benchmark_table(summary: Mapping[str, Any]) -> Any:
    """A rich table of :func:`benchmark_summary`'s output: one row per sequence, per scene and the total."""
    from rich.table import Table

    columns = (("PCK@150 14j (%)", "pck150_mpii14"), ("AUC 14j (%)", "auc_mpii14"),
               ("PCK@150 17j (%)", "pck150_all17"), ("AUC 17j (%)", "auc_all17"),
               ("MPJPE (mm)", "mpjpe_mm"), ("frames", "frames"))
    table = Table(title="MPI-INF-3DHP (valid frames; 14j = the official evaluation's joints, 17j = all)")
    table.add_column("sequence / scene")
    for title, _ in columns:
        table.add_column(title, justify="right")
    groups = [list(summary.get("per_sequence", {}).items()), list(summary.get("per_scene", {}).items()),
              [("All", summary.get("overall", {}))]]
    for rows in groups:
        for i, (name, row) in enumerate(rows):
            cells = [f"{row[k]:.0f}" if k == "frames" else f"{row[k]:.2f}" if k in row else "–"
                     for _, k in columns]
            table.add_row(name, *cells, end_section=i == len(rows) - 1)
    return table
