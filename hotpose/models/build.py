"""Build the hourglass model from the Hydra config groups backbone, pruner, recoverer, pipeline (and head)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

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
                pipeline_cfg: DictConfig, head_cfg: DictConfig | None = None) -> Hourglass:
    """Instantiate ``backbone.net`` (a partial), ``pruner.policy``, the recoverer partial, and wrap them.

    A recoverer config that is null or has no ``_target_`` means no recovery. Likewise a head config that is
    null or has no ``_target_`` (``head=regression``) keeps the backbone's own head; otherwise it is a
    ``_partial_`` output head (``head=token``), see :class:`~hotpose.models.hourglass.Hourglass`.
    """
    if "net" not in backbone_cfg:
        name = backbone_cfg.get("name", "?")
        raise ValueError(f"backbone config {name!r} has no 'net' node to instantiate")
    policy_cfg = pruner_cfg.get("policy")
    recoverer = None
    if recoverer_cfg is not None and recoverer_cfg.get("_target_") is not None:
        recoverer = instantiate(recoverer_cfg)
    head = None
    if head_cfg is not None and head_cfg.get("_target_") is not None:
        head = instantiate(head_cfg, _convert_="all")
    return Hourglass(
        backbone=instantiate(backbone_cfg.net),
        policy=instantiate(policy_cfg) if policy_cfg is not None else None,
        stages=pruning_stages(pruner_cfg),
        token_embedding=bool(pruner_cfg.get("token_embedding", False)),
        recoverer=recoverer,
        keep_center=bool(pipeline_cfg.keep_center),
        head=head,
    )


#: the config groups of a model, as saved in checkpoints (``hyper_parameters["model"]``); ``head`` is optional
MODEL_GROUPS = ("backbone", "pruner", "recoverer", "pipeline")


def build_saved_model(model: Mapping[str, Any]) -> Hourglass:
    """Rebuild the network of a saved model configuration: the four groups plus an optional ``head``."""
    missing = [k for k in MODEL_GROUPS if k not in model]
    if missing:
        raise ValueError(f"model config lacks {missing}; it needs {list(MODEL_GROUPS)} (head is optional)")
    head = model.get("head")
    return build_model(*(OmegaConf.create(model[k]) for k in MODEL_GROUPS),
                       head_cfg=OmegaConf.create(head) if head else None)
