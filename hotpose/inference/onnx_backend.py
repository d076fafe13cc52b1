"""ONNX Runtime as the backend of the lifting loops (``backend=onnxruntime`` in ``infer`` and ``stream``).

The network is exported once per run with :mod:`hotpose.export` (dynamo exporter, dynamic batch axis,
TPC with the deterministic tie-break: the official random one cannot be a graph), checked against
PyTorch on two inputs, and then called like the network: ``net(x)`` returns a
:class:`~hotpose.models.hourglass.HourglassOutput` (pose and frame index; no ``kept`` list, so a
selection cannot be reused, which the lifting loops never do). float32 on CPU only.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch

from hotpose.models.hourglass import Hourglass, HourglassOutput

BACKENDS = ("torch", "onnxruntime")


def check_backend(backend: str, precision: str, device: torch.device | str) -> None:
    """ValueError naming the combination that cannot run."""
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime" and (precision != "float32" or torch.device(device).type != "cpu"):
        raise ValueError(f"backend=onnxruntime runs the exported float32 graph on CPU; got precision={precision}, "
                         f"device={device} (use backend=torch for reduced precision or a GPU)")


def cpu_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session for ``path`` with ``threads`` intra-op threads (default: torch's)."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError("backend=onnxruntime needs the onnxruntime package: pip install 'hotpose[export]'") \
            from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeNet:
    """An exported network run by an ONNX Runtime session; called like the PyTorch network."""

    def __init__(self, path: str | Path, frames: int, in_channels: int, threads: int | None = None) -> None:
        self.path, self.frames, self.in_channels = Path(path), int(frames), int(in_channels)
        self.session = cpu_session(path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def to(self, device: torch.device | str) -> OnnxRuntimeNet:
        """CPU only (checked by :func:`check_backend`); there for the loops that move their network."""
        if torch.device(device).type != "cpu":
            raise ValueError(f"backend=onnxruntime runs on CPU, not {device}")
        return self

    def __call__(self, x: torch.Tensor) -> HourglassOutput:
        pose, frame_index = self.session.run(None, {self.input_name: x.detach().cpu().float().numpy()})
        return HourglassOutput(torch.from_numpy(np.asarray(pose)), torch.from_numpy(np.asarray(frame_index)).long(),
                               [])


def export_for_onnxruntime(net: Hourglass, folder: str | Path | None = None, atol: float = 1e-4) -> OnnxRuntimeNet:
    """Export ``net`` to ``folder/model.onnx`` (a temporary folder if None), check it, open a session."""
    from hotpose.export import PoseExport, check_parity, example_inputs, export_friendly, export_onnx

    folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="hotpose-onnx-"))
    path = folder / "model.onnx"
    module = PoseExport(net.eval()).eval()
    with export_friendly(net):
        inputs = example_inputs(net.frames, net.in_channels, 2)
        export_onnx(module, inputs[1], path)
        runner = OnnxRuntimeNet(path, net.frames, net.in_channels)
        check_parity(module, lambda x: tuple(runner(x)[:2]), inputs, atol)
    return runner
