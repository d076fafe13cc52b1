"""User mistakes at every entry point: one ``error:`` line naming the file, key or value, exit status 2.

The entry points are called as the command line calls them (``sys.argv`` + their ``main``), in this
process to keep the suite fast; ``tests/test_security.py`` runs some of them as real subprocesses.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra

from hotpose.errors import ConfigError, UserError, check_required, exit_on_user_error

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
FAST_TRAIN = ["experiment=quickstart", "backbone.frames=9", "backbone.net.dim=16", "backbone.net.depth=2",
              "backbone.net.heads=2", "backbone.net.mlp_hidden=32", "backbone.tra_heads=2", "logger=none",
              "callbacks=minimal", "trainer.enable_progress_bar=false"]


def run_main(module: str, args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    """Call ``python -m <module> args`` in this process; returns (exit status, the ``error:`` lines)."""
    import importlib

    main = importlib.import_module(module).main
    # an absolute --config-path: imported (not run with -m), Hydra would look for a `configs` package
    monkeypatch.setattr(sys, "argv", [module, f"--config-path={CONFIGS}", *args, f"hydra.run.dir={tmp_path / 'run'}"])
    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as exit_info:
        main()
    GlobalHydra.instance().clear()
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return exit_info.value.code, [line for line in err.splitlines() if line.startswith("error: ")]


def _truncated_checkpoint(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.ones(1000)}}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


def _official_file(path: Path) -> Path:
    torch.save({"model_pos": {"module.blocks.0.w": torch.ones(2)}, "epoch": 3}, path)
    return path


CASES = {
    "eval-missing": ("hotpose.eval", lambda t: ["ckpt=" + str(t / "none.ckpt")], r"none.ckpt' does not exist"),
    "eval-truncated": ("hotpose.eval", lambda t: ["ckpt=" + str(_truncated_checkpoint(t / "cut.ckpt"))],
                       r"cut.ckpt is damaged or not a torch file \(truncated"),
    "eval-random": ("hotpose.eval", lambda t: ["ckpt=" + str(_write(t / "r.ckpt", np.random.bytes(3000)))],
                    r"r.ckpt is damaged or not a torch file"),
    "eval-official": ("hotpose.eval", lambda t: ["ckpt=" + str(_official_file(t / "o.pth"))],
                      r"o.pth is not a hotpose training checkpoint .* converting"),
    "eval-no-ckpt": ("hotpose.eval", lambda t: [], r"ckpt is not set: add ckpt=\.\.\."),
    "export-truncated": ("hotpose.export", lambda t: ["ckpt=" + str(_truncated_checkpoint(t / "cut.ckpt"))],
                         r"cut.ckpt is damaged"),
    "infer-text-video": ("hotpose.infer", lambda t: ["input=" + str(_write(t / "v.mp4", b"text")),
                                                     "ckpt=" + str(t / "none.ckpt")], r"none.ckpt' does not exist"),
    "infer-unwritable-output": ("hotpose.infer", lambda t: [f"input={_keypoints(t)}", "layout=h36m",
                                                            f"ckpt={_tiny_checkpoint(t)}", "output_dir=/proc/no"],
                                "output_dir=/proc/no: cannot write there"),
    "train-no-root": ("hotpose.train", lambda t: [*FAST_TRAIN, "data=h36m"], r"data.root is not set"),
    "train-bad-schedule": ("hotpose.train", lambda t: [*FAST_TRAIN, "pruner=tpc", "pruner.stages=[[1,3],[9,2]]"],
                           r"the model configuration does not build: pruning stage 1 \(layer=9"),
    "train-mixste-layer0": ("hotpose.train", lambda t: [*FAST_TRAIN, "pruner=tpc", "backbone.prune_layer=0",
                                                   "backbone.prune_tokens=3"],
                            r"does not build: MixSTE: pair 0 must see all"),
}


def _keypoints(tmp_path: Path) -> Path:
    np.save(tmp_path / "k.npy", np.full((5, 17, 2), 100.0, np.float32))
    return tmp_path / "k.npy"


def _tiny_checkpoint(tmp_path: Path) -> Path:
    from inference.inference_helpers import save_checkpoint, tiny_mixste

    return save_checkpoint(tmp_path / "m.ckpt", tiny_mixste())


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_user_mistake_gives_one_line_and_exit_2(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture) -> None:
    import re

    module, args, pattern = CASES[case]
    code, errors = run_main(module, args(tmp_path), tmp_path, monkeypatch, capsys)
    assert code == 2 and len(errors) == 1 and re.search(pattern, errors[0]), errors


def test_infer_refuses_a_corrupt_video_and_a_missing_detector_python(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from inference.inference_helpers import save_checkpoint, tiny_mixste

    ckpt = save_checkpoint(tmp_path / "m.ckpt", tiny_mixste())
    video = _write(tmp_path / "v.mp4", b"not a video")
    code, errors = run_main("hotpose.infer", [f"input={video}", f"ckpt={ckpt}", "detector.python=/no/python"],
                            tmp_path, monkeypatch, capsys)
    assert code == 2 and errors == ["error: detector.python='/no/python': no such interpreter (give the python "
                                    "of an environment with the detector, e.g. /path/to/venv/bin/python)"]
    pytest.importorskip("cv2")
    for content in (b"not a video", b""):
        _write(video, content)
        code, errors = run_main("hotpose.infer", [f"input={video}", f"ckpt={ckpt}"], tmp_path, monkeypatch, capsys)
        assert code == 2 and len(errors) == 1 and "v.mp4' cannot be read" in errors[0], errors


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(KeyError), pytest.raises(SystemExit):
        try:
            raise KeyError("a bug")
        except UserError as error:
            exit_on_user_error(error)


def test_check_required_names_every_unset_key() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"a": "???", "b": {"c": "???", "d": "${nowhere}"}, "e": [1, "???"]})
    with pytest.raises(ConfigError, match=r"^a, b.c, e.1 are not set: add a=\.\.\. b.c=\.\.\. e.1=\.\.\. to"):
        check_required(cfg)
