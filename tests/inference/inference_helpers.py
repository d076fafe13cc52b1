"""Tiny models saved as hotpose checkpoints (the Lightning layout), for the inference tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from hotpose.inference.checkpoint import MODEL_KEYS, build_from_config  # noqa: F401 (re-exported)

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# compose-only: nothing is written there
OUTPUT_DIR = Path(tempfile.gettempdir()) / "hotpose-infer-test"

def model_config(*overrides: str) -> dict:
    """The four model groups of ``train`` composed with ``overrides``, resolved to plain dicts."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
            cfg = compose("train", overrides=[f"paths.output_dir={OUTPUT_DIR}", *overrides])
    finally:
        GlobalHydra.instance().clear()
    return {k: OmegaConf.to_container(cfg[k], resolve=True) for k in MODEL_KEYS}


def infer_config(**overrides: object):
    """``configs/infer.yaml`` composed with ``key=value`` overrides (set ``output_dir``: no Hydra run here)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
            return compose("infer", overrides=[f"{k}={v}" for k, v in overrides.items()])
    finally:
        GlobalHydra.instance().clear()


def tiny_mixste(frames: int = 9, tokens: int = 3, pipeline: str = "seq2seq", recoverer: str = "tra") -> dict:
    """A HoT-MixSTE of width 8 and 2 block pairs, pruning before pair 1."""
    return model_config(
        "backbone=mixste", "pruner=tpc", f"recoverer={recoverer}", f"pipeline={pipeline}",
        f"backbone.frames={frames}", "backbone.prune_layer=1", f"backbone.prune_tokens={tokens}",
        "backbone.tra_heads=2", "backbone.net.dim=8", "backbone.net.depth=2", "backbone.net.heads=2",
        "backbone.net.mlp_hidden=16", "backbone.net.drop_path=0.0")


def save_checkpoint(path: Path, config: dict, seed: int = 0, variant: str | None = None) -> Path:
    """Build the model of ``config`` with random weights and save it as a hotpose checkpoint."""
    torch.manual_seed(seed)
    net = build_from_config(config)
    checkpoint = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "hyper_parameters": {"model": config, "pipeline": config["pipeline"]["name"]},
    }
    if variant:
        checkpoint["hotpose_variant"] = variant
    torch.save(checkpoint, path)
    return path


def walking_keypoints(frames: int, width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A plausible H36M-17 2D track ``(frames, 17, 2)`` pixels: a standing pose swaying over time."""
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0], [-15, 0], [-17, 55], [-18, 110], [15, 0], [17, 55], [18, 110], [0, -50],
                     [0, -100], [0, -115], [0, -135], [20, -95], [30, -50], [35, -5], [-20, -95], [-30, -50],
                     [-35, -5]], dtype=np.float64)
    t = np.arange(frames)[:, None, None]
    sway = np.concatenate([10 * np.sin(t / 5.0), 3 * np.cos(t / 7.0)], axis=-1)
    points = base[None] + sway + rng.normal(0, 1.0, (frames, 17, 2)) + [width / 2, height / 2]
    return points.astype(np.float32)
