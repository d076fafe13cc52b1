"""Every job of every shipped sweep builds and passes one training and one evaluation step (flip TTA
included), or, on a base it was not made for, is refused before the first step with a ConfigError.

Widths are shrunk (``size=tiny``) but frames and depth are the job's own, so each pruning schedule meets
the model it was written for. Seeds are left out: they do not change what builds.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hotpose.errors import ConfigError
from hotpose.train import build_module

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SWEEPS = sorted(p.stem for p in (CONFIGS / "sweep").glob("*.yaml"))
# one step each: two windows, no workers
# paths.output_dir only resolves interpolations: nothing is written
STEP = ["data.batch_size=1", "data.eval_batch_size=1", "threads=1", "paths.output_dir=unused"]
GROUPS = {p.name for p in CONFIGS.iterdir() if p.is_dir()}
BASES = {"paper-frames": ["size=tiny"], "quickstart": ["experiment=quickstart"]}


def sweep_jobs(sweep: str) -> list[list[str]]:
    """The override lists the basic sweeper makes of ``configs/sweep/<sweep>.yaml`` (first seed only)."""
    params = OmegaConf.load(CONFIGS / "sweep" / f"{sweep}.yaml").hydra.sweeper.params
    axes = []
    for key, values in params.items():
        text = str(values)
        assert "(" not in text, f"{sweep}: {key}: only comma lists are expanded here, got {text}"
        choices = text.split(",")
        axes.append([f"{key}={v.strip()}" for v in (choices[:1] if key == "seed" else choices)])
    return [list(job) for job in itertools.product(*axes)]


def test_sweep_expansion_matches_the_files() -> None:
    assert SWEEPS == ["pipelines", "pruning_recovery", "tokens_head", "tokens_layers"]
    assert len(sweep_jobs("pipelines")) == 4 and len(sweep_jobs("tokens_layers")) == 28


_loaders: dict[str, dict] = {}


def _one_batch(cfg) -> tuple[dict, dict]:
    """A training batch and an evaluation batch of this job's data config (cached per config)."""
    key = OmegaConf.to_yaml(cfg.data, resolve=True)
    if key not in _loaders:
        datamodule = instantiate(cfg.data)
        datamodule.setup("fit")
        _loaders[key] = {"train": next(iter(datamodule.train_dataloader())),
                         "val": next(iter(datamodule.val_dataloader()))}
    return _loaders[key]["train"], _loaders[key]["val"]


_composed: dict[tuple[str, ...], object] = {}


def _compose(overrides: list[str]):
    """``compose("train", overrides)``; jobs that differ only in plain values share one composition (the
    values are set afterwards, as Hydra would: they are not group choices)."""
    choices = tuple(o for o in overrides if o.split("=", 1)[0].lstrip("+~") in GROUPS or "=" not in o)
    values = [o for o in overrides if o not in choices]
    if choices not in _composed:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
            _composed[choices] = compose("train", overrides=list(choices))
        GlobalHydra.instance().clear()
    cfg = _composed[choices].copy()
    for override in values:
        key, value = override.split("=", 1)
        OmegaConf.update(cfg, key, yaml.safe_load(value), force_add=True)
    return cfg


def run_job(overrides: list[str]) -> str:
    """``ok`` when the job builds and takes a training and an evaluation step; ``refused`` on ConfigError."""
    cfg = _compose(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # untrained tokenizer of head=token, self.log without a trainer
        try:
            module = build_module(cfg)
        except ConfigError:
            return "refused"
        train_batch, val_batch = _one_batch(cfg)
        loss = module.training_step(train_batch, 0)
        assert torch.isfinite(loss), overrides
        module.eval()
        with torch.no_grad():
            scored = module.predict_scored(val_batch)
    assert torch.isfinite(scored["pred"]).all(), overrides
    return "ok"


@pytest.mark.parametrize("sweep", SWEEPS)
def test_every_job_of_the_sweep_runs_on_its_intended_sizes(sweep: str) -> None:
    results = {" ".join(job): run_job([*BASES["paper-frames"], *STEP, *job]) for job in sweep_jobs(sweep)}
    assert set(results.values()) == {"ok"}, {k: v for k, v in results.items() if v != "ok"}


def test_every_job_of_pipelines_on_the_quickstart_base_runs() -> None:
    """``+sweep=pipelines experiment=quickstart`` lost 3 of its 12 jobs at test time; none now."""
    results = {" ".join(job): run_job([*BASES["quickstart"], *STEP, *job]) for job in sweep_jobs("pipelines")}
    assert set(results.values()) == {"ok"}, {k: v for k, v in results.items() if v != "ok"}


def test_untestable_combination_is_refused_before_the_first_step() -> None:
    job = ["pipeline=seq2seq", "pruner=tpc", "recoverer=none"]
    assert run_job([*BASES["quickstart"], *STEP, *job]) == "refused"
    assert run_job([*BASES["quickstart"], *STEP, *job, "flip_reselect=false"]) == "ok"
    assert run_job([*BASES["quickstart"], *STEP, *job, "test_flip=false"]) == "ok"
    assert run_job([*BASES["quickstart"], *STEP, "pipeline=seq2seq", "pruner=uniform", "recoverer=none"]) == "ok"
