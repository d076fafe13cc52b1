"""Hostile files against every entry point that reads a user-given file: each is refused in one line, and
the payload (it would create a marker file) never runs. Real files of the same kinds still load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hotpose.checkpoints import CheckpointError, SafeCheckpointIO, load_torch_file
from hotpose.data.errors import DataError
from hotpose.data.sources import MINI_ROOT, load_sequences

ROOT = Path(__file__).resolve().parents[1]
REFUSED = "which could run code; refused"


class Payload:
    """Unpickling calls ``Path.touch(marker)``: if the marker exists, code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def hostile_checkpoint(path: Path, marker: Path) -> Path:
    """A hotpose-looking checkpoint with the payload among its hyperparameters."""
    torch.save({"state_dict": {"net.w": torch.zeros(1)},
                "hyper_parameters": {"model": {"backbone": {}, "pruner": {}, "recoverer": {}, "pipeline": {}},
                                     "note": Payload(marker)},
                "config": {}, "model_pos": {"w": torch.zeros(1)}}, path)
    return path


def hostile_npz(path: Path, marker: Path, key: str) -> Path:
    np.savez_compressed(path, **{key: np.array({"S9": Payload(marker)}, dtype=object)})
    return path


def hostile_h36m_folder(root: Path, marker: Path) -> Path:
    """``data_3d_h36m.npz`` carries the payload; the 2D files are real-looking copies of the mini data."""
    root.mkdir(parents=True, exist_ok=True)
    hostile_npz(root / "data_3d_h36m.npz", marker, "positions_3d")
    for name in ("data_2d_h36m_gt.npz", "data_2d_h36m_cpn_ft_h36m_dbb.npz"):
        hostile_npz(root / name, marker, "positions_2d")
    return root


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_refused_in_one_line(proc: subprocess.CompletedProcess, name: str) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(errors) == 1 and name in errors[0] and REFUSED in errors[0], proc.stderr


def test_the_payload_runs_when_loaded_unsafely(tmp_path: Path) -> None:
    """Sanity: the hostile files do what they say under the old loading calls."""
    marker = tmp_path / "ran"
    torch.load(hostile_checkpoint(tmp_path / "evil.ckpt", marker), weights_only=False)
    assert marker.exists()


# ------------------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("command", [
    ["-m", "hotpose.eval", "ckpt={ckpt}"],
    ["-m", "hotpose.infer", "ckpt={ckpt}", "input={keypoints}", "layout=h36m"],
], ids=["eval", "infer"])
def test_hostile_checkpoint_is_refused_by_every_command(tmp_path: Path, command: list[str]) -> None:
    marker = tmp_path / "ran"
    ckpt = hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    keypoints = tmp_path / "k.npy"
    np.save(keypoints, np.zeros((5, 17, 2), np.float32))
    args = [a.format(ckpt=ckpt, keypoints=keypoints) for a in command]
    proc = run(*args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_refused_in_one_line(proc, "evil.ckpt")
    assert not marker.exists()


def test_hostile_checkpoint_is_refused_by_resume_convert_export_and_token_head(tmp_path: Path) -> None:
    from hotpose.convert import main as convert_main
    from hotpose.export import export_checkpoint
    from hotpose.models.token_head import TokenHead

    marker = tmp_path / "ran"
    ckpt = hostile_checkpoint(tmp_path / "evil.ckpt", marker)
    # resume (train ckpt_path=): Lightning reads through the configured checkpoint IO, even if asked otherwise
    with pytest.raises(CheckpointError, match=rf"evil.ckpt holds a pickled .*{REFUSED}"):
        SafeCheckpointIO().load_checkpoint(ckpt, weights_only=False)
    with pytest.raises(SystemExit) as exit_info:
        convert_main(["--variant", "hot_mixste", "--input", str(ckpt), "--output", str(tmp_path / "o.ckpt")])
    assert exit_info.value.code == 2
    from hotpose.models.tokenizer import load_tokenizer

    with pytest.raises(CheckpointError, match=REFUSED):
        load_tokenizer(ckpt)
    with pytest.raises(CheckpointError, match=REFUSED):  # what head=token head.tokenizer_ckpt= builds
        TokenHead(dim=8, tokenizer_ckpt=str(ckpt))
    with pytest.raises(CheckpointError, match=REFUSED):  # python -m hotpose.export ckpt=
        export_checkpoint(ckpt, ["torchscript"], str(tmp_path / "export"))
    assert not marker.exists() and not (tmp_path / "o.ckpt").exists()


def test_trainer_configs_use_the_safe_checkpoint_io() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "configs")):
        for trainer in ("default", "cpu", "gpu", "ddp", "ddp_spawn"):
            cfg = compose("train", overrides=[f"trainer={trainer}", "paths.output_dir=unused"])
            targets = [p["_target_"] for p in cfg.trainer.plugins]
            assert "hotpose.checkpoints.SafeCheckpointIO" in targets, trainer
    GlobalHydra.instance().clear()


def test_unreadable_checkpoint_never_suggests_weights_only_false(tmp_path: Path) -> None:
    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(3)}}, good)
    data = good.read_bytes()
    cases = {"truncated.ckpt": data[: len(data) // 2], "text.ckpt": b"not a checkpoint\n", "empty.ckpt": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError) as info:
            load_torch_file(tmp_path / name)
        message = str(info.value)
        assert name in message and "weights_only" not in message and "\n" not in message, message
    assert torch.equal(load_torch_file(good)["state_dict"]["w"], torch.ones(3))


# ---------------------------------------------------------------------------------------------- data


def test_hostile_npz_is_refused_by_train(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    root = hostile_h36m_folder(tmp_path / "h36m", marker)
    proc = run("-m", "hotpose.train", "experiment=quickstart", "data=h36m", f"data.root={root}",
               f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert_refused_in_one_line(proc, "data_3d_h36m.npz")
    assert not marker.exists()


def test_hostile_npz_is_refused_by_check_h36m(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    root = hostile_h36m_folder(tmp_path / "h36m", marker)
    proc = run(str(ROOT / "scripts" / "check_h36m.py"), str(root), cwd=tmp_path)
    assert proc.returncode == 1
    assert "data_3d_h36m.npz: 'positions_3d' holds a pickled" in proc.stderr and REFUSED in proc.stderr
    assert "ok" not in proc.stdout.splitlines()[-1]
    assert not marker.exists()


def test_hostile_npz_is_refused_by_eval_data(tmp_path: Path) -> None:
    """``hotpose.eval ckpt=<a real checkpoint> data=h36m data.root=<hostile folder>``."""
    import pytorch_lightning as pl
    from test_train import TINY, _compose

    from hotpose.eval import evaluate
    from hotpose.train import build_module

    module = build_module(_compose(tmp_path / "a", TINY))
    ckpt = tmp_path / "real.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": pl.__version__}, ckpt)
    marker = tmp_path / "ran"
    root = hostile_h36m_folder(tmp_path / "h36m", marker)
    cfg = _compose(tmp_path / "b", [f"ckpt={ckpt}", "data=h36m", f"data.root={root}",
                                    "trainer.enable_progress_bar=false"], config="eval")
    with pytest.raises(DataError, match=rf"data_3d_h36m.npz: 'positions_3d' holds a pickled .*{REFUSED}"):
        evaluate(cfg)
    assert not marker.exists()


def test_hostile_keypoint_files_are_refused(tmp_path: Path) -> None:
    from hotpose.inference.keypoints import load_keypoints

    marker = tmp_path / "ran"
    np.savez(tmp_path / "k.npz", keypoints=np.array([Payload(marker)], dtype=object))
    np.save(tmp_path / "k.npy", np.array([Payload(marker)], dtype=object))
    for name in ("k.npz", "k.npy"):
        with pytest.raises(ValueError, match=rf"{name}: .*allow_pickle"):
            load_keypoints(tmp_path / name, layout="h36m")
    assert not marker.exists()


# ------------------------------------------------------------------------------------- real files load


def test_videopose3d_files_still_load(tmp_path: Path) -> None:
    """The embedded files (numpy 1.x pickles) and ones written as VideoPose3D does, by this numpy."""
    records = load_sequences(MINI_ROOT, "mini", "gt", ["S1"])
    assert records and records[0].pose_3d.shape[1:] == (17, 3)
    from data.data_fixtures import pixels, random_world, write_2d, write_3d

    write_3d(tmp_path / "data_3d_mini.npz", {"S1": {"Walk 1": random_world(6, 17)}})
    write_2d(tmp_path / "data_2d_mini_gt.npz", {"S1": {"Walk 1": [pixels(6, seed=i) for i in range(4)]}})
    again = load_sequences(tmp_path, "mini", "gt", ["S1"])
    assert len(again) == 4 and again[0].num_frames == 6
