"""Checkpoint files: last.ckpt is the last epoch, writes are atomic (a full disk leaves the old file)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn

from hotpose.checkpoints import SafeCheckpointIO, atomic_torch_save, load_torch_file
from hotpose.train import instantiate_group

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class ScheduledValidation(pl.LightningModule):
    """A one-parameter model whose validation P1 follows ``schedule`` (one value per epoch)."""

    def __init__(self, schedule: list[float]) -> None:
        super().__init__()
        self.schedule = schedule
        self.w = nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - 1).pow(2).sum() + 0 * batch[0].sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/mpjpe_mm", float(self.schedule[self.current_epoch]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(2, 1)), batch_size=1)

    val_dataloader = train_dataloader


def _callbacks(tmp_path: Path, group: str) -> list:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", overrides=[f"callbacks={group}", f"paths.output_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    wanted = ("model_checkpoint", "last_checkpoint")
    return instantiate_group({k: v for k, v in cfg.callbacks.items() if k in wanted})


@pytest.mark.parametrize("group", ["default", "minimal"])
def test_last_ckpt_is_the_last_epoch_even_when_validation_got_worse(tmp_path: Path, group: str) -> None:
    schedule = [3.0, 1.0, 2.0, 4.0]  # best at epoch 1, then worse twice
    trainer = pl.Trainer(max_epochs=4, callbacks=_callbacks(tmp_path, group), logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         plugins=[SafeCheckpointIO()])
    trainer.fit(ScheduledValidation(schedule))
    last = load_torch_file(tmp_path / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 3
    assert Path(trainer.checkpoint_callback.best_model_path).name.startswith("epoch001-p1_1.00")
    best = load_torch_file(trainer.checkpoint_callback.best_model_path)
    assert best["epoch"] == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch001-p1_1.00.ckpt", "last.ckpt"]


def test_a_full_disk_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"epoch": 1, "w": torch.ones(1000)}, path)
    real_save = torch.save

    def save_until_full(obj, fh, *args, **kwargs):  # writes part of the file, then the disk is full
        fh.write(b"PK\x03\x04" + b"\0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_until_full)
    with pytest.raises(OSError, match="No space left"):
        SafeCheckpointIO().save_checkpoint({"epoch": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    kept = load_torch_file(path)
    assert kept["epoch"] == 1 and torch.equal(kept["w"], torch.ones(1000))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_atomic_save_replaces_and_creates_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "m.ckpt"
    atomic_torch_save({"v": 1}, path)
    atomic_torch_save({"v": 2}, path)
    assert load_torch_file(path) == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == ["m.ckpt"]


# --------------------------------------------------------------------------------------------- SIGTERM

ROOT = CONFIGS.parent
TINY = [
    "experiment=quickstart", "backbone.frames=9", "backbone.net.dim=16", "backbone.net.depth=2",
    "backbone.net.heads=2", "backbone.net.mlp_hidden=32", "backbone.tra_heads=2", "backbone.prune_layer=1",
    "backbone.prune_tokens=3", "data.batch_size=64", "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "callbacks=minimal",
    "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "logger=none", "threads=1",
]


def run_train(tmp_path: Path, *overrides: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "hotpose.train", *TINY, *overrides], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_sigterm_exits_3_with_one_line_saying_how_to_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_train(tmp_path, "trainer.max_epochs=2", f"hydra.run.dir={run}",
                     "+callbacks.stop._target_=fault_helpers.SignalAtStep", "+callbacks.stop.step=2")
    assert proc.returncode == 3, proc.stderr[-3000:]
    saved = run / "checkpoints" / "sigterm.ckpt"
    lines = [line for line in proc.stderr.splitlines() if line.startswith("stopped by SIGTERM")]
    assert lines == [f"stopped by SIGTERM during fit at epoch 0, step 2: saved {saved}; resume with the same "
                     f"command and ckpt_path={saved} hydra.run.dir={run}; exit status 3"], proc.stderr[-3000:]
    assert load_torch_file(saved)["global_step"] == 2
    assert not (run / "metrics.json").exists()  # the test stage never ran
