"""MPJVE is a velocity error: only frames adjacent in time are differenced, or MPJVE is absent.

A pruned seq2seq model without recovery outputs only its kept frames; differencing neighbouring kept
frames would measure something else (issue 16: 44 mm against ~14 mm for every other configuration).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from hotpose.metrics import PoseErrorMetric, adjacent_pairs
from hotpose.train import build_module

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = ["backbone=mixste", "size=tiny", "backbone.frames=9", "backbone.net.depth=2", "backbone.prune_layer=1",
        "backbone.prune_tokens=3", "backbone.tra_heads=2", "paths.output_dir=unused", "test_flip=false"]
#: every pipeline x (pruner, recoverer) combination; seq2frame scores one frame, so it has no MPJVE
COMBINATIONS = [(pipeline, pruner, recoverer) for pipeline in ("seq2seq", "seq2frame")
                for pruner, recoverer in [("none", "none"), *((p, r) for p in ("tpc", "uniform")
                                                               for r in ("none", "tra", "nearest", "linear"))]]


def _reference_mpjve(pred: np.ndarray, target: np.ndarray, position: np.ndarray) -> list[tuple[int, float]]:
    """``(window, error in mm)`` of every pair of scored frames i, i+1 with position[i+1] == position[i] + 1,
    written as loops."""
    errors = []
    for b in range(len(pred)):
        for i in range(len(position[b]) - 1):
            if position[b, i + 1] == position[b, i] + 1:
                dv = (pred[b, i + 1] - pred[b, i]) - (target[b, i + 1] - target[b, i])
                errors.append((b, float(np.linalg.norm(dv, axis=-1).mean()) * 1000))
    return errors


def _action_mean(values: dict[int, list[float]], actions: list[str]) -> float:
    """Mean over actions of the mean of the values of each action's windows."""
    per_action = {}
    for b, v in values.items():
        per_action.setdefault(actions[b], []).extend(v)
    return float(np.mean([np.mean(v) for v in per_action.values()]))


def test_adjacent_pairs() -> None:
    assert adjacent_pairs(torch.tensor([[0, 1, 2, 4], [0, 3, 4, 8]])).tolist() == [
        [True, True, False], [False, True, False]]


def test_hand_computed_case_skips_the_gap() -> None:
    """Frames 0, 1, 3 of one window: only the pair (0, 1) is a velocity."""
    pred, target = torch.zeros(1, 3, 17, 3), torch.zeros(1, 3, 17, 3)
    pred[0, 1, :, 0] = 0.010  # frame 1: 10 mm off → velocity error 10 mm between frames 0 and 1
    pred[0, 2, :, 0] = 0.050  # frame 3: 40 mm more, but frame 2 is missing: not a velocity
    valid = torch.ones(1, 3, dtype=torch.bool)
    for mode in ("exact", "paper"):
        metric = PoseErrorMetric(["A"], mode=mode)
        metric.update(pred, target, valid, ["A"], position=torch.tensor([[0, 1, 3]]))
        assert metric.compute()["mpjve_mm"].item() == pytest.approx(10.0)
        # without positions the frames count as consecutive: (10 + 40) / 2
        metric = PoseErrorMetric(["A"], mode=mode)
        metric.update(pred, target, valid, ["A"])
        assert metric.compute()["mpjve_mm"].item() == pytest.approx(25.0)
    # no adjacent pair at all (every other frame): MPJVE is absent, not a number
    metric = PoseErrorMetric(["A"])
    metric.update(pred, target, valid, ["A"], position=torch.tensor([[0, 2, 4]]))
    out = metric.compute()
    assert "mpjve_mm" not in out and "action/A/mpjve_mm" not in out
    assert out["mpjpe_mm"].item() == pytest.approx(20.0)


@pytest.mark.parametrize(("pipeline", "pruner", "recoverer"), COMBINATIONS,
                         ids=["-".join(c) for c in COMBINATIONS])
def test_every_pipeline_and_recovery_scores_consecutive_frames_only(pipeline: str, pruner: str,
                                                                    recoverer: str) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", overrides=[*TINY, f"pipeline={pipeline}", f"pruner={pruner}",
                                          f"recoverer={recoverer}", "eval_mode=both",
                                          "flip_reselect=false"])
    GlobalHydra.instance().clear()
    torch.manual_seed(0)
    module = build_module(cfg).eval()
    module._build_metrics(["A", "B"])
    module.log = lambda *a, **k: None  # no trainer attached
    b, f = 4, 9
    batch = {"input_2d": torch.randn(b, f, 17, 2), "target_3d": torch.randn(b, f, 17, 3) * 0.2,
             "valid": torch.ones(b, f, dtype=torch.bool), "action": ["A", "B", "A", "B"],
             "frame_index": torch.arange(f).expand(b, f) + 100 * torch.arange(b)[:, None],
             "seq_index": torch.arange(b), "camera": torch.zeros(b, dtype=torch.long)}
    with torch.no_grad():
        scored = module._eval_step("test", batch)
    module._eval_epoch_end("test")
    position = scored["position"].numpy()
    reference = _reference_mpjve(scored["pred"].double().numpy(), scored["target"].double().numpy(), position)
    recovered = pruner == "none" or recoverer != "none"
    if pipeline == "seq2seq" and recovered:  # every frame of the window comes out: all pairs count
        assert position.tolist() == [list(range(f))] * b
    pairs: dict[int, list[float]] = {}
    for window, error in reference:
        pairs.setdefault(window, []).append(error)
    expected = {"exact": _action_mean(pairs, batch["action"]) if pairs else None,  # every pair weighs one
                # paper: every window with a pair weighs one, with the mean of its pairs
                "paper": _action_mean({w: [np.mean(v)] for w, v in pairs.items()}, batch["action"])
                if pairs else None}
    for mode in ("exact", "paper"):
        result = module.results[f"test/{mode}"]
        if expected[mode] is None:
            assert "mpjve_mm" not in result, f"{mode}: MPJVE reported without any pair of adjacent frames"
        else:
            assert result["mpjve_mm"] == pytest.approx(expected[mode], rel=1e-6)
    if pipeline == "seq2seq" and pruner == "uniform" and recoverer == "none":
        assert not reference  # evenly spaced kept frames: never two neighbours
    if pipeline == "seq2frame":
        assert not reference

