"""ONNX and TorchScript export of pruned models, checked against PyTorch by the exporter itself."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from inference_helpers import model_config, save_checkpoint, tiny_mixste

from hotpose.export import PoseExport, check_parity, export_checkpoint, export_friendly, onnx_runner
from hotpose.inference.checkpoint import build_from_config, load_model

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "onnxscript"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx, onnxruntime and onnxscript are needed (the "
                                                     "'export' extra)")


@needs_onnx
def test_onnx_export_of_a_tpc_tra_model_matches_pytorch(tmp_path) -> None:
    ckpt = save_checkpoint(tmp_path / "hot.ckpt", tiny_mixste(frames=9, tokens=3))
    summary = export_checkpoint(ckpt, ["onnx"], tmp_path / "out", batches=(1, 4))
    check = summary["exports"]["onnx"]["check"]
    assert check["max_abs_diff"] <= 1e-4 and check["same_frame_index"] and check["inputs"] == 4
    # and independently of the exporter's own check: a new batch size, real-looking input
    model = load_model(ckpt)
    run = onnx_runner(tmp_path / "out" / "hot.onnx")
    x = torch.randn(6, 9, 17, 2).cumsum(dim=1) * 0.05
    pose, frame_index = run(x)
    with torch.no_grad():
        expected = model.net(x)
    torch.testing.assert_close(pose, expected.pose, atol=1e-4, rtol=0)
    assert torch.equal(frame_index, expected.frame_index)


@needs_onnx
def test_onnx_export_of_a_three_channel_seq2frame_model(tmp_path) -> None:
    config = model_config("backbone=motionbert", "size=tiny", "pruner=tpc", "recoverer=none", "pipeline=seq2frame",
                          "backbone.frames=9", "backbone.prune_layer=1", "backbone.prune_tokens=3",
                          "backbone.net.depth=2")
    ckpt = save_checkpoint(tmp_path / "tpc.ckpt", config)
    summary = export_checkpoint(ckpt, ["onnx"], tmp_path / "out", batches=(2,))
    assert summary["exports"]["onnx"]["check"]["same_frame_index"]


def test_torchscript_export_matches_and_restores_the_model(tmp_path) -> None:
    config = tiny_mixste(frames=9, tokens=3)
    config["pruner"]["policy"]["tie_break"] = "official"
    ckpt = save_checkpoint(tmp_path / "hot.ckpt", config)
    summary = export_checkpoint(ckpt, ["torchscript"], tmp_path / "out", batches=(2,))
    assert summary["exports"]["torchscript"]["check"]["max_abs_diff"] <= 1e-4
    assert summary["changes"] == ["TPC tie_break 'official' -> 'deterministic'"]
    net = load_model(ckpt).net
    with export_friendly(net) as changes:
        assert "_prepare_input" in vars(net) and net.policy.tie_break == "deterministic" and changes
    assert "_prepare_input" not in vars(net) and net.policy.tie_break == "official"


def test_parity_check_can_fail() -> None:
    module = PoseExport(build_from_config(tiny_mixste(frames=9, tokens=3))).eval()

    def shifted(x):
        pose, frame_index = module(x)
        return pose + 1e-3, frame_index

    with pytest.raises(ValueError, match="differs from PyTorch"):
        check_parity(module, shifted, [torch.randn(1, 9, 17, 2)], atol=1e-4)


def test_bad_format_is_refused(tmp_path) -> None:
    ckpt = save_checkpoint(tmp_path / "m.ckpt", tiny_mixste())
    with pytest.raises(ValueError, match="format must be one of"):
        export_checkpoint(ckpt, ["tflite"], tmp_path)


@needs_onnx
def test_lifter_on_onnxruntime_equals_the_pytorch_lifter(tmp_path) -> None:
    """backend=onnxruntime: the same poses as PyTorch (deterministic TPC both) for a track of several
    windows, flip included; reduced precision or a GPU is refused with the combination named.

    27 frames = three whole windows: an edge-padded window of this tiny model has near-duplicate
    frames whose DPC-kNN densities round to 1.0 in float32, and there ONNX Runtime's and PyTorch's last
    bits pick other frames (docs/performance.md)."""
    from hotpose.inference.lifter import Lifter
    from hotpose.inference.onnx_backend import OnnxRuntimeNet

    ckpt = save_checkpoint(tmp_path / "hot.ckpt", tiny_mixste(frames=9, tokens=3))
    keypoints = (torch.randn(27, 17, 2).cumsum(dim=0) * 2 + 500).numpy()
    on_torch = Lifter.from_checkpoint(ckpt, batch_size=4)
    on_ort = Lifter.from_checkpoint(ckpt, batch_size=4, backend="onnxruntime")
    assert isinstance(on_ort.net, OnnxRuntimeNet) and "(onnxruntime)" in on_ort.describe()
    expected = on_torch.lift(keypoints, image_size=(1000, 1000), layout="h36m")
    got = on_ort.lift(keypoints, image_size=(1000, 1000), layout="h36m")
    assert got.poses_3d.shape == (27, 17, 3) and got.passes == expected.passes == 2
    assert abs(got.poses_3d - expected.poses_3d).max() <= 1e-4
    with pytest.raises(ValueError, match="backend=onnxruntime runs the exported float32 graph on CPU"):
        Lifter.from_checkpoint(ckpt, precision="bf16", backend="onnxruntime")
    with pytest.raises(ValueError, match="choose one of torch, onnxruntime"):
        Lifter.from_checkpoint(ckpt, backend="tensorrt")
