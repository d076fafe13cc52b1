"""hotpose against the official HoT classes: same weights, outputs checked equal, timed interleaved.

    python scripts/bench_vs_official.py --official-dir PATH/TO/HoT [--models mixste,hot_mixste]
        [--batches 1,8] [--precisions float32,bf16,int8] [--calls 7] [--warmup 1] [--threads 2]
        [--train-step] [--out results.jsonl]

``PATH/TO/HoT`` is a checkout of the official repository (the folder holding ``model/``); nothing of it
is copied here. The official files import ``timm`` for two helpers only (``DropPath``,
``trunc_normal_``); unless ``--real-timm`` is given, a small stand-in module is registered in their
place, so timm (and its torchvision import) is not needed.

Method, per row (one model at one batch size):

1. The official class is built at its paper configuration (random weights, ``torch.manual_seed(0)``),
   its ``state_dict()`` loaded with :func:`hotpose.models.official.load_official`.
2. Equality: with the same seed set before each forward (the official TPC tie-break draws
   ``torch.rand``), hotpose in official numerics (explicit attention) and the official class are run on
   one input; ``max |Δ|`` is reported and must be <= 1e-5 (the row is marked otherwise). The timed
   hotpose model runs SDPA attention: its difference to the official output is reported too.
3. Timing: every variant of the row (official float32; hotpose float32, bf16, int8; official bf16;
   hotpose float32 with torch's own GEMM for its linear layers where oneDNN's is the default)
   in one process, ``--warmup`` untimed calls each, then ``--calls`` timed calls each, interleaved
   A/B/C/... with the order reversed on every other round (one round = one call of each). Median and
   min seconds per call; ratio = official float32 median / variant median (>1: faster than the official
   class). On a shared machine only the ratios of interleaved calls mean something.

``--train-step`` adds MixSTE at 81 frames, batch 4: forward, the MixSTE loss of ``configs/loss/mixste
.yaml`` (hotpose's implementation, on both models alike), backward and an AdamW step.

Each row is appended to ``--out`` as one JSON line as soon as it is measured, and printed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import sys
import time
import types
from argparse import Namespace
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hotpose.host_memory import keep_freed_memory  # noqa: E402
from hotpose.models.layers import cpu_linear, current_cpu_linear  # noqa: E402
from hotpose.models.official import load_official  # noqa: E402
from hotpose.precision import autocast, prepare_model  # noqa: E402

EQUAL_TOLERANCE = 1e-5
# variant -> (official module, input channels, clip frames)
VARIANTS: dict[str, tuple[str, int, int]] = {
    "mixste": ("model.mixste.mixste", 2, 243),
    "hot_mixste": ("model.mixste.hot_mixste", 2, 243),
    "tpc_mixste": ("model.mixste.tpc_mixste", 2, 243),
    "mhformer": ("model.mhformer.mhformer", 2, 351),
    "tpc_mhformer": ("model.mhformer.tpc_mhformer", 2, 351),
    "motionbert": ("model.motionbert.motionbert", 3, 243),
    "hot_motionbert": ("model.motionbert.hot_motionbert", 3, 243),
    "motionagformer": ("model.motionagformer.motionagformer", 3, 243),
    "hot_motionagformer": ("model.motionagformer.hot_motionagformer", 3, 243),
}
# paper configurations (official README / main_*.py), one namespace for every official class
PAPER_ARGS = {"mixste": dict(frames=243, channel=512, d_hid=1024),
              "mhformer": dict(frames=351, channel=512, d_hid=1024)}
TOKENS = {"hot_mixste": (81, 3), "tpc_mixste": (61, 7), "tpc_mhformer": (117, 1)}


def install_timm_stand_in() -> None:
    """Register ``timm.models.layers`` with the two names the official files import."""

    class DropPath(nn.Module):
        def __init__(self, drop_prob: float = 0.0) -> None:
            super().__init__()
            self.p = float(drop_prob or 0.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.p == 0.0 or not self.training:
                return x
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
            return x * mask / (1 - self.p)

    layers = types.ModuleType("timm.models.layers")
    layers.DropPath = DropPath
    layers.trunc_normal_ = nn.init.trunc_normal_
    models = types.ModuleType("timm.models")
    models.layers = layers
    timm = types.ModuleType("timm")
    timm.models = models
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})


def official_model(variant: str, frames: int | None = None) -> nn.Module:
    module, _, default_frames = VARIANTS[variant]
    family = variant.split("_")[-1]
    args = Namespace(n_joints=17, out_joints=17, layers=8, maxlen=243, pad=0, token_num=0, layer_index=0)
    for key, value in PAPER_ARGS.get(family, {}).items():
        setattr(args, key, value)
    if frames is not None:
        args.frames = frames
    args.pad = (getattr(args, "frames", default_frames) - 1) // 2
    if variant in TOKENS:
        args.token_num, args.layer_index = TOKENS[variant]
    with contextlib.redirect_stdout(open(os.devnull, "w")):  # some official classes print at build
        return importlib.import_module(module).Model(args)


def first(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def seeded(fn: Callable[[], object], seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return first(fn()).float()


def centre_pose(model: nn.Module, x: torch.Tensor, precision: str, centre: int) -> torch.Tensor:
    """The centre frame's pose (b, 17, 3): what a seq2frame (tpc_*) model is evaluated on. Its other
    outputs belong to whichever frames the selection kept, so they cannot be compared across precisions."""
    torch.manual_seed(0)
    with autocast(precision, "cpu"):
        out = model.forward_output(x)
    position = (out.frame_index == centre).long().argmax(dim=1)
    return out.pose[torch.arange(x.shape[0]), position].float()


def time_interleaved(calls: dict[str, Callable[[], object]], rounds: int, warmup: int) -> dict[str, list[float]]:
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def summarise(times: dict[str, list[float]], reference: str) -> dict[str, dict[str, float]]:
    ref = statistics.median(times[reference])
    return {n: {"median_s": statistics.median(t), "min_s": min(t), "calls": len(t),
                "ratio": ref / statistics.median(t), "ratio_min": min(times[reference]) / min(t)}
            for n, t in times.items()}


# Matrix products and the fused attention kernel: work that a float32 model of the same FLOPs cannot
# avoid in the kernels hotpose runs (oneDNN's GEMM for linear layers where available, else MKL's).
FLOOR_OPS = ("aten::addmm", "aten::mm", "aten::bmm", "aten::baddbmm", "mkldnn::_linear_pointwise",
             "aten::_scaled_dot_product_flash_attention_for_cpu")
# the extra variant that shows what the linear kernel alone gives (hotpose with torch's own GEMM)
TORCH_GEMM = "hotpose float32 torch GEMM"


def floor_share(fn: Callable[[], object]) -> float:
    """Share of one call's CPU time spent in :data:`FLOOR_OPS` (torch profiler, self time)."""
    from torch.profiler import profile

    with profile() as prof:
        fn()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key in FLOOR_OPS) / total


def inference_row(variant: str, batch: int, precisions: list[str], calls: int, warmup: int,
                  official_bf16: bool = False, floor: bool = False, torch_gemm: bool = True) -> dict:
    _, channels, frames = VARIANTS[variant]
    torch.manual_seed(0)
    official = official_model(variant).eval()
    ours = load_official(official.state_dict(), variant)  # official numerics, official tie-break
    timed = load_official(official.state_dict(), variant)
    timed.official_numerics = False  # SDPA attention: what a user runs
    x = torch.randn(batch, frames, 17, channels)
    with torch.inference_mode():
        reference = seeded(lambda: official(x))
        equal_diff = (seeded(lambda: ours(x)) - reference).abs().max().item()
        sdpa_diff = (seeded(lambda: timed(x)) - reference).abs().max().item()
        variants: dict[str, Callable[[], object]] = {"official float32": lambda: official(x),
                                                      "hotpose float32": lambda: timed(x)}
        diffs = {"hotpose float32": sdpa_diff}
        if torch_gemm and current_cpu_linear() != "torch":
            def run_torch_gemm() -> object:
                with cpu_linear("torch"):
                    return timed(x)
            variants[TORCH_GEMM] = run_torch_gemm
            diffs[TORCH_GEMM] = (seeded(run_torch_gemm) - reference).abs().max().item()
        if is_pruned(variant):
            # hotpose's default tie-break (float64 product-form distances, index rule): no RNG, so its
            # selection may differ from the official random one on tied pairs; timed, not compared
            deterministic = load_official(official.state_dict(), variant, tie_break="deterministic")
            deterministic.official_numerics = False
            variants["hotpose float32 deterministic TPC"] = lambda: deterministic(x)
        for precision in precisions:
            if precision == "float32":
                continue
            model = prepare_model(timed, precision, "cpu")

            def run(model: nn.Module = model, precision: str = precision) -> object:
                with autocast(precision, "cpu"):
                    return model(x)

            name = f"hotpose {precision}"
            variants[name] = run
            if variant.startswith("tpc_"):
                centre = (frames - 1) // 2
                diffs[name] = (centre_pose(model, x, precision, centre)
                               - centre_pose(ours, x, "float32", centre)).abs().max().item()
            else:
                diffs[name] = (seeded(run) - reference).abs().max().item()
            if precision == "bf16" and official_bf16:
                def run_official() -> object:
                    with autocast("bf16", "cpu"):
                        return official(x)
                variants["official bf16"] = run_official
                if not variant.startswith("tpc_"):
                    diffs["official bf16"] = (seeded(run_official) - reference).abs().max().item()
        times = time_interleaved(variants, calls, warmup)
        share = floor_share(lambda: timed(x)) if floor else None
    if variant.startswith("tpc_"):
        diffs = {k if k == "hotpose float32" else f"{k} (centre frame)": v for k, v in diffs.items()}
    row = {"model": variant, "batch": batch, "frames": frames, "max_diff_official_numerics": equal_diff,
           "equal": equal_diff <= EQUAL_TOLERANCE, "max_diff_to_official_fp32": diffs,
           "timing": summarise(times, "official float32")}
    if share is not None:
        # if everything but the matrix products and attention were free: the most float32 can give
        timing = row["timing"]
        row["floor_share"] = share
        floor_s = share * timing["hotpose float32"]["median_s"]
        row["float32_ceiling"] = timing["official float32"]["median_s"] / floor_s
    return row


def training_row(calls: int, warmup: int, precisions: Sequence[str] = ("float32", "bf16"), frames: int = 81,
                 batch: int = 4) -> dict:
    from hotpose.losses import PoseLoss

    torch.manual_seed(0)
    official = official_model("mixste", frames=frames).train()
    ours = load_official(official.state_dict(), "mixste").train()
    ours.official_numerics = False
    loss_fn = PoseLoss(weighted_mpjpe=1.0, temporal_consistency=0.5, velocity=2.0, mask_padding=False)
    x, target = torch.randn(batch, frames, 17, 2), torch.randn(batch, frames, 17, 3) * 0.2
    runs = [("official float32", official, "float32", None), ("hotpose float32", ours, "float32", None)]
    if "bf16" in precisions:  # as --precisions says (without bf16 hardware a bf16 step takes minutes)
        ours_bf16 = load_official(official.state_dict(), "mixste").train()
        ours_bf16.official_numerics = False
        runs.append(("hotpose bf16", ours_bf16, "bf16", None))
    if current_cpu_linear() != "torch":
        ours_torch_gemm = load_official(official.state_dict(), "mixste").train()
        ours_torch_gemm.official_numerics = False
        runs.insert(2, (TORCH_GEMM, ours_torch_gemm, "float32", "torch"))
    steps = {}
    for name, model, precision, kernel in runs:
        optimiser = torch.optim.AdamW(model.parameters(), lr=4e-5, weight_decay=0.1)

        def step(model: nn.Module = model, optimiser: torch.optim.Optimizer = optimiser,
                 precision: str = precision, kernel: str | None = kernel) -> None:
            optimiser.zero_grad(set_to_none=True)
            with cpu_linear(kernel or current_cpu_linear()), autocast(precision, "cpu"):
                # bf16: what Lightning's precision=bf16-mixed does
                loss = loss_fn(first(model(x)).float(), target)
                loss.backward()
            optimiser.step()

        steps[name] = step
    times = time_interleaved(steps, calls, warmup)
    return {"model": f"training step mixste {frames} frames", "batch": batch, "frames": frames,
            "timing": summarise(times, "official float32")}


def is_pruned(variant: str) -> bool:
    return variant.startswith(("hot_", "tpc_"))


def format_row(row: dict) -> str:
    parts = [f"{row['model']} batch {row['batch']}"]
    if "equal" in row:
        parts.append(f"max|Δ| official numerics {row['max_diff_official_numerics']:.1e}"
                     + ("" if row["equal"] else " NOT EQUAL"))
    for name, t in row["timing"].items():
        found = row.get("max_diff_to_official_fp32", {})
        diff = found.get(name, found.get(f"{name} (centre frame)"))
        extra = "" if diff is None else f", max|Δ| {diff:.1e}"
        parts.append(f"{name}: {t['median_s']:.3f}s ({t['min_s']:.3f}) {t['ratio']:.2f}x"
                     f" ({t['ratio_min']:.2f}x){extra}")
    if "float32_ceiling" in row:
        parts.append(f"GEMM+attention {row['floor_share']:.0%} of hotpose float32, "
                     f"float32 ceiling {row['float32_ceiling']:.2f}x")
    return " | ".join(parts)


def markdown_table(rows: list[dict]) -> str:
    """The docs/performance.md table: one line per model, batch and variant; ratio vs official float32."""
    lines = ["| model | batch | variant | s/call median (min) | vs official fp32: median (min) "
             "| max abs diff to official fp32 |", "|---|---:|---|---:|---:|---:|"]
    for row in rows:
        found = row.get("max_diff_to_official_fp32", {})
        for name, t in row["timing"].items():
            diff = found.get(name, found.get(f"{name} (centre frame)"))
            if name == "official float32" and "max_diff_official_numerics" in row:
                diff_text = f"hotpose in official numerics: {row['max_diff_official_numerics']:.1e}"
            else:
                centre = f"{name} (centre frame)" in found and name != "hotpose float32"
                diff_text = "–" if diff is None else f"{diff:.1e}" + (" (centre)" if centre else "")
            lines.append(f"| {row['model']} | {row['batch']} | {name} | {t['median_s']:.3f} ({t['min_s']:.3f}) "
                         f"| {t['ratio']:.2f}x ({t['ratio_min']:.2f}x) | {diff_text} |")
    return "\n".join(lines)


def summary_table(rows: list[dict]) -> str:
    """One line per model and batch: each variant's speed relative to the official float32 class."""
    lines = ["| model | batch | hotpose float32 | (torch GEMM) | hotpose bf16 | official bf16 | hotpose int8 "
             "| float32 ceiling (GEMM+attention share) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "equal" not in row:
            continue
        timing = row["timing"]

        def ratio(name: str, timing: dict = timing) -> str:
            return f"{timing[name]['ratio']:.2f}x" if name in timing else "–"

        ceiling = (f"{row['float32_ceiling']:.2f}x ({row['floor_share']:.0%})" if "float32_ceiling" in row
                   else "–")
        lines.append(f"| {row['model']} | {row['batch']} | {ratio('hotpose float32')} | {ratio(TORCH_GEMM)} "
                     f"| {ratio('hotpose bf16')} "
                     f"| {ratio('official bf16')} | {ratio('hotpose int8')} | {ceiling} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--table":  # python scripts/bench_vs_official.py --table a.jsonl [b.jsonl ...]
        rows = [json.loads(line) for path in argv[1:] for line in Path(path).read_text().splitlines() if line]
        print(markdown_table(rows))
        print()
        print(summary_table(rows))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official-dir", required=True, type=Path,
                        help="checkout of the official HoT repository (holds model/)")
    parser.add_argument("--models", default=",".join(VARIANTS), help="comma-separated official file names")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--precisions", default="float32,bf16,int8")
    parser.add_argument("--calls", type=int, default=7, help="timed calls per variant (>= 7 for medians)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--official-bf16", action="store_true", help="also time the official class in bf16")
    parser.add_argument("--train-step", action="store_true", help="add the MixSTE training-step row")
    parser.add_argument("--floor", action="store_true",
                        help="profile hotpose float32 once: share of matrix products + attention, and the "
                             "float32 ceiling (official time / that share of hotpose's time)")
    parser.add_argument("--torch-gemm", action=argparse.BooleanOptionalAction, default=True,
                        help="also time hotpose float32 with torch's own GEMM (where oneDNN's is the default)")
    parser.add_argument("--only-train-step", action="store_true")
    parser.add_argument("--real-timm", action="store_true", help="import the installed timm")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc as it is (default: hotpose's keep_freed_memory, which then "
                             "serves the official classes too, as they share the process)")
    parser.add_argument("--out", type=Path, default=None, help="append one JSON line per row")
    args = parser.parse_args(argv)
    if not (args.official_dir / "model").is_dir():
        parser.error(f"--official-dir {args.official_dir}: no model/ folder there (give the official checkout)")
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in VARIANTS]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if not args.real_timm:
        install_timm_stand_in()
    sys.path.insert(0, str(args.official_dir.resolve()))
    if args.threads:
        torch.set_num_threads(args.threads)
    tuned = not args.default_malloc and keep_freed_memory()
    header = (f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {os.cpu_count()} CPU(s), "
              f"hotpose float32 linear layers on CPU: {current_cpu_linear()}, "
              f"{args.calls} timed calls per variant after {args.warmup} warm-up, "
              f"malloc {'keeps freed memory (both models)' if tuned else 'as glibc sets it'}")
    print(header, flush=True)
    rows: list[tuple[Callable[[], dict]]] = []
    if not args.only_train_step:
        for batch in (int(b) for b in args.batches.split(",")):
            for m in models:
                rows.append(lambda m=m, batch=batch: inference_row(m, batch, args.precisions.split(","),
                                                                    args.calls, args.warmup, args.official_bf16,
                                                                    args.floor, args.torch_gemm))
    if args.train_step or args.only_train_step:
        rows.append(lambda: training_row(args.calls, args.warmup, args.precisions.split(",")))
    for make in rows:
        row = make()
        row["threads"] = torch.get_num_threads()
        print(format_row(row), flush=True)
        if args.out is not None:
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
