"""Inference throughput of a baseline and its HoT version, side by side in one run.

``python -m hotpose.bench speed [--pairs mixste,motionbert] [--threads 2] [--rounds 2] [--calls 7]
[--warmup 2] [--batch 1] [--device cpu|cuda] [--precision float32|bf16|int8]
[--backend torch|onnxruntime] [--mode inference|train] [--compile] [--selection-cost] [--quick]``

Method (the one used for the official CPU figures): both models in ``eval`` under
``torch.inference_mode``, the same random input ``(batch, frames, 17, cin)``, ``--warmup`` untimed
calls each, then ``--rounds`` rounds of ``--calls`` timed calls per model, interleaved A/B/A/B with
the order reversed on alternate rounds (B/A/B/A), so that load changes on a shared machine hit
both models alike. Reported: median (and min) seconds per clip, input frames per second
(``batch * frames / median``) and the speed-up (baseline median / pruned median). The models are
built from the config groups exactly as ``hotpose.train`` builds them.

``--precision`` runs both models through :mod:`hotpose.precision` (bf16 autocast, int8 dynamic
quantisation on CPU). ``--backend onnxruntime`` exports both models to ONNX first (as
``hotpose.export`` does: deterministic TPC tie-break) and times ONNX Runtime sessions with
``--threads`` intra-op threads (float32 only). ``--mode train`` times one training step instead:
forward, MPJPE on a random target, backward, AdamW step (bf16: forward and loss under autocast, as
Lightning's ``precision=bf16-mixed``). The table gives the HoT speed-up next to the FLOP ratio of the
paper table (baseline GFLOPs / pruned GFLOPs). A Rich progress bar on stderr counts the calls.

``--selection-cost`` times a third model per pair: the pruned one given the kept frames of a first,
untimed call (``forward(x, kept=...)``), so that it skips the token selection (frame features and
DPC-kNN) and runs everything else. The difference of the two medians is what the selection costs in
the forward. The paper's FLOP counts leave the selection out, so the speed-up without it is the figure
to read against the FLOP ratio for the rest of the model.

``--quick`` shrinks every model to a few frames and a narrow width (a smoke test of the
machinery, not a measurement).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from hotpose.benchmarks.complexity import PAPER_MODELS, build_paper_model, quick_overrides
from hotpose.host_memory import keep_freed_memory
from hotpose.models.layers import CPU_LINEAR_KERNELS, check_cpu_linear, cpu_linear, current_cpu_linear

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
                     sync: Callable[[], None] = lambda: None,
                     advance: Callable[[], None] = lambda: None) -> dict[str, list[float]]:
    """Seconds of each timed call, per name: A/B/A/B on even rounds, B/A/B/A on odd ones.

    ``warmup`` untimed calls per name come first. ``sync`` waits for queued device work
    (``torch.cuda.synchronize``) so that the wall clock covers the whole call. ``advance`` is called
    after every call (a progress bar), outside the timed span.
    """
    if rounds < 1 or per_round < 1 or warmup < 0:
        raise ValueError(f"need rounds >= 1, calls >= 1, warmup >= 0; got {rounds}, {per_round}, {warmup}")
    names = list(calls)
    for name in names:
        for _ in range(warmup):
            calls[name]()
            advance()
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
                advance()
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


def selection_cost(pruned: SpeedRow, reused: SpeedRow) -> tuple[float, float, float]:
    """Seconds the token selection takes per call: the median and quartiles of the paired differences
    (call ``i`` of each, neighbours in time under the interleaving), far less noisy than a difference
    of medians when the selection is a small part of a long forward."""
    differences = [p - r for p, r in zip(pruned.seconds, reused.seconds, strict=True)]
    if len(differences) < 2:
        return differences[0], differences[0], differences[0]
    low, middle, high = statistics.quantiles(differences, n=4, method="inclusive")
    return middle, low, high


def best_case_speedup(baseline: SpeedRow, pruned: SpeedRow) -> float:
    """Ratio of the fastest calls: less sensitive to other processes stealing a core, which
    inflates some calls (and so the medians, when it lasts) several times over."""
    return baseline.fastest / pruned.fastest


BACKENDS = ("torch", "onnxruntime")
MODES = ("inference", "train")


@dataclass(frozen=True)
class RunOptions:
    """How each model is run: ``precision`` (:data:`hotpose.precision.PRECISIONS`), ``backend``
    (:data:`BACKENDS`), ``mode`` (:data:`MODES`) and the device."""

    device: str = "cpu"
    precision: str = "float32"
    backend: str = "torch"
    mode: str = "inference"
    compile: bool = False  # torch.compile each model (the warm-up calls absorb the compilation)

    def check(self) -> None:
        from hotpose.precision import check_precision

        check_precision(self.precision, self.device)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: choose one of {', '.join(BACKENDS)}")
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: choose one of {', '.join(MODES)}")
        if self.backend == "onnxruntime" and (self.precision != "float32" or self.mode != "inference"
                                               or self.device != "cpu"):
            raise ValueError("backend=onnxruntime times float32 inference on CPU only (the exported graph)")
        if self.compile and self.backend != "torch":
            raise ValueError("--compile applies to the torch backend only")
        if self.mode == "train" and self.precision == "int8":
            raise ValueError("mode=train with precision=int8: dynamic quantisation is inference-only; "
                             "train in float32 or bf16")


def model_call(model: torch.nn.Module, x: torch.Tensor, options: RunOptions,
               workdir: str | None = None) -> Callable[..., object]:
    """One benchmark call of ``model`` on ``x`` as ``options`` say (the model is prepared here). An
    inference call on the torch backend takes ``kept=`` to reuse a selection of the hourglass."""
    from hotpose.precision import autocast, prepare_model

    if options.backend == "onnxruntime":
        return _onnxruntime_call(model, x, workdir)
    if options.mode == "train":
        return _train_step(model.train(), x, options)
    prepared = prepare_model(model.eval(), options.precision, options.device)
    if options.compile:
        prepared = torch.compile(prepared)

    def call(kept: Sequence[torch.Tensor] | None = None) -> object:
        with torch.inference_mode(), autocast(options.precision, options.device):
            return prepared(x) if kept is None else prepared(x, kept=kept)

    return call


def _train_step(model: torch.nn.Module, x: torch.Tensor, options: RunOptions) -> Callable[[], object]:
    from hotpose.losses import mpjpe
    from hotpose.models.hourglass import gather_frames
    from hotpose.precision import autocast

    target = torch.randn(x.shape[0], x.shape[1], 17, 3, device=x.device) * 0.2
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-5)
    forward = torch.compile(model) if options.compile else model

    def step() -> object:
        optimiser.zero_grad(set_to_none=True)
        with autocast(options.precision, options.device):
            out = forward(x)
            loss = mpjpe(out.pose.float(), gather_frames(target, out.frame_index))
        loss.backward()
        optimiser.step()
        return loss

    return step


def _onnxruntime_call(model: torch.nn.Module, x: torch.Tensor, workdir: str | None) -> Callable[[], object]:
    import tempfile
    from pathlib import Path

    from hotpose.export import PoseExport, export_friendly, export_onnx
    from hotpose.inference.onnx_backend import cpu_session

    folder = Path(workdir or tempfile.mkdtemp(prefix="hotpose-bench-"))
    path = folder / f"model_{id(model)}.onnx"
    net = model.eval()
    with export_friendly(net), torch.no_grad():
        export_onnx(PoseExport(net), x, path)
    session = cpu_session(path)
    name, feed = session.get_inputs()[0].name, x.numpy()
    return lambda: session.run(None, {name: feed})


SELECTION_REUSED = "{}, kept frames reused"


def check_selection_cost(options: RunOptions) -> None:
    """The selection cost is measured by reusing kept frames: torch inference only."""
    if options.backend != "torch" or options.mode != "inference":
        raise ValueError("--selection-cost times torch inference only (it reuses the kept frames of a first "
                         f"call), not backend={options.backend} mode={options.mode}")


def measure_pair(pair: str, batch: int, device: str, rounds: int, per_round: int, warmup: int,
                 quick: bool, options: RunOptions | None = None,
                 advance: Callable[[], None] = lambda: None,
                 selection_cost: bool = False) -> tuple[SpeedRow, ...]:
    """Build both models of ``pair`` and time them interleaved on one shared input: (baseline, pruned),
    and with ``selection_cost`` the pruned model reusing its kept frames third."""
    if pair not in PAIRS:
        raise ValueError(f"unknown pair {pair!r}; choose from {', '.join(PAIRS)}")
    options = options or RunOptions(device=device)
    options.check()
    if selection_cost:
        check_selection_cost(options)
    models = {}
    for name in PAIRS[pair]:
        spec = PAPER_MODELS[name]
        extra = quick_overrides(spec.backbone) if quick else []
        models[name] = build_paper_model(name, extra).to(device)
    frames, channels = _input_size(next(iter(models.values())))
    x = torch.randn(batch, frames, 17, channels, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    calls = {n: model_call(m, x, options) for n, m in models.items()}
    if selection_cost:
        pruned = PAIRS[pair][1]
        kept = calls[pruned]().kept  # one untimed call fixes the frames every reused call keeps
        calls[SELECTION_REUSED.format(pruned)] = functools.partial(calls[pruned], kept)
    times = time_interleaved(calls, rounds, per_round, warmup, sync, advance)
    return tuple(SpeedRow(name, frames, batch, times[name]) for name in calls)


def flop_ratio(pair: str) -> float:
    """Baseline over pruned GFLOPs of the paper table (what the speed-up is read against)."""
    base, pruned = PAIRS[pair]
    return PAPER_MODELS[base].official_gflops / PAPER_MODELS[pruned].official_gflops


def _input_size(model: torch.nn.Module) -> tuple[int, int]:
    """Clip length and channels per joint the hourglass expects."""
    return int(model.frames), int(model.in_channels)


def format_table(results: Sequence[tuple[str, SpeedRow, SpeedRow] | tuple[str, SpeedRow, SpeedRow, SpeedRow]],
                 threads: int, device: str, options: RunOptions | None = None) -> str:
    """The markdown table of :func:`main`; a result with a third row (``--selection-cost``) adds that row
    and a line on what the selection costs."""
    options = options or RunOptions(device=device)
    unit = "s/step" if options.mode == "train" else "s/clip"
    lines = [
        f"device {device}, {threads} thread(s), {options.precision}, backend {options.backend}, "
        f"{options.mode}{', compiled' if options.compile else ''}; {unit} = median (min) of the timed calls; "
        f"float32 linear layers on CPU: {current_cpu_linear()}",
        "",
        f"| model | frames | batch | {unit} | frames/s | speed-up median (min) | FLOP ratio "
        "| official, same threads |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    costs = []
    for pair, base, *variants in results:
        lines.append(f"| {base.name} | {base.frames} | {base.batch} | {base.median:.3f} ({base.fastest:.3f}) "
                     f"| {base.frames_per_second:.1f} | | | |")
        same_protocol = device == "cpu" and options == RunOptions(device=device)
        official = OFFICIAL_CPU_SPEEDUP.get(threads, {}).get(pair) if same_protocol else None
        for row, reference in zip(variants, ("–" if official is None else f"{official:.2f}x", "–")):
            gain, best = speedup(base, row), best_case_speedup(base, row)
            lines.append(f"| {row.name} | {row.frames} | {row.batch} | {row.median:.3f} "
                         f"({row.fastest:.3f}) | {row.frames_per_second:.1f} | {gain:.2f}x ({best:.2f}x) "
                         f"| {flop_ratio(pair):.2f}x | {reference} |")
        if len(variants) == 2:
            pruned, reused = variants
            cost, low, high = selection_cost(pruned, reused)
            spread = f"quartiles {low * 1e3:.2f} to {high * 1e3:.2f} ms"
            verdict = (f"{cost * 1e3:.2f} ms per call ({spread}), {100 * cost / pruned.median:.1f} % of the forward"
                       if low > 0 else f"within the timing noise ({spread})")
            costs.append(f"- {pruned.name}: {verdict}")
    if costs:
        lines += ["", "Token selection (frame features and DPC-kNN): the pruned call's time less the next reused "
                  "call's, over the rounds:", *costs]
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
    parser.add_argument("--precision", default="float32", help="float32, bf16 or int8 (CPU)")
    parser.add_argument("--backend", default="torch", help=f"one of {', '.join(BACKENDS)}")
    parser.add_argument("--mode", default="inference", help=f"one of {', '.join(MODES)} (train: one step)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models first")
    parser.add_argument("--selection-cost", action="store_true",
                        help="also time the pruned model reusing its kept frames (what the selection costs)")
    parser.add_argument("--cpu-linear", default=current_cpu_linear(),
                        help=f"GEMM of float32 linear layers on CPU, one of {', '.join(CPU_LINEAR_KERNELS)} "
                             "(default: HOTPOSE_CPU_LINEAR, else onednn on CPUs with AVX-512, torch elsewhere)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
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
    options = RunOptions(args.device, args.precision, args.backend, args.mode, args.compile)
    try:
        options.check()
        check_cpu_linear(args.cpu_linear)
        if args.selection_cost:
            check_selection_cost(options)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    keep_freed_memory()  # as every entry point does (hotpose/host_memory.py)
    previous_threads = torch.get_num_threads()
    if args.threads is not None or args.quick:
        # tiny models on a shared CPU: a second OpenMP thread costs more in waiting than it gains
        torch.set_num_threads(args.threads or 1)
    with cpu_linear(args.cpu_linear):
        try:
            load_before = _load_average()
            calls_per_pair = (3 if args.selection_cost else 2) * (args.warmup + args.rounds * args.calls)
            with _progress(not args.no_progress) as progress:
                task = progress.add_task("timing", total=calls_per_pair * len(pairs))
                results = []
                for p in pairs:
                    progress.update(task, description=f"{p} ({' vs '.join(PAIRS[p])})")
                    results.append((p, *measure_pair(p, args.batch, args.device, args.rounds, args.calls,
                                                     args.warmup, args.quick, options,
                                                     lambda: progress.advance(task), args.selection_cost)))
            table = format_table(results, torch.get_num_threads(), args.device, options)
        finally:
            torch.set_num_threads(previous_threads)
    if args.quick:
        table = "(--quick: tiny models, not the paper's sizes)\n" + table
    print(table)
    print(f"\nload average (1 min) before / after: {load_before} / {_load_average()}")
    return 0


def _progress(enabled: bool):
    """A Rich progress bar on stderr (the table goes to stdout), or a silent stand-in."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=True)


def _load_average() -> str:
    """The 1-minute load average (other processes compete for the same cores), or n/a."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except (AttributeError, OSError):
        return "n/a"
