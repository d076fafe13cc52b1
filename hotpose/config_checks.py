"""Combinations of options that build but cannot be evaluated: refused before the first training step.

Each check reads only the composed configuration, so ``hotpose.train`` refuses such a run at once instead of
training it to the end and failing at test time (and ``hotpose.eval`` refuses it before loading any data).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hotpose.errors import ConfigError

#: pruner policies whose kept frames do not depend on the input (the flipped pass keeps the same ones)
INPUT_INDEPENDENT_POLICIES = ("Uniform",)


def _policy_name(pruner: Mapping[str, Any] | None) -> str | None:
    policy = (pruner or {}).get("policy")
    if not policy:
        return None
    return str(policy.get("_target_", "")).rsplit(".", 1)[-1] if isinstance(policy, Mapping) else str(policy)


def check_flip_combination(model: Mapping[str, Any], pipeline: str, test_flip: bool, flip_reselect: bool) -> None:
    """seq2seq scores the kept frames themselves when nothing recovers the others, so the flipped pass must
    keep the same frames: with an input-dependent pruner that needs ``flip_reselect=false``."""
    policy = _policy_name(model.get("pruner"))
    target = str((model.get("recoverer") or {}).get("_target_") or "")
    recovers = bool(target) and not target.endswith(".NoRecovery")
    if (pipeline == "seq2seq" and test_flip and flip_reselect and policy is not None
            and policy not in INPUT_INDEPENDENT_POLICIES and not recovers):
        raise ConfigError(
            f"pipeline=seq2seq with pruner {policy} and recoverer=none scores only the frames the pruner kept, "
            "and the flipped test pass may keep others; add flip_reselect=false (the flipped pass reuses the "
            "first selection, as the official TPC models do) or test_flip=false, or use a recoverer")
