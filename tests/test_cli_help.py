"""``--help`` of the entry points: groups, options and keys described from the YAML comments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hotpose.cli_help import CONFIGS, defaults_entries, file_keys, help_text, option_summary

ROOT = Path(__file__).resolve().parents[1]


def test_train_help_describes_groups_options_and_keys() -> None:
    text = help_text("train")
    assert "pruner=NAME  (default: none)  which frames' tokens to keep" in text
    assert "Token Pruning Cluster (HoT)" in text  # the option file's comment
    assert "+sweep=NAME" in text and "tokens_layers" in text
    assert "eval_mode=exact" in text and "evaluation protocol" in text
    assert "  * mixste" in text  # the default is marked
    for internal in ("backbone_size=NAME", "mixste_tiny", "paths=NAME", "hydra=NAME"):
        assert internal not in text


@pytest.mark.parametrize("name", ["infer", "export"])
def test_checkpoint_entry_points_list_no_training_groups(name: str) -> None:
    text = help_text(name)
    assert "(none: the model and its settings come from the checkpoint)" in text
    for group in ("pruner=NAME", "optimizer", "scheduler=NAME", "backbone=NAME", "trainer=NAME"):
        assert group not in text
    assert "ckpt=???" in text


def test_infer_help_shows_nested_keys_with_their_comments() -> None:
    text = help_text("infer")
    assert "  lifting.*" in text
    assert "    stride=null" in text and "seq2seq window step" in text


def test_eval_help_lists_only_its_groups() -> None:
    groups = [g for g, _, _ in defaults_entries(CONFIGS / "eval.yaml")]
    assert groups == ["data", "trainer", "logger", "callbacks"]
    assert "pruner=NAME" not in help_text("eval")


def test_every_visible_option_and_train_key_is_described() -> None:
    for config in ("train", "eval"):
        for group, _, comment in defaults_entries(CONFIGS / f"{config}.yaml"):
            assert comment or group in ("optimizer", "logger"), f"{config}.yaml: defaults entry {group} lacks a comment"
            for option in (CONFIGS / group).glob("*.yaml"):
                assert option_summary(option), f"{option} has no leading comment for --help"
    undocumented = [k.name for k in file_keys(CONFIGS / "train.yaml") if "." not in k.name
                    and k.name != "defaults" and not k.comment]
    assert undocumented == []


def test_file_keys_reads_nested_and_inline_comments(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("# header\n\n# the seed\nseed: 1\nrender:\n  # frames\n  sheet: 6  # 0 = none\n"
                    "  title: 'a # b'\n\n# unrelated\n\nplain: x\n")
    keys = {k.name: (k.value, k.comment) for k in file_keys(path)}
    assert keys == {"seed": ("1", "the seed"), "render": ("", ""), "render.sheet": ("6", "frames 0 = none"),
                    "render.title": ("'a # b'", ""), "plain": ("x", "")}


def test_help_flag_prints_the_text() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "hotpose.export", "--help"], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == help_text("export").replace("$$", "$").strip()
