"""End to end through the command line: a tiny HoT-MixSTE trains and tests on a synthetic MPI-INF-3DHP pair."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mpi_3dhp_files import make_test_data, write_3dhp

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "data=mpi_inf_3dhp", "data.train_subjects=[S1,S2]", "backbone=mixste", "pruner=tpc", "recoverer=tra",
    "backbone.frames=9", "backbone.net.dim=16", "backbone.net.depth=2", "backbone.net.heads=2",
    "backbone.net.mlp_hidden=32", "backbone.tra_heads=2", "backbone.prune_layer=1", "backbone.prune_tokens=3",
    "data.batch_size=64", "data.eval_batch_size=256", "trainer=cpu", "trainer.max_epochs=1",
    "trainer.limit_train_batches=2", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    "callbacks=minimal", "logger=csv", "threads=1",
]


def _train(data_root: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hotpose.train", *TINY, f"data.root={data_root}", f"hydra.run.dir={run_dir}", *extra],
        cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """``(data folder, run folder, process)`` of one tiny training run, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("train_3dhp")
    data = write_3dhp(tmp / "data")
    return data, tmp / "run", _train(data, tmp / "run")


def test_train_and_test_on_3dhp_write_pck_auc_per_sequence_and_scene(trained) -> None:
    _, run, proc = trained
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MPI-INF-3DHP (official 14 joints): PCK" in proc.stdout
    metrics = json.loads((run / "metrics.json").read_text())["test"]
    bench, exact = metrics["mpi_inf_3dhp"], metrics["exact"]
    valid = {name: int(seq["valid"].sum()) for name, seq in make_test_data().items()}
    assert bench["overall"]["frames"] == sum(valid.values())  # every valid frame once, no invalid one
    assert {k: v["frames"] for k, v in bench["per_sequence"].items()} == valid
    assert bench["per_scene"]["GS"]["frames"] == valid["TS1"] + valid["TS2"]
    assert set(bench["per_scene"]) == {"GS", "noGS", "Outdoor"}
    for key in ("pck150_mpii14", "auc_mpii14", "pck150_all17", "auc_all17"):
        assert 0.0 <= bench["overall"][key] <= 100.0
    # the pelvis (error 0 after root zeroing) is always correct: the 17-joint PCK is at least 1/17
    assert bench["overall"]["pck150_all17"] >= 100 / 17 - 1e-9
    # MPJPE over the valid frames agrees with the Human3.6M-style metric's frame-pooled P1 on the same frames
    assert bench["overall"]["mpjpe_mm"] == pytest.approx(exact["overall"]["pooled/mpjpe_mm"], rel=1e-6)
    assert exact["overall"]["scored"] == sum(valid.values())
    assert set(exact["per_action"]) == set(valid)  # the P1/P2 table has one row per test sequence


def test_bad_valid_flags_stop_training_with_one_line(tmp_path: Path) -> None:
    test = make_test_data()
    test["TS3"]["valid"] = test["TS3"]["valid"][:-1]
    data = write_3dhp(tmp_path / "data", test=test)
    proc = _train(data, tmp_path / "run")
    assert proc.returncode != 0
    assert f"error: {data / 'data_test_3dhp.npz'}: data['TS3']['valid'] has 37 flags" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_ddp_spawn_evaluation_counts_repeated_windows_once(trained, tmp_path: Path) -> None:
    """TS1 and TS3 give 9 test windows: 2 gloo ranks get 5 each, the sampler repeats one; it counts once."""
    data, run, proc = trained
    assert proc.returncode == 0
    metrics = json.loads((run / "metrics.json").read_text())
    single = metrics["test"]["mpi_inf_3dhp"]["per_sequence"]
    proc = subprocess.run(
        [sys.executable, "-m", "hotpose.eval", f"ckpt={metrics['best_checkpoint']}", "data=mpi_inf_3dhp",
         f"data.root={data}", "data.test_sequences=[TS1,TS3]", "eval_mode=exact", "trainer=ddp_spawn",
         "trainer.devices=2", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads((tmp_path / "eval.json").read_text())["test"]["mpi_inf_3dhp"]
    assert set(ddp["per_sequence"]) == {"TS1", "TS3"}
    assert ddp["overall"]["frames"] == single["TS1"]["frames"] + single["TS3"]["frames"]
    for name in ("TS1", "TS3"):  # equal up to float32 differences of the network between batch compositions
        assert ddp["per_sequence"][name] == pytest.approx(single[name], rel=1e-6)
