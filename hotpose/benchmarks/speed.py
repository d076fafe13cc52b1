"""Inference throughput of a baseline and its HoT version, side by side in one run.

``python -m hotpose.bench speed [--pairs mixste,motionbert] [--threads 2] [--rounds 2] [--calls 7]
[--warmup 2] [--batch 1] [--device cpu|cuda] [--quick]``

Method (the one used for the official CPU figures): both models in ``eval`` under
``torch.inference_mode``, the same random input ``(batch, frames, 17, cin)``, ``--warmup`` untimed
calls each, then ``--rounds`` rounds of ``--calls`` timed calls per model, interleaved A/B/A/B with
the order reversed on alternate rounds (B/A/B/A), so that load changes on a shared machine hit
both models alike. Reported: median (and min) seconds per clip, input frames per second
(``batch * frames / median``) and the speed-up (baseline median / pruned median). The models are
built from the config groups exactly as ``hotpose.train`` builds them.

``--quick`` shrinks every model to a few frames and a narrow width (a smoke test of the
machinery, not a measurement).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from hotpose.benchmarks.complexity import PAPER_MODELS, build_paper_model, quick_overrides

# baseline name, pruned name (keys of PAPER_MODELS)
PAIRS: dict[str, tuple[str, str]] = {
    "mixste": ("MixSTE", "HoT w. MixSTE"),
    "motionbert": ("MotionBERT", "HoT w. MotionBERT"),
    "motionagformer": ("MotionAGFormer", "HoT w. MotionAGFormer"),
    "mhformer": ("MHFormer", "TPC w. MHFormer"),
    "mixste-tpc": ("MixSTE", "TPC w. MixSTE"),
}
DEFAULT_PAIRS = ("mixste", "motionbert")
# Speed-ups (median ratios) of the authors' classes on a shared 2-vCPU machine, batch 1, same protocol,
# by thread count (official-measurements §3): a reference, not a target for other machines.
OFFICIAL_CPU_SPEEDUP: dict[int, dict[str, float]] = {
    1: {"mixste": 1.71, "motionbert": 2.35, "mhformer": 1.73, "mixste-tpc": 1.11},
    2: {"mixste": 1.66, "motionbert": 2.69, "motionagformer": 1.65, "mhformer": 1.63, "mixste-tpc": 1.08},
}


def time_interleaved(calls: dict[str, Callable[[], object]], rounds: int, per_round: int, warmup: int,
                     sync: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds of each timed call, per name: A/B/A/B on even rounds, B/A/B/A on odd ones.

    ``warmup`` untimed calls per name come first. ``sync`` waits for queued device work
    (``torch.cuda.synchronize``) so that the wall clock covers the whole call.
    """
    if rounds < 1 or per_round < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, calls >= 1, warmup >= 0; got {rounds}, {per_round}, {warmup}")
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for _ in range(per_round):
            for name in order:
                start = time.perf_counter()
                calls[name]()
                sync()
                times[name].append(time.perf_counter() - start)
    return times


@dataclass(frozen=True)
class SpeedRow:
    name: str
    frames: int
    batch: int
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def fastest(self) -> float:
        return min(self.seconds)

    @property
    def frames_per_second(self) -> float:
        return self.batch * self.frames / self.median


def speedup(baseline: SpeedRow, pruned: SpeedRow) -> float:
    """Baseline median time over pruned median time (>1: the pruned model is faster)."""
    return baseline.median / pruned.median


def best_case_speedup(baseline: SpeedRow, pruned: SpeedRow) -> float:
    """Ratio of the fastest calls: less sensitive to other processes stealing a core, which
    inflates some calls (and so the medians, when it lasts) several times over."""
    return baseline.fastest / pruned.fastest


def measure_pair(pair: str, batch: int, device: str, rounds: int, per_round: int, warmup: int,
                 quick: bool) -> tuple[SpeedRow, SpeedRow]:
    """Build both models of ``pair`` and time them interleaved on one shared input."""
    if pair not in PAIRS:
        raise ValueError(f"unknown pair {pair!r}; choose from {', '.join(PAIRS)}")
    rows = []
    models = {}
    for name in PAIRS[pair]:
        spec = PAPER_MODELS[name]
        extra = quick_overrides(spec.backbone) if quick else []
        models[name] = build_paper_model(name, extra).to(device).eval()
    frames, channels = _input_size(next(iter(models.values())))
    x = torch.randn(batch, frames, 17, channels, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def call(model: torch.nn.Module) -> Callable[[], object]:
        return lambda: model(x)

    with torch.inference_mode():
        times = time_interleaved({n: call(m) for n, m in models.items()}, rounds, per_round, warmup, sync)
    for name in PAIRS[pair]:
        rows.append(SpeedRow(name, frames, batch, times[name]))
    return rows[0], rows[1]


def _input_size(model: torch.nn.Module) -> tuple[int, int]:
    """Clip length and channels per joint the hourglass expects."""
    return int(model.frames), int(model.in_channels)


def format_table(results: Sequence[tuple[str, SpeedRow, SpeedRow]], threads: int, device: str) -> str:
    lines = [
        f"device {device}, {threads} thread(s); s/clip = median (min) of the timed calls",
        "",
        "| model | frames | batch | s/clip | frames/s | speed-up median (min) | official, same threads |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for pair, base, pruned in results:
        lines.append(f"| {base.name} | {base.frames} | {base.batch} | {base.median:.3f} ({base.fastest:.3f}) "
                     f"| {base.frames_per_second:.1f} | | |")
        gain, best = speedup(base, pruned), best_case_speedup(base, pruned)
        official = OFFICIAL_CPU_SPEEDUP.get(threads, {}).get(pair) if device == "cpu" else None
        reference = "–" if official is None else f"{official:.2f}x"
        lines.append(f"| {pruned.name} | {pruned.frames} | {pruned.batch} | {pruned.median:.3f} "
                     f"({pruned.fastest:.3f}) | {pruned.frames_per_second:.1f} | {gain:.2f}x ({best:.2f}x) "
                     f"| {reference} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hotpose.bench speed", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", default=",".join(DEFAULT_PAIRS),
                        help=f"comma-separated, from {', '.join(PAIRS)}")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=7, help="timed calls per model per round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per model first")
    parser.add_argument("--batch", type=int, default=1, help="clips per call")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--quick", action="store_true", help="tiny models: checks the machinery only")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    unknown = [p for p in pairs if p not in PAIRS]
    if unknown or not pairs:
        raise SystemExit(f"unknown pair(s) {unknown or pairs}; choose from {', '.join(PAIRS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda asked for, but torch sees no CUDA device")
    if args.batch < 1:
        raise SystemExit(f"--batch must be >= 1, got {args.batch}")
    previous_threads = torch.get_num_threads()
    if args.threads is not None or args.quick:
        # tiny models on a shared CPU: a second OpenMP thread costs more in waiting than it gains
        torch.set_num_threads(args.threads or 1)
    try:
        load_before = _load_average()
        results = [(p, *measure_pair(p, args.batch, args.device, args.rounds, args.calls, args.warmup,
                                     args.quick)) for p in pairs]
        table = format_table(results, torch.get_num_threads(), args.device)
    finally:
        torch.set_num_threads(previous_threads)
    if args.quick:
        table = "(--quick: tiny models, not the paper's sizes)\n" + table
    print(table)
    print(f"\nload average (1 min) before / after: {load_before} / {_load_average()}")
    return 0


def _load_average() -> str:
    """The 1-minute load average (other processes compete for the same cores), or n/a."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "n/a"
