"""Reduced precision: bf16 autocast and int8 dynamic quantisation stay within stated tolerances of float32."""

from __future__ import annotations

import warnings
from functools import partial

import pytest
import torch
from torch import nn

import hotpose.precision as precision_module
from hotpose.models.backbones.mixste import MixSTE
from hotpose.models.backbones.motionbert import MotionBERT
from hotpose.models.hourglass import Hourglass
from hotpose.models.layers import Linear
from hotpose.precision import PRECISIONS, autocast, check_precision, prepare_model

# Relative output deviation ||y - y_fp32|| / ||y_fp32|| allowed on tiny random-weight models.
# bf16 keeps 8 mantissa bits (2^-9 ~ 0.2% per op); int8 rounds weights and activations to 1/127 of
# their range. Trained models deviate less (docs/performance.md states the mm on a trained model).
TOLERANCE = {"float32": 0.0, "bf16": 0.02, "int8": 0.08}
TINY = {
    "mixste": partial(MixSTE, frames=27, dim=32, depth=2, heads=4, mlp_hidden=64),
    "motionbert": partial(MotionBERT, frames=27, dim=32, depth=2, heads=4, mlp_hidden=64, dim_rep=32),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("family", list(TINY))
def test_reduced_precision_stays_close_to_float32(family: str, precision: str) -> None:
    torch.manual_seed(0)
    net = Hourglass(TINY[family]).eval()
    x = torch.randn(3, 27, 17, 2)
    with torch.no_grad():
        reference = net(x).pose
        model = prepare_model(net, precision, "cpu")
        with autocast(precision, "cpu"):
            pose = model(x).pose.float()
    deviation = ((pose - reference).norm() / reference.norm()).item()
    assert deviation <= TOLERANCE[precision]
    if precision != "float32":
        assert deviation > 0  # the reduced path really ran


def test_int8_quantises_every_linear_on_a_copy() -> None:
    net = Hourglass(TINY["mixste"]).eval()
    model = prepare_model(net, "int8")
    assert model is not net
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert any(type(m) is Linear for m in net.modules())  # the float model is untouched


@pytest.mark.parametrize("family", list(TINY))
def test_bf16_weights_stored_once_give_autocasts_numbers(family: str) -> None:
    """On CPU the bf16 model holds its linear weights in bfloat16: the values autocast would make on
    every call, so the output is bit-identical to autocast over the float32 model."""
    torch.manual_seed(0)
    net = Hourglass(TINY[family]).eval()
    x = torch.randn(2, 27, 17, 2)
    model = prepare_model(net, "bf16", "cpu")
    assert model is not net
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(m.weight.dtype == torch.bfloat16 for m in linears)
    assert all(m.weight.dtype == torch.float32 for m in net.modules() if isinstance(m, nn.Linear))
    assert all(p.dtype == torch.float32 for m in model.modules() if isinstance(m, nn.LayerNorm)
               for p in m.parameters())
    with torch.no_grad(), autocast("bf16", "cpu"):
        assert torch.equal(model(x).pose, net(x).pose)


def test_autocast_contexts() -> None:
    with autocast("bf16", "cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    for precision in ("float32", "int8"):
        with autocast(precision, "cpu"):
            assert not torch.is_autocast_enabled("cpu")


def test_bad_precision_and_int8_on_cuda_are_refused() -> None:
    with pytest.raises(ValueError, match="choose one of float32, bf16, int8"):
        check_precision("fp16")
    with pytest.raises(ValueError, match="int8 .* runs on CPU only, not on cuda"):
        prepare_model(nn.Linear(2, 2), "int8", "cuda")
    with pytest.raises(ValueError, match="CPU only"):
        autocast("int8", torch.device("cuda", 0))


def test_bf16_on_a_cpu_without_bf16_arithmetic_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an AVX2-only CPU bf16 is emulated (several times slower than float32): prepare_model says so."""
    net = nn.Sequential(nn.Linear(4, 4))
    monkeypatch.setattr(precision_module, "native_cpu_bf16", lambda: False)
    with pytest.warns(UserWarning, match="without bfloat16 arithmetic.*use precision=float32 or int8"):
        precision_module.prepare_model(net, "bf16")
    monkeypatch.setattr(precision_module, "native_cpu_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        precision_module.prepare_model(net, "bf16")
        precision_module.prepare_model(net, "float32")
