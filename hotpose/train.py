"""``python -m hotpose.train [group=option ...] [key=value ...]``: train, then test the best checkpoint.

Thin on purpose: compose (Hydra), seed, instantiate data / module / callbacks / loggers / trainer, fit,
test, write ``metrics.json``, print P1/P2 and the run folder, and return the test P1 (mm) so that Hydra
sweepers can minimise it. ``train(cfg)`` is the same without the Hydra entry (tests call it).
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

import hotpose.cli_help  # noqa: F401  (registers the resolver of the --help text)
from hotpose.callbacks import format_table
from hotpose.config_checks import check_flip_combination
from hotpose.errors import ConfigError, UserError, check_required, exit_on_user_error
from hotpose.host_memory import keep_freed_memory
from hotpose.job_status import mark_started
from hotpose.lit import MODEL_KEYS, OPTIONAL_MODEL_KEYS, HotposeModule
from hotpose.preemption import exit_on_sigterm

log = logging.getLogger(__name__)

#: strategies whose launcher re-executes the command line for ranks 1..N-1 (which reruns a Hydra sweep)
_RELAUNCHING = ("ddp", "ddp_find_unused_parameters_false", "ddp_find_unused_parameters_true", "fsdp")
#: environment variables set by launchers that start every rank themselves
_EXTERNAL_LAUNCHER_ENV = ("TORCHELASTIC_RUN_ID", "SLURM_NTASKS")


def _strategy_name(strategy: Any) -> str:
    if isinstance(strategy, str):
        return strategy
    if isinstance(strategy, DictConfig | dict):
        target = str(strategy.get("_target_", ""))
        start = str(strategy.get("start_method", "popen"))
        if target.endswith("DDPStrategy") and start == "popen":
            return "ddp"
        if target.endswith("FSDPStrategy"):
            return "fsdp"
    return ""


def check_launch(cfg: DictConfig) -> None:
    """Refuse Hydra multirun with a strategy that re-launches the script (ecosystem note B-b)."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    name = _strategy_name(cfg.trainer.get("strategy", "auto"))
    if (name in _RELAUNCHING or name.startswith("deepspeed")) and not any(
            v in os.environ for v in _EXTERNAL_LAUNCHER_ENV):
        raise ValueError(
            f"trainer.strategy={name} under Hydra multirun: Lightning would start each extra rank by "
            "re-running the command line, which re-runs the whole sweep in every child. Use "
            "trainer=ddp_spawn for sweeps, "
            "or a launcher that starts the ranks itself (hydra/launcher=submitit_slurm, torchrun)."
        )


def pipeline_name(cfg: DictConfig) -> str:
    """``seq2seq`` / ``seq2frame`` from the pipeline config (its ``name``) or the chosen option."""
    name = cfg.pipeline.get("name") if isinstance(cfg.get("pipeline"), DictConfig) else None
    if name is None and HydraConfig.initialized():
        name = HydraConfig.get().runtime.choices.get("pipeline")
    if name is None:
        raise ValueError("cannot tell the pipeline: configs/pipeline/<option>.yaml needs a `name` key")
    return str(name)


#: the ``task`` config group: what is trained (``task=pose``: the lifting model; ``task=tokenizer``: the VQ pose
#: tokenizer that ``head=token`` decodes through)
TASKS = ("pose", "tokenizer")


def task_name(cfg: DictConfig) -> str:
    """``pose`` (also when the config has no ``task`` group) or ``tokenizer``."""
    task = cfg.get("task")
    name = str(task.get("name", "pose")) if isinstance(task, DictConfig) else "pose"
    if name not in TASKS:
        raise ValueError(f"task.name must be one of {TASKS}, got {name!r}")
    return name


def build_module(cfg: DictConfig) -> pl.LightningModule:
    if task_name(cfg) == "tokenizer":
        from hotpose.tokenizer_lit import TokenizerModule

        return TokenizerModule(tokenizer=cfg.tokenizer, loss=cfg.task.get("loss"), optimizer=cfg.optimizer,
                               scheduler=cfg.get("scheduler"), save_path=cfg.task.get("save_path"))
    try:
        return _pose_module(cfg)
    except UserError:
        raise
    except ValueError as error:  # the network refuses its arguments: a configuration the model cannot take
        raise ConfigError(f"the model configuration does not build: {error}") from error


def _pose_module(cfg: DictConfig) -> HotposeModule:
    model = {k: cfg[k] for k in MODEL_KEYS}
    check_flip_combination(model, pipeline_name(cfg), bool(cfg.test_flip), bool(cfg.flip_reselect))
    return HotposeModule(
        model={k: cfg[k] for k in (*MODEL_KEYS, *OPTIONAL_MODEL_KEYS) if k in cfg},
        loss=cfg.loss,
        optimizer=cfg.optimizer,
        scheduler=cfg.get("scheduler"),
        pipeline=pipeline_name(cfg),
        test_flip=cfg.test_flip,
        flip_reselect=cfg.flip_reselect,
        eval_mode=cfg.eval_mode,
        compile=cfg.compile,
    )


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Every entry with a ``_target_`` of a dict-of-configs group (callbacks, logger)."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, DictConfig) and "_target_" in c]


#: override keys that say nothing about the model or recipe, left out of run names
_NAME_EXCLUDES = ("seed", "logger", "hydra", "threads", "paths", "trainer.devices", "data.root", "data.num_workers")


def run_name(overrides: list[str]) -> str | None:
    """A readable run name from a job's overrides (``pruner=tpc pruner.tokens=81``), or None."""
    keep = [o.lstrip("+~") for o in overrides if not o.lstrip("+~").split("=", 1)[0].startswith(_NAME_EXCLUDES)]
    return " ".join(keep) or None


def name_wandb_run(cfg: DictConfig) -> None:
    """Give the wandb run of this job a name from its overrides, unless one is configured."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if wandb_cfg is None or wandb_cfg.get("name") or not HydraConfig.initialized():
        return
    name = run_name(list(HydraConfig.get().overrides.task))
    if name:
        with open_dict(wandb_cfg):
            wandb_cfg.name = name


def finish_wandb() -> None:
    """Close the wandb run of this job, so that each multirun job gets its own run."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def train(cfg: DictConfig) -> dict[str, Any]:
    """Fit and test one configuration. Returns ``{"test_mpjpe_mm", "test_p_mpjpe_mm", "output_dir", ...}``."""
    check_launch(cfg)
    check_required(cfg)
    mark_started(cfg.paths.output_dir)  # lets a report tell a killed job from a running one
    keep_freed_memory()  # reuse freed activation memory (hotpose/host_memory.py)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    datamodule = instantiate(cfg.data)
    module = build_module(cfg)
    callbacks = instantiate_group(cfg.get("callbacks"))
    name_wandb_run(cfg)
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    try:
        with exit_on_sigterm(trainer, "fit"):  # SIGTERM: one line and exit status 3, never 0
            trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), weights_only=True)
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") or None
        with exit_on_sigterm(trainer, "test"):
            trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True)
    finally:
        finish_wandb()
    primary = module.eval_modes[0]
    # callback_metrics also come back from ddp_spawn workers (module attributes do not)
    logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    summary = {
        "test_mpjpe_mm": logged.get("test/mpjpe_mm"),
        "test_p_mpjpe_mm": logged.get("test/p_mpjpe_mm"),
        "eval_mode": primary,
        "best_checkpoint": best,
        "output_dir": cfg.paths.output_dir,
        "results": module.results,  # per action; empty in the main process of ddp_spawn
        "logged": logged,
    }
    if trainer.global_rank == 0:
        metrics_file = Path(cfg.paths.output_dir) / "metrics.json"
        if metrics_file.is_file():
            from rich.console import Console

            test = json.loads(metrics_file.read_text())["test"]
            Console().print(format_table(test))
            if "mpi_inf_3dhp" in test:
                from hotpose.metrics_3dhp import format_benchmark_table

                Console().print(format_benchmark_table(test["mpi_inf_3dhp"]))
        print(f"test ({primary}): P1 {summary['test_mpjpe_mm']:.2f} mm, "
              f"P2 {summary['test_p_mpjpe_mm']:.2f} mm; "
              f"run folder {cfg.paths.output_dir}")
        if "test/mpi_inf_3dhp/pck150_mpii14" in logged:
            print(f"MPI-INF-3DHP (official 14 joints): PCK {logged['test/mpi_inf_3dhp/pck150_mpii14']:.2f} %, "
                  f"AUC {logged['test/mpi_inf_3dhp/auc_mpii14']:.2f} %, "
                  f"MPJPE {logged['test/mpi_inf_3dhp/mpjpe_mm']:.2f} mm")
    return summary


def record_failure(output_dir: str | Path, error: BaseException) -> Path:
    """Write ``failed.json`` (error type, message, traceback) into a job's folder for the sweep report."""
    path = Path(output_dir) / "failed.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": type(error).__name__, "message": str(error),
                                "traceback": traceback.format_exc()}, indent=2))
    return path


def _in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    check_launch(cfg)  # a refused launch stops the whole sweep: every job would fail the same way
    try:
        return train(cfg)["test_mpjpe_mm"]
    except Exception as error:
        if not _in_multirun():
            if isinstance(error, UserError):  # the user's file, key or value, not a bug: one line
                exit_on_user_error(error)
            raise
        # One failed job must not stop the sweep: record why, let the others run, report it at the end.
        path = record_failure(cfg.paths.output_dir, error)
        log.error("job failed (%s: %s); details in %s", type(error).__name__, error, path)
        return float("nan")


if __name__ == "__main__":
    main()
