"""Build the hourglass model from the Hydra config groups backbone, pruner, recoverer and pipeline."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig

from hotpose.models.hourglass import Hourglass


def pruning_stages(pruner_cfg: DictConfig) -> list[tuple[int, int]]:
    """``pruner.stages`` (a list of ``[layer, tokens]``) if set, else ``[(pruner.layer, pruner.tokens)]``;
    no stages when ``pruner.policy`` is null."""
    if pruner_cfg.get("policy") is None:
        return []
    stages = pruner_cfg.get("stages")
    if stages is None:
        return [(int(pruner_cfg.layer), int(pruner_cfg.tokens))]
    result = []
    for s, stage in enumerate(stages):
        if len(stage) != 2:
            raise ValueError(f"pruner.stages[{s}] must be [layer, tokens], got {list(stage)}")
        result.append((int(stage[0]), int(stage[1])))
    if not result:
        raise ValueError("pruner.stages is an empty list; use pruner=none for no pruning")
    return result


def build_model(backbone_cfg: DictConfig, pruner_cfg: DictConfig, recoverer_cfg: DictConfig | None,
                pipeline_cfg: DictConfig) -> Hourglass:
    """Instantiate ``backbone.net`` (a partial), ``pruner.policy``, the recoverer partial, and wrap them.

    A recoverer config that is null or has no ``_target_`` means no recovery.
    """
    if "net" not in backbone_cfg:
        name = backbone_cfg.get("name", "?")
        raise ValueError(f"backbone config {name!r} has no 'net' node to instantiate")
    policy_cfg = pruner_cfg.get("policy")
    recoverer = None
    if recoverer_cfg is not None and recoverer_cfg.get("_target_") is not None:
        recoverer = instantiate(recoverer_cfg)
    return Hourglass(
        backbone=instantiate(backbone_cfg.net),
        policy=instantiate(policy_cfg) if policy_cfg is not None else None,
        stages=pruning_stages(pruner_cfg),
        token_embedding=bool(pruner_cfg.get("token_embedding", False)),
        recoverer=recoverer,
        keep_center=bool(pipeline_cfg.keep_center),
    )
