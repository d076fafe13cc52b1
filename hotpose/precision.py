"""Numeric precision of a model run: float32, bf16 autocast, or int8 dynamic quantisation.

The contract every entry point (``hotpose.infer``, ``hotpose.eval``, ``hotpose.bench``, streaming)
codes against::

    model = prepare_model(model, precision, device)      # once, before the first forward
    with autocast(precision, device):                    # around every forward
        out = model(x)

- ``float32``: the model as it is; ``autocast`` is a ``nullcontext``.
- ``bf16``: ``torch.autocast`` runs matmuls, linears and convolutions in bfloat16 on CPU (fast with
  AVX-512 BF16 / AMX; emulated and several times slower than float32 without them, which
  :func:`prepare_model` warns about) and CUDA. Outputs come back float32 where the last op is
  autocast's float32 list, otherwise bf16: callers that need float32 call ``.float()``. On CPU the
  model is copied with the weights and biases of its linear and convolution layers stored in
  bfloat16: autocast would cast them to exactly these values on every call (round to nearest), which
  at batch 1 costs up to a fifth of a forward pass. Other parameters (norms, embeddings) stay float32,
  as autocast keeps them. Where the CPU has oneDNN's bf16 GEMM, hotpose's ``Linear`` then calls it
  itself, bias fused (see :func:`hotpose.models.layers.cpu_linear`).
- ``int8``: every ``nn.Linear`` replaced by a dynamically quantised one (int8 weights, per-batch int8
  activations, float32 everything else), CPU only. It goes through ``torch.ao.quantization
  .quantize_dynamic``: deprecated in favour of torchao, which targets GPUs and has no maintained CPU
  dynamic-int8 linear kernel as fast as fbgemm's, so this stays the CPU route until torch removes it.
  The model is copied (the caller's float model is left untouched).

Token selection (TPC) with its default deterministic tie-break scores frames on exact distances of
the features it is given, whatever the precision (float64 arithmetic, which autocast does not lower;
see :mod:`hotpose.models.dpc`), so the kept frames depend only on the features reaching it. With the
official tie-break, bf16 runs cdist's float32 formula on oneDNN's GEMM
(:func:`hotpose.models.dpc.official_form_distances`).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from typing import Any

import torch
from torch import nn

PRECISIONS = ("float32", "bf16", "int8")


def _device_type(device: torch.device | str) -> str:
    return torch.device(device).type


def check_precision(precision: str, device: torch.device | str = "cpu") -> None:
    """ValueError naming the precision or device combination that cannot run."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: choose one of {', '.join(PRECISIONS)}")
    kind = _device_type(device)
    if precision == "int8" and kind != "cpu":
        raise ValueError(f"precision=int8 (dynamic quantisation of the linear layers) runs on CPU only, "
                         f"not on {kind}: use precision=bf16 on {kind}, or device=cpu")


def native_cpu_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX-512 BF16 or AMX tiles)."""
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def prepare_model(model: nn.Module, precision: str, device: torch.device | str = "cpu") -> nn.Module:
    """The model to run at ``precision`` on ``device`` (moved there; a quantised copy for int8)."""
    check_precision(precision, device)
    model = model.to(device)
    if precision == "bf16" and _device_type(device) == "cpu":
        if not native_cpu_bf16():
            # measured: a 512-2048-512 MLP on 4131 tokens, 1 thread of an AVX2 AMD EPYC (Zen 3): 6.8x slower
            warnings.warn("precision=bf16 on a CPU without bfloat16 arithmetic (no AVX-512 BF16, no AMX): torch "
                          "emulates it, several times slower than float32; use precision=float32 or int8 on this "
                          "CPU", UserWarning, stacklevel=2)
        return _bf16_weights(model)
    if precision != "int8":
        return model
    with warnings.catch_warnings():
        # the deprecation notices of torch.ao (see the module docstring) would print on every build
        warnings.simplefilter("ignore", category=UserWarning)
        warnings.simplefilter("ignore", category=DeprecationWarning)
        from torch.ao.quantization import quantize_dynamic

        copied = copy.deepcopy(model).eval()
        for module in copied.modules():
            if isinstance(module, nn.Linear):
                module.__class__ = nn.Linear  # torch.ao matches exact types; hotpose's Linear only picks a GEMM
        return quantize_dynamic(copied, {nn.Linear}, dtype=torch.qint8)


# the layers whose weights autocast lowers to bfloat16 (torch.autocast's lower-precision op list)
_AUTOCAST_LOWERED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _bf16_weights(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose linear/convolution weights and biases are bfloat16 (see module docstring)."""
    model = copy.deepcopy(model)
    # Ordinary tensors even when called in inference mode (hotpose's Linear keeps a packed copy of
    # ordinary weights only: inference tensors have no version counter to notice a change).
    with torch.inference_mode(False), torch.no_grad():
        for module in model.modules():
            if isinstance(module, _AUTOCAST_LOWERED):
                for name, param in list(module.named_parameters(recurse=False)):
                    if param.is_floating_point():
                        setattr(module, name, nn.Parameter(param.detach().to(torch.bfloat16), requires_grad=False))
    return model


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """Context for the forward passes: bf16 autocast on CPU or CUDA, a no-op for float32 and int8."""
    check_precision(precision, device)
    if precision == "bf16":
        return torch.autocast(_device_type(device), dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_float32(out: Any) -> Any:
    """``out`` with every floating tensor in it (also inside tuples, NamedTuples, lists) as float32:
    what metrics, losses and file writers downstream expect, whatever precision computed it."""
    if isinstance(out, torch.Tensor):
        return out.float() if out.is_floating_point() and out.dtype != torch.float32 else out
    if isinstance(out, tuple) and hasattr(out, "_fields"):
        return type(out)(*(to_float32(v) for v in out))
    if isinstance(out, (tuple, list)):
        return type(out)(to_float32(v) for v in out)
    return out


class AtPrecision:
    """``net`` as a callable that runs at ``precision`` on ``device`` and returns float32 outputs.

    For callers that hold a network and call it (Lightning's evaluation, inference loops): the
    prepared model (:func:`prepare_model`) under :func:`autocast`, outputs through :func:`to_float32`.
    """

    def __init__(self, net: nn.Module, precision: str, device: torch.device | str = "cpu") -> None:
        check_precision(precision, device)
        self.precision = precision
        self.device = torch.device(device)
        self.source = net
        self._prepared: dict[torch.device, nn.Module] = {}

    def net_for(self, device: torch.device) -> nn.Module:
        """The network prepared for ``device``, made at the first call there (Lightning may move the
        source network after this object was built; its weights are final by then)."""
        if device not in self._prepared:
            self._prepared[device] = prepare_model(self.source, self.precision, device)
        return self._prepared[device]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # autocast on the device the input is on
        device = next((a.device for a in args if isinstance(a, torch.Tensor)), self.device)
        net = self.net_for(device)
        with autocast(self.precision, device):
            out = net(*args, **kwargs)
        return to_float32(out)
