"""Complexity and throughput benchmarks: the timing protocol, the table logic, and quick runs."""

from __future__ import annotations

import pytest
import torch

from hotpose import bench
from hotpose.benchmarks import complexity, speed
from hotpose.flops import count_parameters


def test_interleaving_reverses_on_alternate_rounds() -> None:
    log: list[str] = []
    calls = {name: (lambda name=name: log.append(name)) for name in ("A", "B")}
    times = speed.time_interleaved(calls, rounds=2, per_round=2, warmup=1)
    assert log == ["A", "B"] + ["A", "B", "A", "B"] + ["B", "A", "B", "A"]
    assert [len(t) for t in times.values()] == [4, 4]
    assert all(t >= 0 for ts in times.values() for t in ts)
    with pytest.raises(ValueError, match="rounds"):
        speed.time_interleaved(calls, rounds=0, per_round=1, warmup=0)


def test_speed_row_statistics() -> None:
    base = speed.SpeedRow("base", frames=243, batch=2, seconds=[3.0, 1.0, 2.0, 9.0, 2.5])
    fast = speed.SpeedRow("hot", frames=243, batch=2, seconds=[1.0, 1.5, 1.25])
    assert base.median == 2.5 and base.fastest == 1.0
    assert base.frames_per_second == pytest.approx(2 * 243 / 2.5)
    assert speed.speedup(base, fast) == pytest.approx(2.0)
    assert speed.best_case_speedup(base, fast) == pytest.approx(1.0)
    reused = speed.SpeedRow("hot, kept frames reused", frames=243, batch=2, seconds=[0.5, 1.4, 0.25])
    # paired call by call: the differences 0.5, 0.1, 1.0
    assert speed.selection_cost(fast, reused) == pytest.approx((0.5, 0.3, 0.75))


def test_gflops_match_is_two_decimals() -> None:
    row = complexity.ComplexityRow("m", 243, 10, 277.2549, 290.0, 10, 277.25, "paper")
    assert row.gflops_match and row.params_match
    off = complexity.ComplexityRow("m", 243, 11, 277.2551, 290.0, 10, 277.25, "paper")
    assert not off.gflops_match and not off.params_match
    assert "| no |" in complexity.format_table([off])


def test_paper_table_is_consistent() -> None:
    models = complexity.PAPER_MODELS
    assert len(models) == 9
    # the FLOP ratios quoted by the official measurements
    gflops = {name: spec.official_gflops for name, spec in models.items()}
    assert gflops["MixSTE"] / gflops["HoT w. MixSTE"] == pytest.approx(1.655, abs=1e-3)
    assert gflops["MotionBERT"] / gflops["HoT w. MotionBERT"] == pytest.approx(2.074, abs=1e-3)
    for pair in speed.PAIRS.values():
        assert all(name in models for name in pair)


def test_full_size_tpc_mhformer_reproduces_the_paper() -> None:
    # the one paper model cheap enough for every test run (about 5 s, most of it building 31.5 M params)
    name = "TPC w. MHFormer"
    row = complexity.measure(name)
    assert row.params == complexity.PAPER_MODELS[name].official_params
    assert row.gflops_match, f"{name}: {row.paper_gflops:.4f} vs {row.official_gflops}"
    assert row.full_gflops > row.paper_gflops  # attention products and LayerNorm on top


def test_quick_build_is_what_the_config_says() -> None:
    base = complexity.build_paper_model("MixSTE", complexity.quick_overrides("mixste"))
    hot = complexity.build_paper_model("HoT w. MixSTE", complexity.quick_overrides("mixste"))
    assert hot.stages == [(1, 9)] and base.stages == []
    c, frames, tokens = 32, 27, 9
    # HoT adds TRA (q/k/v/proj with biases), its queries (frames x c) and the kept-token embedding
    assert count_parameters(hot) - count_parameters(base) == 4 * (c * c + c) + frames * c + tokens * c


def test_complexity_quick_cli_writes_markdown(tmp_path, capsys) -> None:
    out = tmp_path / "complexity.md"
    threads = torch.get_num_threads()
    rc = bench.main(["complexity", "--quick", "--models", "MixSTE,HoT w. MixSTE", "--markdown", str(out)])
    assert rc == 0
    assert torch.get_num_threads() == threads
    text = out.read_text()
    assert "| HoT w. MixSTE | 27 |" in text and "33,783,811" in text
    assert "HoT w. MixSTE" in capsys.readouterr().out


def test_speed_quick_cli(capsys) -> None:
    rc = bench.main(["speed", "--quick", "--pairs", "mixste,motionbert", "--rounds", "2", "--calls", "1",
                     "--warmup", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    for name in ("| MixSTE |", "| HoT w. MixSTE |", "| MotionBERT |", "| HoT w. MotionBERT |"):
        assert name in text
    assert text.count("x) | ") == 2  # one measured speed-up per pair, next to the official one
    assert "| 1.66x | 1.71x |" in text and "| 2.07x | 2.35x |" in text  # FLOP ratio, official (1 thread)


def test_speed_selection_cost_reuses_the_kept_frames(capsys) -> None:
    rc = bench.main(["speed", "--quick", "--pairs", "mhformer", "--rounds", "1", "--calls", "1", "--warmup", "0",
                     "--selection-cost", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "| TPC w. MHFormer, kept frames reused | 36 | 1 |" in text
    assert "- TPC w. MHFormer: " in text and ("% of the forward" in text or "within the timing noise" in text)
    # the reused call runs the same model on the same frames: the same output, the selection skipped
    model = complexity.build_paper_model("TPC w. MHFormer", complexity.quick_overrides("mhformer"))
    call = speed.model_call(model, torch.randn(2, model.frames, 17, model.in_channels), speed.RunOptions())
    first = call()
    calls = []
    model.policy.select = lambda *a: calls.append(a)  # must not run when the frames are reused
    again = call(first.kept)
    assert not calls and torch.equal(again.pose, first.pose) and torch.equal(again.frame_index, first.frame_index)


def test_speed_with_torch_gemm_says_so(capsys) -> None:
    rc = bench.main(["speed", "--quick", "--pairs", "mixste", "--rounds", "1", "--calls", "1", "--warmup", "0",
                     "--cpu-linear", "torch", "--no-progress"])
    assert rc == 0
    assert "float32 linear layers on CPU: torch" in capsys.readouterr().out


def test_speed_training_step_in_bf16(capsys) -> None:
    rc = bench.main(["speed", "--quick", "--pairs", "mixste", "--rounds", "1", "--calls", "1", "--warmup", "0",
                     "--mode", "train", "--precision", "bf16", "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "bf16, backend torch, train; s/step" in text and "| HoT w. MixSTE |" in text
    assert "| 1.66x | – |" in text  # FLOP ratio shown; the official CPU figures are float32 inference


@pytest.mark.parametrize("flags, message", [
    (["--precision", "fp16"], "choose one of float32, bf16, int8"),
    (["--backend", "tensorrt"], "choose one of torch, onnxruntime"),
    (["--backend", "onnxruntime", "--precision", "bf16"], "float32 inference on CPU only"),
    (["--mode", "train", "--precision", "int8"], "inference-only"),
    (["--cpu-linear", "mkl"], "cpu linear kernel 'mkl': use one of onednn, torch"),
    (["--selection-cost", "--mode", "train"], "--selection-cost times torch inference only"),
])
def test_bad_run_options_are_one_line_errors(flags: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        speed.main(["--quick", "--pairs", "mixste", *flags])


def test_bad_names_are_rejected() -> None:
    with pytest.raises(SystemExit, match="unknown pair"):
        speed.main(["--pairs", "nope"])
    with pytest.raises(SystemExit, match="unknown model"):
        complexity.main(["--models", "nope"])
    with pytest.raises(ValueError, match="unknown paper model"):
        complexity.build_paper_model("nope")
    with pytest.raises(ValueError, match="quick sizes"):
        complexity.quick_overrides("nope")
