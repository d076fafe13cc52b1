"""Shared transformer layers: attention on torch SDPA, MLP, pre-norm block, drop path.

Parameter layouts follow the timm-ViT convention the official code uses (fused ``qkv`` rows are
``[Q; K; V]``, heads contiguous inside each), so official weights load without reshaping.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

_OFFICIAL_KERNELS = False


@contextlib.contextmanager
def official_kernels(enabled: bool = True) -> Iterator[None]:
    """Run the kernels the official classes run: attention as ``softmax(q kᵀ · scale) v`` in plain
    ops instead of torch SDPA, and linear layers in torch's default GEMM instead of oneDNN's.

    The fast kernels round differently (~1e-7 relative). That is harmless, except where TPC's
    official tie-breaking decides between two frames whose densities differ by less: reproducing the
    official classes bit for bit needs their order of operations.
    """
    global _OFFICIAL_KERNELS
    previous, _OFFICIAL_KERNELS = _OFFICIAL_KERNELS, enabled
    try:
        yield
    finally:
        _OFFICIAL_KERNELS = previous


def attention(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0) -> Tensor:
    """Scaled dot-product attention over ``(b, h, n, d)`` heads: torch SDPA, except under
    :func:`official_kernels` and for bfloat16 on a CPU without AMX (see :func:`_explicit_bf16`)."""
    if _OFFICIAL_KERNELS:
        weights = ((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(dim=-1)
        return F.dropout(weights, dropout_p) @ v
    if _explicit_bf16(q):
        return _scaled_scores(q, k).softmax(dim=-1) @ v  # inference only: no dropout
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)


def _scaled_scores(q: Tensor, k: Tensor) -> Tensor:
    """``q kᵀ · d^-1/2`` over ``(..., n, d)`` heads with the scale applied inside the GEMM: one rounding
    to the output dtype and no extra pass over the score matrix (in bf16 on CPU that pass costs ~7 %
    of a MotionAGFormer forward)."""
    *lead, n, d = q.shape
    m = k.shape[-2]
    q3, k3 = q.reshape(-1, n, d), k.reshape(-1, m, d)
    scores = torch.baddbmm(q3.new_empty(q3.shape[0], n, m), q3, k3.transpose(1, 2), beta=0.0, alpha=d ** -0.5)
    return scores.view(*lead, n, m)


@functools.cache
def _cpu_has_amx() -> bool:
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def _explicit_bf16(q: Tensor) -> bool:
    # Measured at 1 thread on an AMD EPYC with AVX-512 BF16 and no AMX: SDPA's CPU flash kernel takes
    # ~2x the time of the plain bf16 products + softmax on the inference shapes of the paper models (on
    # Intel AMX the flash kernel is faster). Training keeps SDPA (its fused backward).
    return (q.dtype == torch.bfloat16 and q.device.type == "cpu" and not _cpu_has_amx()
            and not records_autograd(q))


def _onednn_linear_available() -> bool:
    return (platform.machine().lower() in ("x86_64", "amd64") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise") and hasattr(torch.ops.mkldnn, "_reorder_linear_weight"))


# "onednn": float32 linear layers on CPU run oneDNN's GEMM; "torch": torch's default (MKL on x86).
CPU_LINEAR_KERNELS = ("onednn", "torch")


def _onednn_linear_is_faster() -> bool:
    # Measured at 1 thread (docs/performance.md): on an AMD EPYC with AVX-512 oneDNN's float32 GEMM runs
    # 1.8-2.4x MKL's, which does not use AVX-512 there; on an AVX2-only one (Zen 3) it takes 0.9-1.4x
    # MKL's time (linear layers of the paper models' shapes, and the temporal graph's batched products).
    return _onednn_linear_available() and bool(torch.cpu._is_avx512_supported())


def _default_cpu_linear() -> str:
    default = "onednn" if _onednn_linear_is_faster() else "torch"
    chosen = os.environ.get("HOTPOSE_CPU_LINEAR", default)
    if chosen not in CPU_LINEAR_KERNELS or (chosen == "onednn" and not _onednn_linear_available()):
        warnings.warn(f"HOTPOSE_CPU_LINEAR={chosen!r} cannot run here (use one of "
                      f"{', '.join(CPU_LINEAR_KERNELS)}; onednn needs x86 and torch's oneDNN): using {default!r}",
                      stacklevel=2)
        return default
    return chosen


_CPU_LINEAR = _default_cpu_linear()


@contextlib.contextmanager
def cpu_linear(kernel: str) -> Iterator[None]:
    """Run float32 linear layers on CPU in ``kernel``'s GEMM inside this context.

    The process default is ``HOTPOSE_CPU_LINEAR`` if set, else ``onednn`` where torch has it (x86) and
    the CPU has AVX-512, else ``torch``. ``onednn`` computes the same products as ``torch`` (MKL on x86)
    with other float32 rounding (~1e-6 relative) and is 1.8-2.4x faster on an AVX-512 AMD EPYC, where
    MKL does not run its AVX-512 kernels; on an AVX2-only AMD EPYC it is up to 1.3x slower.
    It also sends bf16-weight layers under CPU bf16 autocast straight to oneDNN's bf16 GEMM (autocast's
    linear reaches the same kernel, after copying the bias into the output); ``torch`` leaves every
    linear layer to ``F.linear``.
    """
    global _CPU_LINEAR
    check_cpu_linear(kernel)
    previous, _CPU_LINEAR = _CPU_LINEAR, kernel
    try:
        yield
    finally:
        _CPU_LINEAR = previous


def check_cpu_linear(kernel: str) -> None:
    """Raise a one-line error unless ``kernel`` is a CPU linear kernel this torch build can run."""
    if kernel not in CPU_LINEAR_KERNELS:
        raise ValueError(f"cpu linear kernel {kernel!r}: use one of {', '.join(CPU_LINEAR_KERNELS)}")
    if kernel == "onednn" and not _onednn_linear_available():
        raise ValueError("cpu linear kernel 'onednn': this torch build or CPU has no oneDNN linear; use 'torch'")


def current_cpu_linear() -> str:
    """The GEMM that float32 linear layers on CPU run now (see :func:`cpu_linear`)."""
    return _CPU_LINEAR


def _onednn_linear(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


# Each layer's weight in oneDNN's own blocked layout, for inference. Plain weights are re-laid out on
# every call: 5-20 % of a GEMM at the paper models' shapes (most for few rows, e.g. MHFormer's MHG
# encoders at batch 1), with the same result. Kept beside the module (not in it: deepcopy, pickling
# and state_dict see the module as it was) and rebuilt when the weight is replaced or changed in place.
_PACKED_WEIGHTS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple[Any, ...], Tensor]] = weakref.WeakKeyDictionary()


def _packed_weight(layer: nn.Linear) -> Tensor:
    """``layer.weight`` as a oneDNN-packed tensor for ``_linear_pointwise`` (inference only)."""
    weight = layer.weight
    if weight.is_inference():
        return weight  # no version counter: an in-place change inside inference mode would go unseen
    key = (id(weight), weight.data_ptr(), weight._version, weight.dtype, tuple(weight.shape))
    cached = _PACKED_WEIGHTS.get(layer)
    if cached is None or cached[0] != key:
        cached = (key, torch.ops.mkldnn._reorder_linear_weight(weight.detach()))
        _PACKED_WEIGHTS[layer] = cached
    return cached[1]


def _onednn_linear_layer(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    # A layer input of other strides (a strided slice, a permuted view) would send oneDNN to its
    # reference kernel: it gets a contiguous copy first (layer inputs are nearly always contiguous).
    return _onednn_linear(x if x.is_contiguous() else x.contiguous(), weight, bias)


class _OneDnnLinearFunction(torch.autograd.Function):
    """oneDNN linear with its gradients in oneDNN too (``x·Wᵀ + b``; ``g·W``; ``gᵀ·x``; ``Σg``)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        x = x.contiguous()  # dense operands for oneDNN (see _onednn_linear_layer), here and in backward
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_linear(x, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        grad = grad.contiguous()
        flat = grad.reshape(-1, grad.shape[-1])
        grad_x = _onednn_linear(grad, weight.t(), None) if ctx.needs_input_grad[0] else None
        grad_w = (_onednn_linear(flat.t(), x.reshape(-1, x.shape[-1]).t(), None)
                  if ctx.needs_input_grad[1] else None)
        grad_b = flat.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def _eager_cpu(x: Tensor) -> bool:
    # Tracing, export, compile, flop counting and other dispatch modes see torch's own ops.
    return (not _OFFICIAL_KERNELS and x.device.type == "cpu"
            and not torch._C._len_torch_dispatch_stack() and not torch._C._is_torch_function_mode_enabled()
            and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export()
            and not torch.compiler.is_compiling())


def _onednn_eager_cpu(x: Tensor) -> bool:
    return _CPU_LINEAR == "onednn" and _eager_cpu(x)


def _runs_onednn(x: Tensor, weight: Tensor) -> bool:
    # Only in plain eager float32 CPU execution (autocast would not lower this op).
    return (x.dtype == torch.float32 and weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and _onednn_eager_cpu(x))


@functools.cache
def _onednn_bf16_available() -> bool:
    # oneDNN's bf16 GEMM (and its weight packing) needs AVX-512 (BW/VL/DQ) or AVX-NE-CONVERT; on an
    # AVX2-only CPU it raises, and bf16 layers go through F.linear, whose autocast kernel emulates bf16.
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return _onednn_linear_available() and check is not None and bool(check())


def _runs_onednn_bf16(x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    # A bf16-weight layer (hotpose.precision's bf16 copy) at inference under CPU bf16 autocast: the
    # oneDNN bf16 GEMM that autocast's linear reaches too (same numbers), called directly with the
    # bias fused in (torch's addmm first copies the bias into every output row).
    return (weight.dtype == torch.bfloat16 and (bias is None or bias.dtype == torch.bfloat16)
            and _onednn_bf16_available()
            and x.dtype in (torch.float32, torch.bfloat16) and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16
            and not records_autograd(x, weight) and _onednn_eager_cpu(x))


def fast_cpu_products(x: Tensor) -> bool:
    """Whether computations on ``x`` may leave the official order of operations (token selection's
    screened scores, its distances at reduced precision): plain eager CPU execution, outside
    :func:`official_kernels`, tracing, export and dispatch modes. Their products run in the GEMM
    :func:`cpu_linear` chose (oneDNN, or torch's own)."""
    return x.dtype in (torch.float32, torch.bfloat16) and _eager_cpu(x)


def batched_matmul(a: Tensor, b: Tensor) -> Tensor:
    """``a @ b`` for ``(m, n, k)`` and ``(m, k, p)``; at float32 inference on CPU one oneDNN product per
    batch entry (see :func:`cpu_linear`), which beats torch's batched MKL call severalfold on AMD EPYC
    for the few-but-large products of a temporal graph (m = joints, n = p = frames)."""
    if a.ndim != 3 or b.ndim != 3 or records_autograd(a, b) or not _runs_onednn(a, b):
        return a @ b
    out = a.new_empty(a.shape[0], a.shape[1], b.shape[2])
    # linear(a_i, w_i) = a_i @ w_iᵀ. oneDNN reads a row-major or a transposed matrix in place, but
    # falls back to a reference kernel (~1000x slower) for other strides: those are copied first.
    a = _dense_matrices(a)
    weights = _dense_matrices(b.transpose(1, 2))
    for i in range(a.shape[0]):
        out[i] = _onednn_linear(a[i], weights[i], None)
    return out


# Frames and features from which gram_matrix splits the product into blocks (below, the three smaller
# GEMMs run no faster than the one square product on AMD EPYC: measured at 243 x 512).
_GRAM_BLOCKS_MIN = (256, 1024)


def gram_matrix(x: Tensor) -> Tensor:
    """``x @ x.transpose(1, 2)`` for ``(m, n, k)``: ``(m, n, n)``.

    At float32 inference on CPU with oneDNN and large enough ``n`` and ``k``, the product is three
    blocks, the two diagonal ones and one off-diagonal one that is mirrored (so the result is exactly
    symmetric): 3/4 of the multiply-adds, 1.3x faster at 351 x 1536 (TPC w. MHFormer's frame features).
    Every entry is still one float32 dot product of length ``k``. Elsewhere :func:`batched_matmul`.
    """
    n, k = x.shape[1], x.shape[2]
    if n < _GRAM_BLOCKS_MIN[0] or k < _GRAM_BLOCKS_MIN[1] or records_autograd(x) or not _runs_onednn(x, x):
        return batched_matmul(x, x.transpose(1, 2))
    half = n // 2
    out = x.new_empty(x.shape[0], n, n)
    x = _dense_matrices(x)
    for i in range(x.shape[0]):
        top, bottom = x[i, :half], x[i, half:]
        across = _onednn_linear(top, bottom, None)
        out[i, :half, :half] = _onednn_linear(top, top, None)
        out[i, :half, half:] = across
        out[i, half:, :half] = across.t()
        out[i, half:, half:] = _onednn_linear(bottom, bottom, None)
    return out


def _dense_matrices(x: Tensor) -> Tensor:
    """``x`` (m, r, c) if each ``x[i]`` is a row-major or transposed dense matrix, else a contiguous copy."""
    if not x.shape[0] or x[0].is_contiguous() or x[0].t().is_contiguous():
        return x
    return x.contiguous()


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, state dict and init) whose float32 CPU GEMM is chosen by
    :func:`cpu_linear`; every other case is ``F.linear``."""

    def forward(self, x: Tensor) -> Tensor:
        if _runs_onednn_bf16(x, self.weight, self.bias):
            return _onednn_linear_layer(x.to(torch.bfloat16), _packed_weight(self), self.bias)
        if not _runs_onednn(x, self.weight):
            if x.ndim > 2 and not x.is_contiguous() and not _OFFICIAL_KERNELS:
                # torch's linear sends a strided input (a transposed or rearranged view) through a
                # batched product with the weight expanded per batch entry: a copy of the weight per
                # entry and a slower kernel (in bf16 on CPU 12 % of a HoT w. MotionBERT forward).
                x = x.contiguous()
            return F.linear(x, self.weight, self.bias)
        if records_autograd(x, self.weight, *(() if self.bias is None else (self.bias,))):
            return _OneDnnLinearFunction.apply(x, self.weight, self.bias)
        return _onednn_linear_layer(x, _packed_weight(self), self.bias)


def records_autograd(*tensors: Tensor) -> bool:
    """Whether autograd would record an op on ``tensors`` (then nothing may be overwritten in place)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def residual(x: Tensor, branch: Tensor) -> Tensor:
    """``x + branch`` for a residual connection; ``branch`` must be a fresh layer output.

    With autograd off (inference) the sum is written into ``branch``: the same numbers (addition
    commutes), but no new activation tensor to allocate and first-touch per block, which on CPU
    costs as much as the addition itself at paper sizes.
    """
    if branch.shape == x.shape and branch.dtype == x.dtype and not records_autograd(x, branch):
        return branch.add_(x)
    return x + branch


def scale(branch: Tensor, factor: Tensor) -> Tensor:
    """``factor * branch`` (a per-channel layer scale), in place on the fresh ``branch`` at inference."""
    if branch.dtype == torch.promote_types(branch.dtype, factor.dtype) and not records_autograd(branch, factor):
        return branch.mul_(factor)
    return factor * branch


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample while training."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path(p: float) -> nn.Module:
    """Identity when ``p == 0`` (as the official code does), else :class:`DropPath`."""
    return DropPath(p) if p > 0 else nn.Identity()


class Attention(nn.Module):
    """Multi-head self-attention over dim -2 of ``(..., n, c)`` with a fused ``qkv`` projection."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.attn_drop = attn_drop
        self.qkv = Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: Tensor) -> Tensor:
        *lead, n, c = x.shape
        x = x.reshape(-1, n, c)
        q, k, v = self.qkv(x).reshape(x.shape[0], n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        y = attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        y = y.transpose(1, 2).reshape(x.shape[0], n, c)
        return self.proj_drop(self.proj(y)).reshape(*lead, n, c)


class CrossAttention(nn.Module):
    """Multi-head attention with queries from one sequence and keys/values from another.

    Separate ``linear_q/k/v`` projections (the official TRA layout); queries ``(b, n, c)``,
    keys/values ``(b, m, c)`` → ``(b, n, c)``.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.attn_drop = attn_drop
        self.linear_q = Linear(dim, dim, bias=qkv_bias)
        self.linear_k = Linear(dim, dim, bias=qkv_bias)
        self.linear_v = Linear(dim, dim, bias=qkv_bias)
        self.proj = Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        b, n, c = query.shape
        if b > 1 and query.stride(0) == 0 and not _OFFICIAL_KERNELS:
            # one query set broadcast over the batch (TRA's learnt queries): project it once
            q = self._split(self.linear_q(query[:1])).expand(b, -1, -1, -1)
        else:
            q = self._split(self.linear_q(query))
        k, v = self._split(self.linear_k(key)), self._split(self.linear_v(value))
        y = attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(y.transpose(1, 2).reshape(b, n, c)))


class Mlp(nn.Module):
    """``fc1 → GELU (exact) → dropout → fc2 → dropout``."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None, drop: float = 0.0,
                 act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.fc1 = Linear(dim, hidden)
        self.act = act()
        self.fc2 = Linear(hidden, out_dim or dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if type(self.act) is nn.GELU and not records_autograd(h):
            h = torch.ops.aten.gelu_(h, approximate=self.act.approximate)  # same kernel, no new tensor
        else:
            h = self.act(h)
        return self.drop(self.fc2(self.drop(h)))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: ``x + DP(attn(norm1(x)))`` then ``x + DP(mlp(norm2(x)))``."""

    def __init__(self, dim: int, heads: int, mlp_hidden: int, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path_rate: float = 0.0, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = drop_path(drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, drop=drop)

    def forward(self, x: Tensor) -> Tensor:
        x = residual(x, self.drop_path(self.attn(self.norm1(x))))
        return residual(x, self.drop_path(self.mlp(self.norm2(x))))


def count_parameters(module: nn.Module) -> int:
    """Every parameter element, bare ``nn.Parameter`` embeddings included (the paper's count)."""
    return sum(p.numel() for p in module.parameters())


def over_time(module: nn.Module, x: Tensor) -> Tensor:
    """Run a token-sequence module (attention over dim -2) along time on ``(b, f, n, c)`` tokens.

    The module sees ``(b, n, f, c)``, i.e. one length-``f`` sequence per token group (joint).
    """
    return module(x.transpose(1, 2)).transpose(1, 2)
