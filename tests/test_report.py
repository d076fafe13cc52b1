"""Sweep report: grouping over seeds, Pareto front, partial/failed sweeps, and a real smoke multirun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import yaml

from hotpose.report import build_report, group_runs, pareto_front, read_run

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _job(folder: Path, overrides: list[str], p1: float | None = None, failed: str | None = None,
         gflops: float = 1.0) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"backbone": {"prune_tokens": 81, "prune_layer": 3},
         "pruner": {"policy": {"_target_": "x"}, "tokens": "${backbone.prune_tokens}",
                    "layer": "${backbone.prune_layer}", "stages": None}}))
    if p1 is not None:
        (folder / "metrics.json").write_text(json.dumps({
            "test": {"exact": {"overall": {"mpjpe_mm": p1, "p_mpjpe_mm": p1 / 2, "mpjve_mm": 3.0}}},
            "stats": {"params": 2e6, "paper_gflops": gflops, "test_frames_per_s": 100.0}}))
    if failed:
        (folder / "failed.json").write_text(json.dumps({"type": "ValueError", "message": failed}))
    return folder


def _valid_png(path: Path) -> None:
    assert path.read_bytes()[:8] == PNG_MAGIC
    assert matplotlib.image.imread(path).ndim == 3


def test_pareto_front_by_hand() -> None:
    # (cost, error): (2, 5) is dominated by (1, 4); (3, 1) is the cheapest with error 1
    assert pareto_front([(1, 4), (2, 5), (3, 1), (4, 1)]) == [0, 2]
    assert pareto_front([]) == []


def test_seeds_are_averaged_and_failures_listed(tmp_path: Path) -> None:
    _job(tmp_path / "0", ["pruner=tpc", "seed=1"], p1=40.0)
    _job(tmp_path / "1", ["pruner=tpc", "seed=2"], p1=44.0)
    _job(tmp_path / "2", ["pruner=none", "seed=1"], p1=50.0, gflops=2.0)
    _job(tmp_path / "3", ["pruner=none", "seed=2"], failed="tokens 999 >= 243 frames")
    _job(tmp_path / "4", ["pruner=uniform", "seed=1"])  # still running: no metrics yet

    result = build_report([tmp_path])
    rows = {row.label: row for row in result["rows"]}
    assert set(rows) == {"pruner=tpc", "pruner=none", "pruner=uniform"}
    mean, std = rows["pruner=tpc"].stat("P1 (mm)")
    assert mean == pytest.approx(42.0) and std == pytest.approx(2.8284271, rel=1e-6)  # sample std of 40, 44
    assert rows["pruner=tpc"].first("tokens") == 81 and rows["pruner=tpc"].first("layer") == 3
    text = result["markdown"].read_text()
    assert "42.00 ± 2.83" in text
    assert "ValueError: tokens 999 >= 243 frames" in text and "running" in text
    assert (tmp_path / "report.csv").read_text().count("\n") == 4  # header + 3 configurations
    _valid_png(result["efficiency_plot"])
    assert result["tokens_plot"] is None  # every row keeps 81 tokens: nothing to draw against


def _pruned_job(folder: Path, tokens: int, layer: int, p1: float, extra: tuple[str, ...] = ()) -> Path:
    _job(folder, [f"pruner.tokens={tokens}", f"pruner.layer={layer}", *extra, "seed=1"], p1=p1,
         gflops=tokens * layer / 100)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"pruner": {"policy": {"_target_": "x"}, "tokens": tokens, "layer": layer, "stages": None}}))
    return folder


def test_tokens_plot_only_when_the_token_count_varies(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    for n, (tokens, layer) in enumerate([(27, 1), (81, 1), (27, 3), (81, 3)]):
        _pruned_job(tmp_path / "grid" / str(n), tokens, layer, p1=50.0 + n)
    result = build_report([tmp_path / "grid"])
    _valid_png(result["tokens_plot"])
    seen = {}
    original = plt.Axes.set_xticks

    def spy(ax, ticks, *args, **kwargs):  # the ticks are the kept counts, not fractions
        seen["ticks"] = list(ticks)
        return original(ax, ticks, *args, **kwargs)

    plt.Axes.set_xticks = spy
    try:
        build_report([tmp_path / "grid"])
    finally:
        plt.Axes.set_xticks = original
    assert seen["ticks"] == [27, 81]

    # one token count, different recoverers: no line to draw, and a stale picture is removed
    for n, recoverer in enumerate(["tra", "linear", "nearest"]):
        _pruned_job(tmp_path / "one" / str(n), 81, 3, p1=50.0 + n, extra=(f"recoverer={recoverer}",))
    (tmp_path / "one" / "p1_vs_tokens.png").write_bytes(PNG_MAGIC)
    result = build_report([tmp_path / "one"])
    assert result["tokens_plot"] is None and not (tmp_path / "one" / "p1_vs_tokens.png").exists()
    _valid_png(result["efficiency_plot"])


def test_efficiency_plot_needs_two_configurations_and_keys_every_point(tmp_path: Path) -> None:
    _job(tmp_path / "single" / "0", ["pruner=tpc", "seed=1"], p1=40.0)
    assert build_report([tmp_path / "single"])["efficiency_plot"] is None
    for n in range(12):  # many configurations: every one is numbered in the key beside the plot
        _job(tmp_path / "many" / str(n), [f"pruner.tokens={10 + n}", "seed=1"], p1=60.0 - n % 5, gflops=1.0 + n)
    import matplotlib.figure

    texts = []
    original = matplotlib.figure.Figure.savefig

    def grab(fig, *args, **kwargs):
        texts.extend(t.get_text() for ax in fig.axes for t in ax.texts)
        return original(fig, *args, **kwargs)

    matplotlib.figure.Figure.savefig = grab
    try:
        result = build_report([tmp_path / "many"])
    finally:
        matplotlib.figure.Figure.savefig = original
    _valid_png(result["efficiency_plot"])
    key = [t for t in texts if "pruner.tokens=" in t and t[:2].strip().isdigit()]
    assert len(key) == 12
    # the front: cost rises with n, the error falls for n = 0..4 and repeats after → points 1-5 only
    assert sorted(int(t.split()[0]) for t in key if t.split()[1] == "*") == [1, 2, 3, 4, 5]


def test_a_killed_job_is_listed_as_killed_not_running(tmp_path: Path) -> None:
    from hotpose.job_status import mark_started

    killed = _job(tmp_path / "0", ["seed=1"])
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    (killed / "job.json").write_text(json.dumps({**json.loads(mark_started(killed).read_text()), "pid": child.pid}))
    alive = _job(tmp_path / "1", ["seed=2"])
    mark_started(alive)  # this very process: still running
    assert read_run(killed).status == "killed" and "killed" in read_run(killed).error
    assert read_run(alive).status == "running"
    assert read_run(_job(tmp_path / "2", ["seed=3"])).status == "running"  # no job.json: cannot tell
    proc = subprocess.run([sys.executable, "-m", "hotpose.report", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT)
    assert "0 finished, 0 failed, 1 killed, 2 still running" in proc.stdout


def test_metrics_without_the_requested_mode_is_a_failure(tmp_path: Path) -> None:
    run = read_run(_job(tmp_path / "0", ["seed=1"], p1=40.0), mode="paper")
    assert run.status == "failed" and "paper" in run.error
    assert group_runs([run])[0].done == []


def test_report_cli_on_empty_folder_fails_clearly(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "hotpose.report", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no Hydra run folders" in proc.stderr


def _multirun(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-m", "hotpose.train", "-m", "experiment=smoke", "threads=1", "trainer.limit_test_batches=1",
         f"hydra.sweep.dir={tmp_path}", *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_smoke_grid_2x2_multirun_and_report(tmp_path: Path) -> None:
    proc = _multirun(tmp_path, "pruner=uniform,tpc", "recoverer=linear,tra")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    result = build_report([tmp_path])
    assert len(result["rows"]) == 4 and all(len(row.done) == 1 for row in result["rows"])
    table = [line for line in result["markdown"].read_text().splitlines() if line.startswith("| pruner=")]
    assert len(table) == 4
    _valid_png(tmp_path / "p1_vs_gflops.png")
    assert not (tmp_path / "p1_vs_tokens.png").exists()  # the grid does not vary the token count


def test_a_failing_job_does_not_stop_the_sweep(tmp_path: Path) -> None:
    # 999 kept tokens out of 243 frames cannot be built: that job fails, the other one runs
    proc = _multirun(tmp_path, "pruner=tpc", "recoverer=tra", "pruner.tokens=999,9")
    # ... and the sweep as a whole is a failure: exit status 1, so that schedulers and scripts see it
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "1 of 2 jobs failed or were killed; exit status 1" in proc.stdout + proc.stderr
    assert (tmp_path / "0" / "failed.json").is_file() and (tmp_path / "1" / "metrics.json").is_file()
    text = (tmp_path / "report.md").read_text()
    assert "failed" in text and "999" in text


def test_run_names_drop_seed_and_infrastructure_overrides() -> None:
    from hotpose.train import run_name

    assert run_name(["pruner=tpc", "seed=3", "logger=wandb", "+pruner.tokens=54", "data.root=/x"]) == \
        "pruner=tpc pruner.tokens=54"
    assert run_name(["seed=1"]) is None


@pytest.mark.parametrize("sweep", sorted(p.stem for p in (ROOT / "configs" / "sweep").glob("*.yaml")))
def test_sweep_files_compose_as_multirun(sweep: str) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
            cfg = compose("train", overrides=[f"+sweep={sweep}", "experiment=smoke"], return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert cfg.hydra.sweeper.params and "seed" in cfg.hydra.sweeper.params


def test_mpi_inf_3dhp_runs_get_pck_auc_columns_and_a_per_sequence_table(tmp_path: Path) -> None:
    for i, (pck, seed) in enumerate([(90.0, 1), (92.0, 2)]):
        job = _job(tmp_path / str(i), ["data=mpi_inf_3dhp", f"seed={seed}"], p1=60.0)
        metrics = json.loads((job / "metrics.json").read_text())
        metrics["test"]["mpi_inf_3dhp"] = {
            "overall": {"pck150_mpii14": pck, "auc_mpii14": pck - 30, "pck150_all17": pck + 1,
                        "auc_all17": pck - 29, "mpjpe_mm": 60.0, "frames": 2929.0},
            "per_sequence": {"TS1": {"pck150_mpii14": pck - 2, "auc_mpii14": pck - 35}},
            "per_scene": {"GS": {"pck150_mpii14": pck - 1, "auc_mpii14": pck - 33}}}
        (job / "metrics.json").write_text(json.dumps(metrics))
    result = build_report([tmp_path])
    (row,) = result["rows"]
    assert row.stat("3DHP PCK@150 14j (%)") == pytest.approx((91.0, 1.4142135), rel=1e-6)
    assert row.stat("3DHP AUC 17j (%)")[0] == pytest.approx(62.0)
    md = result["markdown"].read_text()
    assert "| 3DHP PCK@150 14j (%) | 3DHP AUC 14j (%) | 3DHP PCK@150 17j (%) | 3DHP AUC 17j (%) |" in md
    assert "## MPI-INF-3DHP per sequence and scene" in md
    assert "| TS1 | GS |" in md and "| 89.0 / 56.0 | 90.0 / 58.0 |" in md
    assert "pck150_mpii14_mean" in result["csv"].read_text()
    # Human3.6M-only sweeps keep their columns
    other = build_report([_job(tmp_path / "h36m" / "0", ["data=h36m"], p1=40.0).parent])
    assert "3DHP" not in other["markdown"].read_text()


def test_absent_mpjve_reads_not_available(tmp_path: Path) -> None:
    folder = _job(tmp_path / "0", ["pipeline=seq2frame", "seed=1"])
    (folder / "metrics.json").write_text(json.dumps({"test": {"exact": {"overall": {
        "mpjpe_mm": 40.0, "p_mpjpe_mm": 30.0}}}, "stats": {}}))  # one scored frame per window: no MPJVE
    row = next(line for line in build_report([tmp_path])["markdown"].read_text().splitlines()
               if line.startswith("| (defaults)") or line.startswith("| pipeline"))
    assert row.split("|")[5:8] == [" 40.00 ", " 30.00 ", " n/a "]
