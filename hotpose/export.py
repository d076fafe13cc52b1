"""``python -m hotpose.export ckpt=PATH format=onnx|torchscript|both``: export a (pruned) model, check it.

The exported graph maps normalised keypoints ``(b, F, 17, cin)`` (any batch size ``b``) to
``pose (b, f_out, 17, 3)`` and ``frame_index (b, f_out)`` int64, exactly the network's
:class:`~hotpose.models.hourglass.HourglassOutput` without the ``kept`` list. After writing it, the file
is run (onnxruntime, or the loaded TorchScript module) on several inputs and compared with PyTorch:
``|pose − pose_torch| ≤ atol`` (1e-4) and identical ``frame_index`` (same frames selected).

What the pruning needed (DPC-kNN: cdist, topk, sort, gather, in :mod:`hotpose.models.pruners`):

- ``torch.export`` (step 1 of the ONNX exporter) refuses the hourglass's input check ``bool(isfinite(x)
  .all())`` (a data-dependent branch); the export runs the network with that check left out
  (:func:`export_friendly`), keeping the 2 → 3 channel completion.
- ``torch.cdist(..., compute_mode="donot_use_mm_for_euclid_dist")`` (``aten._cdist_forward``) has no ONNX
  translation: it is given one, ``sqrt(sum((a_i − b_j)²))`` by broadcasting, which is what that mode computes
  (self-distances exactly 0, symmetric), so mutual-nearest-neighbour ties stay ties.
- ``torch.sort(..., stable=True)`` (``aten.sort.stable``) has none either: ONNX ``TopK`` over the whole
  axis with ``sorted=1`` is one, because the ONNX spec breaks ties towards the lower index, which is the
  stable order. ``topk``, ``gather``, ``scatter`` and the comparisons translate as they are.
- The legacy TorchScript-based ONNX exporter (``dynamo=False``) cannot export the stable sort at all.
- The ``official`` TPC tie-break draws ``torch.rand`` noise at every call; such a graph cannot match
  PyTorch, so the export uses the ``deterministic`` tie-break (``tie_break=`` below; the change is printed).
"""

from __future__ import annotations

import json
import logging
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

import hotpose.cli_help  # noqa: F401  (registers the resolver of the --help text)
from hotpose.errors import check_required, one_line_user_errors, writable_folder
from hotpose.inference.checkpoint import load_model
from hotpose.models.hourglass import CONFIDENCE_CHANNELS, Hourglass
from hotpose.models.pruners import TPC
from hotpose.progress import progress
from hotpose.progress import track as track_progress

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts.pt"}
OPSET = 18


class PoseExport(nn.Module):
    """The hourglass as ``x (b, F, 17, cin) -> (pose (b, f_out, 17, 3), frame_index (b, f_out))``."""

    def __init__(self, net: Hourglass) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(x)
        return out.pose, out.frame_index


def _prepare_without_checks(self: Hourglass, x: Tensor) -> Tensor:
    # Same channel rule as Hourglass._prepare_input, without the data-dependent finiteness check.
    if x.shape[3] == 2 and self.in_channels == CONFIDENCE_CHANNELS:
        x = torch.cat([x, x.new_ones(x.shape[:3] + (1,))], dim=-1)
    return x


@contextmanager
def export_friendly(net: Hourglass, tie_break: str = "deterministic") -> Iterator[list[str]]:
    """Temporarily make ``net`` traceable: no input check, a fixed TPC tie-break. Yields what changed."""
    changes: list[str] = []
    policy = net.policy
    old_tie_break = policy.tie_break if isinstance(policy, TPC) else None
    if old_tie_break is not None and old_tie_break != tie_break:
        policy.tie_break = tie_break
        changes.append(f"TPC tie_break {old_tie_break!r} -> {tie_break!r}")
    net._prepare_input = types.MethodType(_prepare_without_checks, net)
    try:
        yield changes
    finally:
        del net._prepare_input
        if old_tie_break is not None:
            policy.tie_break = old_tie_break


def onnx_translations() -> dict[Any, Any]:
    """ONNX translations for the two ops of DPC-kNN that the exporter lacks (module docstring)."""
    from onnxscript import opset18 as op

    def cdist(x1, x2, p: float = 2.0, compute_mode: int = 0):
        if p != 2.0:
            raise ValueError(f"only the Euclidean cdist (p=2) is translated, got p={p}")
        diff = op.Sub(op.Unsqueeze(x1, [-2]), op.Unsqueeze(x2, [-3]))
        return op.Sqrt(op.ReduceSum(op.Mul(diff, diff), [-1], keepdims=0))

    def sort_stable(self, stable: bool = False, dim: int = -1, descending: bool = False):
        size = op.Shape(self, start=dim) if dim == -1 else op.Shape(self, start=dim, end=dim + 1)
        values, indices = op.TopK(self, size, axis=dim, largest=1 if descending else 0, sorted=1)
        return values, indices

    return {torch.ops.aten._cdist_forward.default: cdist, torch.ops.aten.sort.stable: sort_stable}


def example_inputs(frames: int, channels: int, batch: int, seed: int = 0) -> list[Tensor]:
    """Check inputs ``(batch, frames, 17, channels)``: white noise, and a slow random walk (neighbouring
    frames alike, as in video, where DPC-kNN meets near-ties)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, frames, 17, channels, generator=generator) * 0.3
    walk = (torch.randn(batch, frames, 17, channels, generator=generator) * 0.01).cumsum(dim=1)
    walk = walk + torch.randn(batch, 1, 17, channels, generator=generator) * 0.3
    inputs = [noise, walk]
    if channels == CONFIDENCE_CHANNELS:
        for x in inputs:
            x[..., 2] = torch.rand(x.shape[:3], generator=generator)
    return inputs


def export_onnx(module: PoseExport, example: Tensor, path: Path, opset: int = OPSET) -> Path:
    """Write the ONNX file with a dynamic batch axis (the dynamo exporter)."""
    batch = torch.export.Dim("batch", min=1, max=65536)
    torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=opset,
                      input_names=["keypoints"], output_names=["pose", "frame_index"],
                      dynamic_shapes={"x": {0: batch}}, custom_translation_table=onnx_translations(),
                      verbose=False)
    return path


def export_torchscript(module: PoseExport, example: Tensor, path: Path) -> Path:
    """Trace to TorchScript (the selection ops are traced as tensor ops, so it stays data-dependent)."""
    import warnings

    with warnings.catch_warnings():
        # tracing warns about the shape checks turned into constants and about jit's deprecation
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (example,), check_trace=False)
    traced.save(str(path))
    return path


def onnx_runner(path: Path):
    from hotpose.inference.onnx_backend import cpu_session

    session = cpu_session(path)
    name = session.get_inputs()[0].name
    return lambda x: tuple(torch.from_numpy(np.asarray(v)) for v in session.run(None, {name: x.numpy()}))


def torchscript_runner(path: Path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jit is deprecated, still the simple format
        loaded = torch.jit.load(str(path))
    return lambda x: tuple(v.detach() for v in loaded(x))


def check_parity(module: PoseExport, runner, inputs: list[Tensor], atol: float) -> dict[str, Any]:
    """Compare the exported ``runner`` with PyTorch on ``inputs``; ValueError past ``atol``."""
    worst, same_frames = 0.0, True
    with torch.no_grad():
        for x in track_progress(inputs, "checking the export against PyTorch"):
            pose, frame_index = module(x)
            pose_x, frame_index_x = runner(x)
            if tuple(pose_x.shape) != tuple(pose.shape):
                raise ValueError(f"exported pose shape {tuple(pose_x.shape)} != PyTorch {tuple(pose.shape)}")
            same_frames &= bool(torch.equal(frame_index_x.long(), frame_index.long()))
            worst = max(worst, float((pose_x.float() - pose).abs().max()))
    if worst > atol or not same_frames:
        raise ValueError(f"exported model differs from PyTorch: max |pose diff| {worst:.3g} (atol {atol}), "
                         f"same selected frames: {same_frames}")
    return {"max_abs_diff": worst, "same_frame_index": same_frames, "inputs": len(inputs)}


def export_checkpoint(ckpt: str | Path, formats: list[str], output_dir: str | Path | None = None,
                      check: bool = True, atol: float = 1e-4, batches: tuple[int, ...] = (1, 3),
                      tie_break: str = "deterministic", opset: int = OPSET) -> dict[str, Any]:
    """Export the checkpoint's model in ``formats``; returns paths, checks and what had to change."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"format must be one of {FORMATS} (or both), got {formats}")
    loaded = load_model(ckpt)
    net = loaded.net.eval()
    out_dir = writable_folder(Path(output_dir) if output_dir else loaded.path.parent, "output_dir")
    module = PoseExport(net).eval()
    summary: dict[str, Any] = {"checkpoint": str(loaded.path), "model": loaded.describe(), "exports": {}}
    with export_friendly(net, tie_break) as changes:
        summary["changes"] = changes
        example = example_inputs(net.frames, net.in_channels, 2)[1]
        inputs = [x for b in batches for x in example_inputs(net.frames, net.in_channels, b, seed=b)]
        for fmt in formats:
            path = out_dir / (loaded.path.stem + SUFFIXES[fmt])
            with progress(f"exporting {fmt}"):  # the dynamo exporter takes minutes on large models
                if fmt == "onnx":
                    export_onnx(module, example, path, opset)
                    runner = onnx_runner
                else:
                    export_torchscript(module, example, path)
                    runner = torchscript_runner
            entry: dict[str, Any] = {"path": str(path), "bytes": path.stat().st_size}
            if check:
                entry["check"] = check_parity(module, runner(path), inputs, atol)
            summary["exports"][fmt] = entry
    return summary


@hydra.main(version_base="1.3", config_path="../configs", config_name="export")
@one_line_user_errors()  # a bad checkpoint or option: one line, exit 2
def main(cfg: DictConfig) -> None:
    for name in ("onnx_ir", "onnxscript"):  # their INFO lines on graph rewriting drown the result
        logging.getLogger(name).setLevel(logging.WARNING)
    check_required(cfg)
    formats = list(FORMATS) if cfg.format == "both" else [str(cfg.format)]
    summary = export_checkpoint(cfg.ckpt, formats, cfg.get("output_dir"), check=bool(cfg.check),
                                atol=float(cfg.atol), batches=tuple(int(b) for b in cfg.check_batches),
                                tie_break=str(cfg.tie_break), opset=int(cfg.opset))
    for change in summary["changes"]:
        print(f"note: exported with {change}")
    for fmt, entry in summary["exports"].items():
        check = entry.get("check")
        verdict = (f"matches PyTorch (max |diff| {check['max_abs_diff']:.2e}, same frames)" if check
                   else "not checked")
        print(f"{fmt}: {entry['path']} ({entry['bytes'] / 1e6:.1f} MB), {verdict}")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
