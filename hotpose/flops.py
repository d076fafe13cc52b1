"""Parameter and FLOP counts of a model, in the HoT paper's convention and in a complete one.

Counting runs fvcore's tracer (:class:`fvcore.nn.JitModelAnalysis`) with this module's own op
handles. Every handle returns multiply-accumulates (MACs) under a *category* name; the two
conventions are sums of categories, doubled (one multiply-add = 2 FLOPs):

=============  ==============================================  =======  =====
category       ops and MACs per call                           paper    full
=============  ==============================================  =======  =====
linear         ``aten::linear``: in_features x output elements   yes      yes
conv           ``aten::_convolution``: kernel MACs (no bias)     yes      yes
conv_bias      one per conv output element when it has a bias    yes      no
batch_norm     ``aten::batch_norm``: 2 per element (eval)        yes      yes
avg_pool       ``adaptive_avg_pool{1,2,3}d`` and ``aten::mean``:  yes      yes
               (window + 1) per output element
matmul         ``matmul / mm / bmm / addmm / baddbmm / einsum``  no       yes
attention      ``scaled_dot_product_attention``: Q·Kᵀ and A·V    no       yes
norm           ``layer_norm / group_norm / instance_norm``:      no       yes
               5 per element with an affine transform, else 4
cdist          ``aten::cdist``: one MAC per coordinate pair       no       yes
=============  ==============================================  =======  =====

**paper** reproduces how the HoT paper (and the official repository) reported FLOPs:
``2 x`` the MACs that thop 0.0.31 counted. thop only hooks modules: ``nn.Linear``
(in_features per output element, bias ignored), ``nn.Conv*d`` (kernel MACs *plus one per output
element for the bias*), ``nn.BatchNorm*d`` (2 per element in eval) and ``nn.AdaptiveAvgPool*d``
(``prod(in // out) + 1`` per output element). It misses the attention products (plain tensor ops),
LayerNorm (no rule in 0.0.31) and token selection (``cdist``, ``topk``). The official HoT pools a
frame's joints with ``nn.AdaptiveAvgPool1d`` before clustering; re-implementations write that
as ``tensor.mean``, so ``aten::mean`` gets the pooling rule too. (The official DPC-kNN also
takes a mean over its k = 2 neighbour distances, which thop did not see: counting it adds
``3·frames`` MACs, below 1e-5 GFLOPs.)

**full** counts every multiply-add of every product (linear, conv, matmul, bmm, both products of
SDPA, ``cdist``), plus norms and pooling as above (fvcore's norm estimates). Element-wise ops
(add, mul, softmax, GELU, exp …) and selection ops (topk, sort, gather) count 0 in both
conventions; they are listed under ``uncounted_ops``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

PAPER_CATEGORIES = ("linear", "conv", "conv_bias", "batch_norm", "avg_pool")
FULL_CATEGORIES = ("linear", "conv", "batch_norm", "avg_pool", "matmul", "attention", "norm", "cdist")


# --------------------------------------------------------------------------------------------
# MAC formulas on plain shapes (pure, tested on their own)
# --------------------------------------------------------------------------------------------

def linear_macs(in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """``(..., cin) → (..., cout)``: one MAC per input feature per output element."""
    return int(in_shape[-1]) * math.prod(out_shape)


def matmul_macs(a_shape: Sequence[int], b_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """``torch.matmul`` with broadcasting: the contracted size per output element.

    1-D operands are vectors (contracted over their only dim)."""
    return int(a_shape[-1]) * max(1, math.prod(out_shape))


def attention_macs(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]) -> int:
    """SDPA ``(…, l, e)``, ``(…, s, e)``, ``(…, s, ev)``: ``Q·Kᵀ`` (l·s·e) plus ``A·V`` (l·s·ev) per batch."""
    batch = math.prod(torch.broadcast_shapes(tuple(q_shape[:-2]), tuple(k_shape[:-2]), tuple(v_shape[:-2])))
    length, keys = int(q_shape[-2]), int(k_shape[-2])
    return batch * length * keys * (int(q_shape[-1]) + int(v_shape[-1]))


def conv_macs(w_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """Kernel MACs of a (grouped) convolution: ``(cin/groups)·prod(kernel)`` per output element.

    ``w_shape = (cout, cin/groups, *kernel)``, ``out_shape = (b, cout, *spatial)``."""
    return math.prod(w_shape[1:]) * math.prod(out_shape)


def pool_macs(in_shape: Sequence[int], out_shape: Sequence[int], pooled_dims: int) -> int:
    """thop 0.0.31's adaptive-average-pool rule: ``(prod(in // out) + 1)`` per output element.

    The window is the integer ratio of the last ``pooled_dims`` sizes (one add per window
    element and one division per output)."""
    window = 1
    for size_in, size_out in zip(in_shape[-pooled_dims:], out_shape[-pooled_dims:]):
        window *= int(size_in) // max(1, int(size_out))
    return (window + 1) * math.prod(out_shape)


def mean_macs(in_shape: Sequence[int], out_shape: Sequence[int]) -> int:
    """``tensor.mean`` as an average pool: ``(reduced + 1)`` per output element."""
    out = max(1, math.prod(out_shape))
    return (math.prod(in_shape) // out + 1) * out


def norm_macs(in_shape: Sequence[int], affine: bool) -> int:
    """Layer/group/instance norm: 5 per element with an affine transform, 4 without (fvcore's estimate)."""
    return math.prod(in_shape) * (5 if affine else 4)


def cdist_macs(a_shape: Sequence[int], b_shape: Sequence[int]) -> int:
    """``cdist((…, p, m), (…, r, m))``: one MAC per coordinate of every pair."""
    batch = math.prod(torch.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2])))
    return batch * int(a_shape[-2]) * int(b_shape[-2]) * int(a_shape[-1])


# --------------------------------------------------------------------------------------------
# fvcore op handles: (inputs, outputs) are torch._C.Values of the traced graph
# --------------------------------------------------------------------------------------------

def _shape(value: Any) -> list[int] | None:
    return value.type().sizes() if value.isCompleteTensor() else None


def _is_none(value: Any) -> bool:
    return value.type().kind() == "NoneType"


def _linear(inputs: list, outputs: list) -> Counter:
    return Counter({"linear": linear_macs(_shape(inputs[0]), _shape(outputs[0]))})


def _matmul(inputs: list, outputs: list) -> Counter:
    return Counter({"matmul": matmul_macs(_shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0]))})


def _addmm(inputs: list, outputs: list) -> Counter:
    # addmm / baddbmm(input, a, b, ...): the product operands are inputs 1 and 2
    return Counter({"matmul": matmul_macs(_shape(inputs[1]), _shape(inputs[2]), _shape(outputs[0]))})


def _einsum(inputs: list, outputs: list) -> Counter:
    from fvcore.nn.jit_handles import einsum_flop_jit

    return Counter({"matmul": int(einsum_flop_jit(inputs, outputs))})


def _sdpa(inputs: list, outputs: list) -> Counter:
    return Counter({"attention": attention_macs(_shape(inputs[0]), _shape(inputs[1]), _shape(inputs[2]))})


def _convolution(inputs: list, outputs: list) -> Counter:
    w_shape, out_shape = _shape(inputs[1]), _shape(outputs[0])
    if inputs[6].toIValue():  # transposed: every input element meets the whole kernel slice
        macs = math.prod(_shape(inputs[0])) * math.prod(w_shape[1:])
    else:
        macs = conv_macs(w_shape, out_shape)
    bias = 0 if _is_none(inputs[2]) else math.prod(out_shape)
    return Counter({"conv": macs, "conv_bias": bias})


def _batch_norm(inputs: list, outputs: list) -> Counter:
    # thop 0.0.31 and fvcore agree on 2 per element for an eval-mode batch norm
    return Counter({"batch_norm": 2 * math.prod(_shape(inputs[0]))})


def _norm(affine_input: int):
    def handle(inputs: list, outputs: list) -> Counter:
        affine = not _is_none(inputs[affine_input])
        return Counter({"norm": norm_macs(_shape(inputs[0]), affine)})

    return handle


def _adaptive_pool(pooled_dims: int):
    def handle(inputs: list, outputs: list) -> Counter:
        return Counter({"avg_pool": pool_macs(_shape(inputs[0]), _shape(outputs[0]), pooled_dims)})

    return handle


def _mean(inputs: list, outputs: list) -> Counter:
    return Counter({"avg_pool": mean_macs(_shape(inputs[0]), _shape(outputs[0]))})


def _cdist(inputs: list, outputs: list) -> Counter:
    return Counter({"cdist": cdist_macs(_shape(inputs[0]), _shape(inputs[1]))})


OP_HANDLES = {
    "aten::linear": _linear,
    "aten::matmul": _matmul,
    "aten::mm": _matmul,
    "aten::bmm": _matmul,
    "aten::addmm": _addmm,
    "aten::baddbmm": _addmm,
    "aten::einsum": _einsum,
    "aten::scaled_dot_product_attention": _sdpa,
    "aten::_convolution": _convolution,
    "aten::batch_norm": _batch_norm,
    "aten::layer_norm": _norm(2),
    "aten::group_norm": _norm(2),
    "aten::instance_norm": _norm(1),
    "aten::adaptive_avg_pool1d": _adaptive_pool(1),
    "aten::adaptive_avg_pool2d": _adaptive_pool(2),
    "aten::adaptive_avg_pool3d": _adaptive_pool(3),
    "aten::mean": _mean,
    "aten::cdist": _cdist,
}


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------

def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Every parameter element (bare ``nn.Parameter`` embeddings included): the paper's count."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"count_parameters needs an nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class _TensorOutput(nn.Module):
    """Let the tracer see a tensor: models may return a dataclass (``HourglassOutput``) or a tuple."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        out = self.model(*inputs)
        if isinstance(out, Tensor):
            return out
        if hasattr(out, "pose") and isinstance(out.pose, Tensor):
            return out.pose
        if isinstance(out, (tuple, list)):
            tensors = tuple(t for t in out if isinstance(t, Tensor))
            if tensors:
                return tensors
        raise ValueError(f"cannot count FLOPs: the model returned {type(out).__name__} with no tensor in it")


def _as_inputs(inputs: Tensor | Iterable[Tensor]) -> tuple[Tensor, ...]:
    items = (inputs,) if isinstance(inputs, Tensor) else tuple(inputs)
    bad = [type(x).__name__ for x in items if not isinstance(x, Tensor)]
    if not items or bad:
        got = bad or "nothing"
        raise ValueError(f"count_flops needs a tensor or a sequence of tensors as inputs, got {got}")
    return items


def _doubled(macs: Counter, categories: Iterable[str]) -> dict[str, int]:
    return {c: 2 * int(macs[c]) for c in categories if macs.get(c)}


def count_flops(model: nn.Module, inputs: Tensor | Sequence[Tensor], module_depth: int = 2) -> dict[str, Any]:
    """FLOPs of one forward call of ``model(*inputs)``, in eval mode (as the paper counted).

    Returns a dict with ``params``, ``paper_flops`` / ``paper_gflops`` (2 x thop-0.0.31 MACs),
    ``full_flops`` / ``full_gflops`` (2 x every multiply-add), ``by_op`` (FLOPs per category,
    all categories, ``conv_bias`` included although only *paper* counts it), ``paper_by_op``,
    ``full_by_op``, ``by_module`` (full FLOPs of the submodules up to ``module_depth`` levels
    deep, ``""`` = the whole model) and ``uncounted_ops`` (traced ops that count 0, with their
    number of calls). The global RNG state is restored afterwards (token selection draws noise).
    """
    from fvcore.nn.jit_analysis import JitModelAnalysis

    if not isinstance(model, nn.Module):
        raise ValueError(f"count_flops needs an nn.Module, got {type(model).__name__}")
    args = _as_inputs(inputs)
    was_training = model.training
    wrapped = _TensorOutput(model).eval()
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            analysis = JitModelAnalysis(wrapped, args).set_op_handle(**OP_HANDLES)
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            macs = Counter({k: int(v) for k, v in analysis.by_operator().items()})
            modules = analysis.by_module_and_operator()
            uncounted = dict(analysis.unsupported_ops())
    finally:
        model.train(was_training)

    by_module = {}
    for name, ops in modules.items():
        short = name.removeprefix("model").removeprefix(".")
        if short.count(".") < module_depth or short == "":
            by_module[short] = 2 * sum(v for k, v in ops.items() if k in FULL_CATEGORIES)
    paper = sum(_doubled(macs, PAPER_CATEGORIES).values())
    full = sum(_doubled(macs, FULL_CATEGORIES).values())
    return {
        "params": count_parameters(model),
        "paper_flops": paper,
        "paper_gflops": paper / 1e9,
        "full_flops": full,
        "full_gflops": full / 1e9,
        "by_op": _doubled(macs, dict.fromkeys(PAPER_CATEGORIES + FULL_CATEGORIES)),
        "paper_by_op": _doubled(macs, PAPER_CATEGORIES),
        "full_by_op": _doubled(macs, FULL_CATEGORIES),
        "by_module": by_module,
        "uncounted_ops": _uncounted_by_name(uncounted),
    }


def _uncounted_by_name(ops: dict[str, int]) -> dict[str, int]:
    """``{"gelu": 3, ...}``: in-place variants (``gelu_``, which inference runs) under the op's name."""
    names: Counter = Counter()
    for op, count in ops.items():
        names[op.removeprefix("aten::").removesuffix("_")] += int(count)
    return dict(sorted(names.items()))
