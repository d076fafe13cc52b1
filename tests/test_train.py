"""End-to-end: compose the real configs, train a tiny model on the embedded data, test, resume, evaluate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from hotpose.eval import evaluate
from hotpose.train import check_launch, train

TINY = [
    "data=mini", "backbone=mixste", "backbone.frames=9", "backbone.net.dim=16", "backbone.net.depth=2",
    "backbone.net.heads=2", "backbone.net.mlp_hidden=32", "backbone.tra_heads=2", "backbone.prune_layer=1",
    "backbone.prune_tokens=3", "data.batch_size=64", "data.eval_batch_size=256", "trainer=cpu",
    "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "callbacks=minimal", "logger=csv", "optimizer.lr=1e-3", "threads=1",
]


def _compose(tmp_path: Path, overrides: list[str], config: str = "train",
             mode: RunMode = RunMode.RUN) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize(version_base="1.3", config_path="../configs"):
        cfg = compose(config, overrides=[f"hydra.run.dir={tmp_path}", *overrides], return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
        cfg.hydra.job.num = 0
        cfg.hydra.mode = mode
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture(autouse=True)
def _clear_hydra_and_restore_threads():
    threads = torch.get_num_threads()
    yield
    GlobalHydra.instance().clear()
    torch.set_num_threads(threads)


@pytest.mark.parametrize("setting", [
    ["pipeline=seq2seq", "pruner=tpc", "recoverer=tra", "loss=mixste", "callbacks=default",
     "callbacks.progress_bar=null"],
    ["pipeline=seq2frame", "pruner=tpc", "recoverer=none", "loss=mpjpe", "pipeline.train_stride=9",
     "flip_reselect=false", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"],
], ids=["hot-seq2seq", "tpc-seq2frame"])
def test_train_then_test_writes_results(tmp_path: Path, setting: list[str]) -> None:
    cfg = _compose(tmp_path, [*TINY, *setting])
    summary = train(cfg)
    assert 0 < summary["test_mpjpe_mm"] < 2000
    assert summary["test_p_mpjpe_mm"] <= summary["test_mpjpe_mm"]
    assert Path(summary["best_checkpoint"]).is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    overall = metrics["test"]["exact"]["overall"]
    assert overall["mpjpe_mm"] == pytest.approx(summary["test_mpjpe_mm"])
    assert metrics["stats"]["params"] > 0
    assert "test_frames_per_s" in metrics["stats"]
    assert metrics["test"]["exact"]["per_action"]  # one row per action group of the test subjects
    if "callbacks=default" in setting:
        assert (tmp_path / "pictures" / "val_epoch000.png").is_file()
        # the test restores the best checkpoint (epoch 0 of 1): its picture is named after it
        assert (tmp_path / "pictures" / "test_epoch000.png").is_file()
        assert not (tmp_path / "pictures" / "test_epoch001.png").exists()
        assert metrics["stats"]["paper_gflops"] > 0


def test_resume_continues_at_next_epoch_with_optimizer_state(tmp_path: Path) -> None:
    base = [*TINY, "pruner=none", "recoverer=none", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1"]
    train(_compose(tmp_path / "a", base))
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (0, 3)
    train(_compose(tmp_path / "b", [*base, "trainer.max_epochs=2", f"ckpt_path={last}"]))
    resumed = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # one more epoch of 3 steps: Adam's step counters went on from 3 (a fresh optimiser would say 3)
    assert (resumed["epoch"], resumed["global_step"]) == (1, 6)
    adam = next(iter(resumed["optimizer_states"][0]["state"].values()))
    assert int(adam["step"]) == 6
    lr0 = saved["optimizer_states"][0]["param_groups"][0]["initial_lr"]
    assert resumed["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(lr0 * 0.99**2)


def test_checkpoint_of_other_configuration_is_refused(tmp_path: Path) -> None:
    cfg = _compose(tmp_path / "a", [*TINY, "pruner=none", "recoverer=none", "trainer.limit_val_batches=1",
                                    "trainer.limit_test_batches=1"])
    train(cfg)
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    other = _compose(tmp_path / "b", [*TINY, "pruner=none", "recoverer=none", "backbone.net.dim=32",
                                      f"ckpt_path={last}"])
    with pytest.raises(ValueError, match=r"backbone\.net\.dim: checkpoint 16 != current 32"):
        train(other)
    # the eval entry point rebuilds the checkpoint's own model whatever the defaults say
    ev = _compose(tmp_path / "c", [f"ckpt={last}", "trainer.limit_test_batches=1",
                                   "trainer.enable_progress_bar=false"], config="eval")
    results = evaluate(ev)
    assert set(results) == {"exact", "paper"}
    assert (tmp_path / "c" / "eval.json").is_file()
    with pytest.raises(ValueError, match="does not exist"):
        evaluate(_compose(tmp_path / "d", ["ckpt=/nonexistent.ckpt"], config="eval"))


def test_sigterm_mid_epoch_leaves_a_resumable_checkpoint(tmp_path: Path) -> None:
    import os
    import signal

    from hydra.utils import instantiate
    from pytorch_lightning import Callback

    from hotpose.train import build_module, instantiate_group

    class SigtermAtStep(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step == 2:
                os.kill(os.getpid(), signal.SIGTERM)

    cfg = _compose(tmp_path, [*TINY, "pruner=none", "recoverer=none", "trainer.limit_val_batches=1",
                              "trainer.max_epochs=2"])
    trainer = instantiate(cfg.trainer, callbacks=[*instantiate_group(cfg.callbacks), SigtermAtStep()],
                          logger=False)
    with pytest.raises(SystemExit):
        trainer.fit(build_module(cfg), datamodule=instantiate(cfg.data))
    saved = tmp_path / "checkpoints" / "sigterm.ckpt"
    state = torch.load(saved, map_location="cpu", weights_only=True)
    assert (state["epoch"], state["global_step"]) == (0, 2)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.callbacks), logger=False)
    trainer.fit(build_module(cfg), datamodule=instantiate(cfg.data), ckpt_path=str(saved))
    assert trainer.current_epoch == 2 and trainer.global_step > 2


def test_multirun_with_relaunching_ddp_is_refused(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, [*TINY, "trainer.strategy=ddp"], mode=RunMode.MULTIRUN)
    with pytest.raises(ValueError, match="ddp_spawn"):
        check_launch(cfg)
    with open_dict(cfg):
        cfg.trainer.strategy = "ddp_spawn"
    check_launch(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("devices", [2, 3])
def test_ddp_spawn_processes_match_single_process(tmp_path: Path, devices: int) -> None:
    base = [*TINY, "pruner=none", "recoverer=none", "trainer.limit_val_batches=1", "test_flip=false"]
    cfg = _compose(tmp_path / "a", base)
    single = train(cfg)
    ckpt = single["best_checkpoint"]
    # 2 gloo processes split the 728 test windows evenly; 3 do not, so the sampler repeats one window
    ev = _compose(tmp_path / "b", [f"ckpt={ckpt}", "trainer=ddp_spawn", f"trainer.devices={devices}",
                                   "eval_mode=exact", "test_flip=false", "trainer.enable_progress_bar=false"],
                  config="eval")
    from hotpose import eval as eval_module

    results = eval_module.evaluate(ev)
    written = json.loads((tmp_path / "b" / "eval.json").read_text())["test"]["exact"]["overall"]
    assert results["exact"]["overall"] == written
    assert written["mpjpe_mm"] == pytest.approx(single["test_mpjpe_mm"], rel=1e-6)
    assert written["p_mpjpe_mm"] == pytest.approx(single["test_p_mpjpe_mm"], rel=1e-6)
    # the distributed sampler repeats windows to even out the ranks; each is still counted once
    assert written["windows"] == single["results"]["test/exact"]["windows"]


def test_missing_dataset_fails_with_one_clear_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "hotpose.train", "experiment=smoke", "data=h36m", f"data.root={tmp_path}",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=root, env={**os.environ, "WANDB_MODE": "disabled"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert f"error: {tmp_path / 'data_3d_h36m.npz'}: file not found" in proc.stderr
    assert "Traceback" not in proc.stderr
