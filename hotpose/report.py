"""``python -m hotpose.report <sweep or run folders>``: tables and plots from finished (or partial) runs.

Reads only what every run writes itself — ``.hydra/overrides.yaml``, ``.hydra/config.yaml`` and
``metrics.json`` (or ``failed.json`` for a job that raised) — never a logger's private files. Runs that
differ only in ``seed`` form one configuration; their metrics are reported as mean ± std over seeds.
Writes ``report.md``, ``report.csv``, ``p1_vs_gflops.png`` and ``p1_vs_tokens.png`` into the output
folder (the first folder given, unless ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from hotpose.job_status import unfinished_status

log = logging.getLogger(__name__)

#: (column, key in metrics.json's ``test.<mode>.overall``)
METRICS: tuple[tuple[str, str], ...] = (("P1 (mm)", "mpjpe_mm"), ("P2 (mm)", "p_mpjpe_mm"),
                                        ("MPJVE (mm)", "mpjve_mm"))
#: (column, key in metrics.json's ``test.mpi_inf_3dhp.overall``): MPI-INF-3DHP runs add these columns
BENCHMARK_METRICS: tuple[tuple[str, str], ...] = (
    ("3DHP PCK@150 14j (%)", "pck150_mpii14"), ("3DHP AUC 14j (%)", "auc_mpii14"),
    ("3DHP PCK@150 17j (%)", "pck150_all17"), ("3DHP AUC 17j (%)", "auc_all17"))
SEED_KEYS = ("seed",)


@dataclass
class Run:
    """One job folder: its overrides, status and the numbers the report needs."""

    path: Path
    overrides: list[str]
    status: str  # "ok" | "failed" | "running" | "killed" (no results and its process is gone)
    error: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    params: float | None = None
    gflops: float | None = None
    fps: float | None = None
    tokens: int | None = None
    layer: int | None = None
    #: MPI-INF-3DHP per sequence and scene: ``{"TS1": {"pck150_mpii14": ...}, "GS": {...}}``
    benchmark_parts: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def setting(self) -> tuple[str, ...]:
        """The overrides that define the configuration (everything but the seed)."""
        return tuple(sorted(o for o in self.overrides if o.split("=", 1)[0].lstrip("+~") not in SEED_KEYS))


def find_runs(folders: Iterable[Path]) -> list[Path]:
    """Every folder below ``folders`` that holds a Hydra job (``.hydra/overrides.yaml``), sorted."""
    found: set[Path] = set()
    for folder in folders:
        if not folder.is_dir():
            raise FileNotFoundError(f"report: {folder} is not a folder")
        found.update(p.parent.parent for p in folder.rglob(".hydra/overrides.yaml"))
    return sorted(found, key=lambda p: (len(p.parts), _natural(p)))


def _natural(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in path.parts]


def _pruning(config_path: Path) -> tuple[int | None, int | None]:
    """``(tokens, layer)`` of the first pruning stage, read from the job's composed config."""
    if not config_path.is_file():
        return None, None
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(config_path)

    def pick(key: str) -> Any:
        try:
            return OmegaConf.select(cfg, key, throw_on_resolution_failure=False)
        except Exception:  # an interpolation of the Hydra runtime: not resolvable here
            return None

    if pick("pruner.policy") is None:
        return None, None
    stages = pick("pruner.stages")
    if stages:
        return int(stages[0][1]), int(stages[0][0])
    tokens, layer = pick("pruner.tokens"), pick("pruner.layer")
    return (int(tokens) if tokens is not None else None, int(layer) if layer is not None else None)


def read_run(path: Path, mode: str = "exact") -> Run:
    overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    tokens, layer = _pruning(path / ".hydra" / "config.yaml")
    run = Run(path=path, overrides=[str(o) for o in overrides], status="running", tokens=tokens, layer=layer)
    failed, metrics_file = path / "failed.json", path / "metrics.json"
    if failed.is_file():
        info = json.loads(failed.read_text())
        run.status, run.error = "failed", f"{info.get('type', 'Error')}: {info.get('message', '')}".strip()
        return run
    if not metrics_file.is_file():
        run.status = unfinished_status(path)
        if run.status == "killed":
            run.error = "the process ended without results (killed: SIGKILL, out of memory, lost node?)"
        return run
    data = json.loads(metrics_file.read_text())
    overall = data.get("test", {}).get(mode, {}).get("overall", {})
    if not overall:
        run.status, run.error = "failed", f"metrics.json has no test results for eval mode {mode!r}"
        return run
    run.status = "ok"
    run.metrics = {column: float(overall[key]) for column, key in METRICS if key in overall}
    benchmark = data.get("test", {}).get("mpi_inf_3dhp", {}).get("overall", {})
    run.metrics.update({column: float(benchmark[key]) for column, key in BENCHMARK_METRICS if key in benchmark})
    parts = data.get("test", {}).get("mpi_inf_3dhp", {})
    run.benchmark_parts = {**parts.get("per_sequence", {}), **parts.get("per_scene", {})}
    stats = data.get("stats", {})
    run.params = stats.get("params")
    run.gflops = stats.get("paper_gflops")
    run.fps = stats.get("test_frames_per_s")
    return run


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass
class Row:
    setting: tuple[str, ...]
    runs: list[Run]
    shared: tuple[str, ...] = ()  # overrides every row has; left out of the label

    @property
    def done(self) -> list[Run]:
        return [r for r in self.runs if r.status == "ok"]

    def stat(self, column: str) -> tuple[float, float]:
        return _mean_std([r.metrics[column] for r in self.done if column in r.metrics])

    def first(self, attr: str) -> Any:
        return next((getattr(r, attr) for r in self.done if getattr(r, attr) is not None),
                    next((getattr(r, attr) for r in self.runs if getattr(r, attr) is not None), None))

    @property
    def label(self) -> str:
        return " ".join(o for o in self.setting if o not in self.shared) or "(defaults)"


def group_runs(runs: Sequence[Run]) -> list[Row]:
    """One row per configuration (runs that differ only in the seed share a row)."""
    rows: dict[tuple[str, ...], Row] = {}
    for run in runs:
        rows.setdefault(run.setting, Row(run.setting, [])).runs.append(run)
    shared = tuple(sorted(set.intersection(*(set(r.setting) for r in rows.values())))) if len(rows) > 1 else ()
    for row in rows.values():
        row.shared = shared
    return list(rows.values())


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points not dominated in (lower cost, lower error), sorted by cost."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best = [], math.inf
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def _fmt(mean: float, std: float, n: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def write_tables(rows: Sequence[Row], runs: Sequence[Run], out: Path) -> tuple[Path, Path]:
    metrics = METRICS + tuple(m for m in BENCHMARK_METRICS if any(m[0] in r.metrics for r in runs))
    columns = ["configuration", "params (M)", "GFLOPs", "frames/s", *[c for c, _ in metrics], "seeds", "failed"]
    table: list[list[str]] = []
    csv_rows: list[dict[str, Any]] = []
    for row in rows:
        n = len(row.done)
        params, gflops, fps = row.first("params"), row.first("gflops"), row.first("fps")
        stats = {c: row.stat(c) for c, _ in metrics}
        failed = sum(r.status == "failed" for r in row.runs)
        table.append([row.label, f"{params / 1e6:.2f}" if params else "–", f"{gflops:.2f}" if gflops else "–",
                      f"{fps:.0f}" if fps else "–", *[_fmt(*stats[c], n) for c, _ in metrics], str(n), str(failed)])
        record: dict[str, Any] = {"configuration": row.label, "params": params, "gflops": gflops, "fps": fps,
                                  "seeds": n, "failed": failed, "tokens": row.first("tokens"),
                                  "layer": row.first("layer")}
        for column, key in metrics:
            record[f"{key}_mean"], record[f"{key}_std"] = stats[column]
        csv_rows.append(record)

    lines = ["# Sweep report", ""]
    if rows and rows[0].shared:
        lines += [f"Common to every row: `{' '.join(rows[0].shared)}`.", ""]
    lines += ["P1/P2/MPJVE: test set, mean ± std over seeds. GFLOPs: per clip, the paper's convention.", ""]
    if len(metrics) > len(METRICS):
        lines += ["3DHP: MPI-INF-3DHP valid test frames; 14j = the official evaluation's 14 joints, "
                  "17j = all 17 joints (docs/datasets.md).", ""]
    lines += ["n/a: not available (MPJVE needs scored frames adjacent in time: none in seq2frame, or in a "
              "pruned seq2seq model without recovery that keeps no two neighbouring frames).", ""]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table]
    lines += _benchmark_parts_table(rows)
    problems = [r for r in runs if r.status != "ok"]
    if problems:
        lines += ["", "## Jobs without results", ""]
        lines += [f"- `{r.path}` ({' '.join(r.overrides) or 'defaults'}): {r.status}"
                  + (f" — {r.error}" if r.error else "") for r in problems]
    md = out / "report.md"
    md.write_text("\n".join(lines) + "\n")
    csv_path = out / "report.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(csv_rows[0]) if csv_rows else ["configuration"])
        writer.writeheader()
        writer.writerows(csv_rows)
    return md, csv_path


def _benchmark_parts_table(rows: Sequence[Row]) -> list[str]:
    """Markdown lines: MPI-INF-3DHP PCK / AUC (official 14 joints) per sequence and scene, one row per
    configuration, mean over seeds; nothing when no run has them."""
    names = list(dict.fromkeys(name for row in rows for r in row.done for name in r.benchmark_parts))
    if not names:
        return []
    lines = ["", "## MPI-INF-3DHP per sequence and scene", "",
             "PCK@150 / AUC in %, the official evaluation's 14 joints, valid frames, mean over seeds.", "",
             "| configuration | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for row in rows:
        cells = []
        for name in names:
            values = [[r.benchmark_parts[name].get(k, math.nan) for r in row.done if name in r.benchmark_parts]
                      for k in ("pck150_mpii14", "auc_mpii14")]
            cells.append(" / ".join(f"{_mean_std(v)[0]:.1f}" if v else "–" for v in values))
        lines.append(f"| {row.label} | " + " | ".join(cells) + " |")
    return lines


def _figure(width: float = 7.0, height: float = 5.0) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _save(fig: Any, ax: Any, path: Path, xlabel: str, title: str) -> Path:
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel("P1 / MPJPE (mm)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _skip(path: Path, why: str) -> None:
    """No plot: say why, and remove a stale one from an earlier report of the same folder."""
    path.unlink(missing_ok=True)
    log.info("%s not drawn: %s", path.name, why)


#: at most this many Pareto points are labelled in the plot itself (the key lists every point)
_FRONT_LABELS = 8


def plot_efficiency(rows: Sequence[Row], path: Path) -> Path | None:
    """P1 against GFLOPs (the paper's efficiency figure). Every configuration is a numbered point, keyed
    beside the plot; the Pareto front (no other point is both cheaper and more accurate) is drawn in red
    and labelled. Not drawn (None) when fewer than two configurations have both numbers."""
    pts = [(row.first("gflops"), *row.stat("P1 (mm)"), row.label) for row in rows]
    pts = [(g, m, s, label) for g, m, s, label in pts if g is not None and not math.isnan(m)]
    if len(pts) < 2:
        _skip(path, f"{len(pts)} configuration(s) with both GFLOPs and P1")
        return None
    front = pareto_front([(p[0], p[1]) for p in pts])
    on_front = set(front)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, key) = plt.subplots(1, 2, figsize=(12.0, max(5.0, 0.13 * len(pts) + 1.5)),
                                  gridspec_kw={"width_ratios": [3, 2]})
    others = [i for i in range(len(pts)) if i not in on_front]
    ax.errorbar([pts[i][0] for i in others], [pts[i][1] for i in others], yerr=[pts[i][2] for i in others],
                fmt="o", color="0.6", ms=5, capsize=2, label="other configurations")
    ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-o", color="tab:red", lw=1.2, ms=7,
            label="Pareto front (labelled)", zorder=3)
    ax.errorbar([pts[i][0] for i in front], [pts[i][1] for i in front], yerr=[pts[i][2] for i in front],
                fmt="none", ecolor="tab:red", capsize=2, zorder=3)
    for i, (g, m, _, _label) in enumerate(pts):
        ax.annotate(str(i + 1), (g, m), fontsize=7, xytext=(3, 3), textcoords="offset points",
                    color="tab:red" if i in on_front else "0.35")
    for n, i in enumerate(front[:_FRONT_LABELS]):
        # below the front nothing else is drawn (no point is cheaper and better); staggered for close neighbours
        g, m, _, label = pts[i]
        right_half = g > (min(p[0] for p in pts) + max(p[0] for p in pts)) / 2
        ax.annotate(label, (g, m), fontsize=7, color="tab:red", xytext=(-4 if right_half else 4, -13 - 10 * (n % 3)),
                    textcoords="offset points", ha="right" if right_half else "left",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
                    arrowprops={"arrowstyle": "-", "color": "tab:red", "lw": 0.4})
    ax.margins(x=0.08, y=0.12)  # room for the labels below the front
    ax.legend(fontsize=8, loc="upper right")
    key.axis("off")
    step = min(0.035, 0.9 / (len(pts) + 3))
    rows_text = [(" #    P1 (mm)   GFLOPs  configuration", "black")]
    rows_text += [(f"{i + 1:>2d} {'*' if i in on_front else ' '} {m:8.2f} {g:8.3f}  {label}",
                   "tab:red" if i in on_front else "0.25") for i, (g, m, _, label) in enumerate(pts)]
    rows_text += [("", "black"), ("* on the Pareto front (red); P1: mean over seeds", "black")]
    for k, (line, colour) in enumerate(rows_text):
        key.text(0.0, 1.0 - k * step, line, fontsize=7, family="monospace", va="top", ha="left", color=colour,
                 transform=key.transAxes)
    title = f"Accuracy vs cost: {len(pts)} configurations, {len(front)} on the Pareto front"
    return _save(fig, ax, path, "GFLOPs per clip (paper convention)", title)


#: overrides that set the kept-token count or the pruning layer (the axes of the tokens plot)
_TOKEN_KEYS = ("pruner.tokens", "pruner.layer", "pruner.stages", "backbone.prune_tokens", "backbone.prune_layer")


def plot_tokens(rows: Sequence[Row], path: Path) -> Path | None:
    """P1 against the number of kept tokens: one line per pruning layer (and per setting of anything else
    the sweep varies). Drawn only when some line has at least two token counts; else None."""
    lines: dict[tuple[int, tuple[str, ...]], list[tuple[int, float, float]]] = {}
    for row in rows:
        tokens, layer = row.first("tokens"), row.first("layer")
        mean, std = row.stat("P1 (mm)")
        if tokens is None or layer is None or math.isnan(mean):
            continue
        rest = tuple(o for o in row.setting if o not in row.shared and o.split("=", 1)[0].lstrip("+~")
                     not in _TOKEN_KEYS)
        lines.setdefault((layer, rest), []).append((tokens, mean, std))
    if not any(len({v[0] for v in values}) > 1 for values in lines.values()):
        _skip(path, "no configuration line of this sweep varies the number of kept tokens")
        return None
    fig, ax = _figure()
    for (layer, rest), values in sorted(lines.items()):
        values.sort()
        label = f"layer {layer}" + (f" {' '.join(rest)}" if rest else "")
        ax.errorbar([v[0] for v in values], [v[1] for v in values], yerr=[v[2] for v in values],
                    marker="o", capsize=3, label=label)
    ax.set_xticks(sorted({v[0] for values in lines.values() for v in values}))  # the kept counts themselves
    ax.legend(fontsize=8, ncol=2 if len(lines) > 8 else 1)
    return _save(fig, ax, path, "kept tokens (frames after pruning)", "Accuracy vs kept tokens, per pruning layer")


def build_report(folders: Sequence[Path], out: Path | None = None, mode: str = "exact") -> dict[str, Any]:
    """Read every run below ``folders`` and write the tables and plots; returns what was written."""
    paths = find_runs(folders)
    if not paths:
        raise FileNotFoundError(f"report: no Hydra run folders (with .hydra/overrides.yaml) below "
                                f"{', '.join(map(str, folders))}")
    runs = [read_run(p, mode) for p in paths]
    rows = group_runs(runs)
    out = out or folders[0]
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path = write_tables(rows, runs, out)
    return {"runs": runs, "rows": rows, "markdown": md, "csv": csv_path,
            "efficiency_plot": plot_efficiency(rows, out / "p1_vs_gflops.png"),
            "tokens_plot": plot_tokens(rows, out / "p1_vs_tokens.png")}


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, write the report into the sweep folder and say which
    jobs failed and why (configured in ``configs/hydra/default.yaml``)."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            result = build_report([sweep_dir])
        except Exception as error:  # the summary must never turn a finished sweep into a failure
            log.warning("sweep report not written: %s", error)
            return
        runs = result["runs"]
        failed = [r for r in runs if r.status != "ok"]
        log.info("sweep finished: %d of %d jobs have results; report in %s", len(runs) - len(failed), len(runs),
                 result["markdown"])
        for run in failed:
            log.warning("job %s (%s): %s %s", run.path.name, " ".join(run.overrides), run.status, run.error)
        if failed:  # a sweep with a failed job is a failed sweep: exit non-zero so schedulers and scripts see it
            log.error("%d of %d jobs failed or were killed; exit status 1", len(failed), len(runs))
            raise SystemExit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hotpose.report", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="sweep or run folders")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the first folder)")
    parser.add_argument("--mode", default="exact", choices=["exact", "paper"], help="evaluation protocol")
    args = parser.parse_args(argv)
    try:
        result = build_report(args.folders, args.out, args.mode)
    except FileNotFoundError as error:
        print(error, file=sys.stderr)
        return 2
    runs = result["runs"]
    print(result["markdown"].read_text())
    plots = [str(p) for p in (result["efficiency_plot"], result["tokens_plot"]) if p is not None]
    print(f"{sum(r.status == 'ok' for r in runs)} finished, {sum(r.status == 'failed' for r in runs)} failed, "
          f"{sum(r.status == 'killed' for r in runs)} killed, "
          f"{sum(r.status == 'running' for r in runs)} still running; wrote {result['markdown']}, "
          f"{', '.join([str(result['csv']), *plots])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
