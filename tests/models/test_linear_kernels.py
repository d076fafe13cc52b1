"""hotpose's Linear: oneDNN's float32 GEMM on CPU computes what torch's does, and steps aside wherever
another machinery must see ``aten::linear`` (official numerics, autocast, tracing, FLOP counting)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hotpose.models import layers
from hotpose.models.backbones.mixste import MixSTE
from hotpose.models.layers import Linear, cpu_linear, current_cpu_linear, official_kernels

needs_onednn = pytest.mark.skipif(not layers._onednn_linear_available(), reason="torch build without oneDNN linear")
needs_onednn_bf16 = pytest.mark.skipif(not layers._onednn_bf16_available(),
                                       reason="no oneDNN bf16 GEMM on this CPU (it needs AVX-512 or AVX-NE-CONVERT)")
# float32 rounding of a 64-long dot product, relative to the output's scale
RTOL, ATOL = 1e-5, 1e-5


def close_in_float64(out: torch.Tensor, x: torch.Tensor, layer: nn.Linear) -> None:
    """``out`` is ``x·Wᵀ + b`` up to float32 rounding (reference in float64)."""
    ref = F.linear(x.double(), layer.weight.double(), None if layer.bias is None else layer.bias.double())
    torch.testing.assert_close(out.double(), ref, rtol=RTOL, atol=ATOL)


@pytest.fixture
def onednn_kernel():
    """oneDNN as the float32 CPU GEMM whatever the CPU's default (torch's on AVX2-only CPUs)."""
    with cpu_linear("onednn"):
        yield


def test_layer_is_an_nn_linear_with_its_state_dict() -> None:
    torch.manual_seed(0)
    ours, theirs = Linear(8, 5), nn.Linear(8, 5)
    assert isinstance(ours, nn.Linear)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(3, 8)
    with cpu_linear("torch"):
        assert torch.equal(ours(x), theirs(x))  # torch's kernel: the very same op


@needs_onednn
@pytest.mark.parametrize("shape", [(7, 64), (2, 9, 64), (2, 5, 17, 64)])
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_forward_matches_float64(shape: tuple[int, ...], bias: bool) -> None:
    torch.manual_seed(0)
    layer = Linear(64, 48, bias=bias).eval()
    x = torch.randn(*shape)
    with torch.no_grad(), cpu_linear("onednn"):
        out = layer(x)
        transposed = layer(x.transpose(0, -2)).transpose(0, -2) if len(shape) > 2 else out
    assert out.shape == (*shape[:-1], 48) and out.dtype == torch.float32
    close_in_float64(out, x, layer)
    close_in_float64(transposed, x, layer)  # a non-contiguous input


@needs_onednn
@pytest.mark.parametrize("bias", [True, False])
def test_onednn_gradients_match_torch(bias: bool) -> None:
    torch.manual_seed(0)
    layer = Linear(32, 24, bias=bias)
    x = torch.randn(4, 11, 32, requires_grad=True)
    grad = torch.randn(4, 11, 24)
    results = {}
    for kernel in ("onednn", "torch"):
        layer.zero_grad()
        x.grad = None
        with cpu_linear(kernel):
            layer(x).backward(grad)
        results[kernel] = [x.grad.clone(), layer.weight.grad.clone()] + ([layer.bias.grad.clone()] if bias else [])
    for ours, theirs in zip(results["onednn"], results["torch"]):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_only_where_nothing_else_must_see_the_op(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = layers._onednn_linear
    monkeypatch.setattr(layers, "_onednn_linear", lambda *a: calls.append(1) or real(*a))
    layer = Linear(16, 8).eval()
    x = torch.randn(5, 16)
    with torch.no_grad(), cpu_linear("onednn"):
        layer(x)
        assert len(calls) == 1
        with official_kernels():  # official numerics: torch's GEMM, as the official classes
            layer(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast must lower the op
            assert layer(x).dtype == torch.bfloat16
        layer.double()(x.double())  # float64
        layer.float()
        traced = torch.jit.trace(layer, x, check_trace=False)
        assert "aten::linear" in str(traced.graph)
        with cpu_linear("torch"):
            layer(x)
    assert len(calls) == 1


@needs_onednn
def test_flop_counter_sees_every_linear() -> None:
    model = MixSTE(frames=9, dim=16, depth=2, heads=2, mlp_hidden=32).eval()
    x = torch.randn(1, 9, 17, 2)
    counts = {}
    for kernel in ("onednn", "torch"):
        with torch.no_grad(), cpu_linear(kernel), FlopCounterMode(display=False) as counter:
            model.head(model.forward_block(0, model.embed(x)))
        counts[kernel] = counter.get_total_flops()
    assert counts["onednn"] == counts["torch"] > 0


def test_unknown_kernel_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu linear kernel 'mkl'"), cpu_linear("mkl"):
        pass
    assert current_cpu_linear() in layers.CPU_LINEAR_KERNELS


@needs_onednn
def test_batched_matmul_matches_float64_and_torch_where_it_must() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(3, 10, 16), torch.randn(3, 16, 7)
    ref = (a.double() @ b.double())
    with torch.no_grad(), cpu_linear("onednn"):
        torch.testing.assert_close(layers.batched_matmul(a, b).double(), ref, rtol=RTOL, atol=ATOL)
        torch.testing.assert_close(layers.batched_matmul(a, a.transpose(1, 2)).double(),
                                   a.double() @ a.double().transpose(1, 2), rtol=RTOL, atol=ATOL)
        with official_kernels():
            assert torch.equal(layers.batched_matmul(a, b), a @ b)
    a.requires_grad_(True)
    out = layers.batched_matmul(a, b)  # autograd: torch's matmul, with its backward
    assert out.grad_fn is not None and torch.equal(out, a @ b)


@needs_onednn
@pytest.mark.parametrize("shape", [(2, 301, 1030), (1, 40, 24)])  # three blocks; one product
def test_gram_matrix_is_symmetric_and_matches_float64(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    x = torch.randn(shape)
    ref = x.double() @ x.double().transpose(1, 2)
    with torch.no_grad(), cpu_linear("onednn"):
        gram = layers.gram_matrix(x)
        # float32 rounding of a dot product of ~1000 terms, relative to |x_i| |x_j| ~ 1000
        torch.testing.assert_close(gram.double(), ref, rtol=1e-5, atol=shape[2] * 1e-5)
        if shape[1] >= 256:
            assert torch.equal(gram, gram.transpose(1, 2))  # the off-diagonal block is mirrored
        with official_kernels():
            assert torch.equal(layers.gram_matrix(x), x @ x.transpose(1, 2))
    x.requires_grad_(True)
    assert layers.gram_matrix(x).grad_fn is not None  # autograd: torch's matmul


@needs_onednn
def test_strided_operands_are_made_dense_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """oneDNN runs a reference kernel (~1000x slower) on matrices that are neither row-major nor
    transposed; such operands (a reshaped transpose, a strided slice) are copied to dense ones."""
    seen = []
    real = layers._onednn_linear

    def check(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
        for t in (x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x, w):
            seen.append(t.is_contiguous() or t.t().is_contiguous())
        return real(x, w, b)

    monkeypatch.setattr(layers, "_onednn_linear", check)
    torch.manual_seed(0)
    nodes = torch.randn(1, 12, 5, 16).transpose(1, 2).reshape(5, 12, 16)  # a view with row stride 80
    assert not nodes[0].is_contiguous()
    layer = Linear(16, 8).eval()
    with torch.no_grad(), cpu_linear("onednn"):
        sim = layers.batched_matmul(nodes, nodes.transpose(1, 2))
        out = layer(torch.randn(6, 32)[:, ::2])
    assert seen and all(seen)
    torch.testing.assert_close(sim, nodes @ nodes.transpose(1, 2), rtol=RTOL, atol=ATOL)
    assert out.shape == (6, 8)


@pytest.mark.parametrize("shape", [(3, 2, 17, 8), (2, 4, 9, 16)])
def test_bf16_explicit_attention_matches_float64(monkeypatch: pytest.MonkeyPatch, shape: tuple[int, ...]) -> None:
    """Where bf16 attention runs as explicit products (a CPU without AMX), the scale is applied inside
    the score GEMM: within bf16 rounding of the float64 formula, like SDPA's bf16 result."""
    monkeypatch.setattr(layers, "_cpu_has_amx", lambda: False)
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape) for _ in range(3))
    want = ((q.double() @ k.double().transpose(-2, -1)) * shape[-1] ** -0.5).softmax(-1) @ v.double()
    qb, kb, vb = q.bfloat16(), k.bfloat16(), v.bfloat16()
    assert layers._explicit_bf16(qb)
    with torch.no_grad():
        got = layers.attention(qb, kb, vb)
        sdpa = F.scaled_dot_product_attention(qb, kb, vb)
    assert got.dtype == torch.bfloat16 and got.shape == shape
    err, sdpa_err = ((t.double() - want).abs().max().item() for t in (got, sdpa))
    assert err < 3e-2 and err <= 2 * sdpa_err + 1e-2
    scores = layers._scaled_scores(q, k)
    torch.testing.assert_close(scores, (q @ k.transpose(-2, -1)) * shape[-1] ** -0.5, rtol=1e-5, atol=1e-5)


def test_strided_input_never_becomes_a_batched_weight_product() -> None:
    """In inference mode under autocast torch's linear runs a strided 3-D input as a bmm with the
    (cast) weight expanded per batch entry; hotpose's Linear hands it a dense copy instead (same
    numbers, a plain GEMM)."""
    from torch.profiler import profile

    def products(fn: Callable[[], object]) -> list[str]:
        with profile() as prof:
            fn()
        return [e.key for e in prof.key_averages() if e.key in ("aten::bmm", "aten::mm", "aten::addmm")]

    torch.manual_seed(0)
    layer = Linear(16, 8).eval()
    x = torch.randn(6, 5, 16).transpose(0, 1)  # (5, 6, 16), not contiguous
    want = F.linear(x.contiguous(), layer.weight, layer.bias).detach()
    with torch.inference_mode():
        for precision in ("float32", "bf16"):
            with torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"):
                assert "aten::bmm" not in products(lambda: layer(x))
                got = layer(x)
            torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)
        # torch's own linear (kept for the official classes' op sequence) takes the bmm route
        with official_kernels(), torch.autocast("cpu", torch.bfloat16):
            assert "aten::bmm" in products(lambda: layer(x))


def test_broadcast_queries_are_projected_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRA's learnt queries are one set expanded over the batch: projected once, then expanded."""
    torch.manual_seed(0)
    attn = layers.CrossAttention(16, 4).eval()
    queries, tokens = torch.randn(1, 7, 16), torch.randn(3, 5, 16)
    rows = []
    real = attn.linear_q.forward
    monkeypatch.setattr(attn.linear_q, "forward", lambda x: rows.append(x.shape[0]) or real(x))
    with torch.no_grad():
        got = attn(queries.expand(3, -1, -1), tokens, tokens)
        want = attn(queries.expand(3, -1, -1).contiguous(), tokens, tokens)
    assert rows == [1, 3]
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_bf16_weight_layers_call_onednn_directly_under_autocast(monkeypatch: pytest.MonkeyPatch,
                                                                 onednn_kernel: None) -> None:
    """A bf16-weight layer (hotpose.precision's bf16 copy) at CPU bf16 autocast inference calls
    oneDNN's bf16 GEMM with the bias fused: autocast's own numbers to bf16 rounding; with autograd
    recording, under official kernels or with HOTPOSE_CPU_LINEAR=torch it is autocast's linear."""
    if not layers._onednn_bf16_available():
        pytest.skip("no oneDNN bf16 GEMM in this torch build or on this CPU")
    calls = []
    real = layers._onednn_linear
    monkeypatch.setattr(layers, "_onednn_linear", lambda x, w, b: calls.append(x.dtype) or real(x, w, b))
    torch.manual_seed(0)
    layer = Linear(32, 24).eval()
    x = torch.randn(3, 7, 32)
    with torch.no_grad():
        want = F.linear(x.double(), layer.weight.double(), layer.bias.double())
        layer.weight.data, layer.bias.data = layer.weight.bfloat16(), layer.bias.bfloat16()
        with torch.autocast("cpu", torch.bfloat16):
            direct = layer(x)
            assert calls == [torch.bfloat16]
            with official_kernels():
                official = layer(x)
            with cpu_linear("torch"):
                plain = layer(x)
            assert calls == [torch.bfloat16]
    assert direct.dtype == official.dtype == torch.bfloat16 and direct.shape == (3, 7, 24)
    torch.testing.assert_close(direct, official, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(direct, plain, rtol=1e-2, atol=1e-2)
    assert (direct.double() - want).abs().max() < 5e-2
    layer.weight.requires_grad_(True)
    with torch.autocast("cpu", torch.bfloat16):
        layer(x)
    assert calls == [torch.bfloat16]


@needs_onednn
@pytest.mark.parametrize("dtype", [torch.float32, pytest.param(torch.bfloat16, marks=needs_onednn_bf16)])
def test_packed_weight_follows_every_change_of_the_weight(dtype: torch.dtype, onednn_kernel: None) -> None:
    """Inference reuses the weight in oneDNN's packed layout: the same products as the plain weight,
    rebuilt whenever the weight changes (in place, replaced, reassigned ``.data``, a loaded state dict),
    and invisible to copies and the state dict."""
    import copy
    import pickle

    torch.manual_seed(0)
    layer = Linear(32, 24).eval()
    x = torch.randn(2, 40, 32)

    def run() -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=dtype == torch.bfloat16):
            out = layer(x).float()
        tol = 1e-5 if dtype == torch.float32 else 1e-2  # bf16: exact products, the output rounded
        want = F.linear(x.to(dtype).double(), layer.weight.double(), layer.bias.double())
        torch.testing.assert_close(out.double(), want, rtol=tol, atol=tol)
        plain = layers._onednn_linear(x.to(dtype), layer.weight, layer.bias).float()
        torch.testing.assert_close(out, plain, rtol=1e-6, atol=1e-6)
        return out

    with torch.no_grad():
        layer.weight.data, layer.bias.data = layer.weight.to(dtype), layer.bias.to(dtype)
    first = run()
    assert layer in layers._PACKED_WEIGHTS and torch.equal(run(), first)  # reused, same numbers
    with torch.no_grad():
        layer.weight.mul_(-1)  # in place
    assert not torch.allclose(run(), first)
    layer.weight = nn.Parameter(torch.randn(24, 32).to(dtype))  # replaced
    run()
    layer.weight.data = torch.randn(24, 32).to(dtype)  # new storage, same Parameter
    run()
    layer.load_state_dict({"weight": torch.randn(24, 32), "bias": torch.randn(24)})  # copied in place
    run()
    assert list(layer.state_dict()) == ["weight", "bias"]
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert clone not in layers._PACKED_WEIGHTS
        with torch.no_grad():
            torch.testing.assert_close(clone(x.to(dtype)).float(), layer(x.to(dtype)).float(), rtol=1e-6, atol=1e-6)


@needs_onednn
def test_inference_tensor_weights_run_unpacked(onednn_kernel: None) -> None:
    """Weights made in inference mode have no version counter: they run as they are, and
    ``prepare_model``'s bf16 copy is ordinary tensors even when made in inference mode."""
    from hotpose.precision import prepare_model

    with torch.inference_mode():
        layer = Linear(16, 8).eval()
        x = torch.randn(3, 16)
        out = layer(x)
        bf16 = prepare_model(nn.Sequential(Linear(16, 8)).eval(), "bf16")
        with torch.autocast("cpu", torch.bfloat16):
            bf16(x)
    assert layer.weight.is_inference() and layer not in layers._PACKED_WEIGHTS
    close_in_float64(out, x, layer)
    assert not bf16[0].weight.is_inference()
    assert (bf16[0] in layers._PACKED_WEIGHTS) == layers._onednn_bf16_available()


def test_bf16_layers_run_autocasts_linear_where_onednn_has_no_bf16_gemm(monkeypatch: pytest.MonkeyPatch) -> None:
    """On an AVX2-only CPU oneDNN refuses bf16 weights (its packing raises): bf16 layers never go there,
    they give autocast's linear, and a whole bf16 model runs."""
    from hotpose.precision import prepare_model

    monkeypatch.setattr(layers, "_onednn_bf16_available", lambda: False)

    def refuse(*args: object) -> None:
        raise AssertionError("oneDNN's bf16 path was taken")

    torch.manual_seed(0)
    layer = Linear(32, 24).eval()
    x = torch.randn(3, 7, 32)
    with torch.no_grad():
        layer.weight.data, layer.bias.data = layer.weight.bfloat16(), layer.bias.bfloat16()
        with torch.autocast("cpu", torch.bfloat16):
            want = F.linear(x, layer.weight, layer.bias)
            monkeypatch.setattr(layers, "_onednn_linear", refuse)
            monkeypatch.setattr(layers, "_packed_weight", refuse)
            got = layer(x)
            model = prepare_model(nn.Sequential(Linear(32, 16), nn.GELU(), Linear(16, 8)).eval(), "bf16")
            out = model(x)
    assert torch.equal(got, want) and out.shape == (3, 7, 8) and torch.isfinite(out).all()
