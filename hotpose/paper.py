"""What ``eval_mode=paper`` sets up besides the metric: the official test loop's batches, order and RNG.

The official test scripts' P2 depends on how windows are batched (mixed-action batches get the batch
mean) and TPC's kept frames on the torch RNG stream (its tie-break noise). A converted checkpoint
carries the official values (``hyper_parameters.paper_protocol``, written by :mod:`hotpose.convert`):
the test batch size of the README commands (MixSTE family 4, MHFormer family 256) and the seed of the
script (1126 / 1). :func:`paper_setup` applies them, unless ``paper_batch_size`` / ``paper_seed`` are
set in the eval config, and switches the data module to the official layout (actions in the 2D file's
order, the official rounding of the 2D normalisation). See ``docs/protocols.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, open_dict


def paper_setup(cfg: DictConfig, hparams: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Adjust ``cfg.data`` for the paper protocol; return the module overrides and a log note.

    Returns ``({"test_seed": seed} or {}, "batch size 4 (the official test script's), ...")``.
    """
    official = hparams.get("paper_protocol") or {}
    batch = cfg.get("paper_batch_size")
    batch_source = "paper_batch_size"
    if batch is None and official.get("batch_size"):
        batch, batch_source = official["batch_size"], "the official test script's"
    seed = cfg.get("paper_seed")
    seed_source = "paper_seed"
    if seed is None and official.get("seed") is not None:
        seed, seed_source = official["seed"], "the official script's"
    with open_dict(cfg):
        if batch is not None:
            if int(batch) < 1:
                raise ValueError(f"paper_batch_size must be >= 1, got {batch}")
            cfg.data.eval_batch_size = int(batch)
        else:
            batch_source = "data.eval_batch_size; the checkpoint carries no official value"
        if "official_layout" in cfg.data:
            cfg.data.official_layout = True
    overrides = {} if seed is None else {"test_seed": int(seed)}
    note = f"batch size {cfg.data.eval_batch_size} ({batch_source})"
    if seed is not None:
        note += f", torch seeded {int(seed)} before the first batch ({seed_source})"
    if cfg.data.get("official_layout"):
        note += ", sequences in the 2D file's order"
    return overrides, note
