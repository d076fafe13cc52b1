"""``python -m hotpose.eval ckpt=PATH [data=...] [eval_mode=both]``: evaluate a checkpoint, print the table.

The model configuration (backbone, pruner, recoverer, pipeline) is read from the checkpoint's saved
hyperparameters, so a checkpoint always meets the network it was trained as; only the data source, the
protocol (``exact`` / ``paper`` / ``both``) and flip test-time augmentation are chosen here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

import hotpose.cli_help  # noqa: F401  (registers the resolver of the --help text)
from hotpose.callbacks import MetricsFile, format_table
from hotpose.checkpoints import CheckpointError, load_torch_file
from hotpose.config_checks import check_flip_combination
from hotpose.errors import check_required, one_line_user_errors
from hotpose.host_memory import keep_freed_memory
from hotpose.lit import MODEL_KEYS, HotposeModule
from hotpose.metrics import NAMES
from hotpose.paper import paper_setup
from hotpose.precision import check_precision
from hotpose.preemption import exit_on_sigterm
from hotpose.train import instantiate_group


def read_hparams(ckpt: str | Path) -> dict[str, Any]:
    """The module hyperparameters saved in a hotpose checkpoint (CheckpointError when it is not one)."""
    path = Path(ckpt)
    checkpoint = load_torch_file(path)
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not hparams or not all(k in (hparams.get("model") or {}) for k in MODEL_KEYS):
        raise CheckpointError(f"{path} is not a hotpose training checkpoint (no saved model configuration); "
                         "official weights need converting first")
    return hparams


def evaluate(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Test ``cfg.ckpt`` on ``cfg.data``, print the table, write ``<output_dir>/eval.json``.

    Returns ``{mode: {"overall": {...}, "per_action": {...}}}``. The results travel through the json
    file, written by rank 0 of the test, so that ``ddp_spawn`` workers report them too.
    """
    check_required(cfg)
    hparams = read_hparams(cfg.ckpt)
    with open_dict(cfg):
        for key in MODEL_KEYS:
            cfg[key] = OmegaConf.create(hparams["model"][key])
    overrides = {"eval_mode": cfg.eval_mode}
    for key in ("test_flip", "flip_reselect"):
        if cfg.get(key) is not None:
            overrides[key] = bool(cfg[key])
    paper_note = ""
    if cfg.eval_mode in ("paper", "both"):  # the official batches, order and RNG stream
        paper_overrides, paper_note = paper_setup(cfg, hparams)
        overrides.update(paper_overrides)
        print(f"paper protocol: {paper_note}")
    flags = {key: overrides.get(key, hparams.get(key, True)) for key in ("test_flip", "flip_reselect")}
    check_flip_combination(hparams["model"], str(hparams.get("pipeline", "seq2seq")), **flags)
    keep_freed_memory()  # reuse freed activation memory (hotpose/host_memory.py)
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    module = HotposeModule.load_from_checkpoint(cfg.ckpt, map_location="cpu", weights_only=True, **overrides)
    precision = cfg.get("precision") or "float32"
    if precision != "float32":
        on_gpu = torch.cuda.is_available() and cfg.trainer.get("accelerator", "auto") not in ("cpu",)
        check_precision(precision, "cuda" if on_gpu else "cpu")
        module.run_at_precision(precision)
    datamodule = instantiate(cfg.data)
    out = Path(cfg.paths.output_dir) / "eval.json"
    out.unlink(missing_ok=True)
    callbacks = [*instantiate_group(cfg.get("callbacks")), MetricsFile(out)]
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks)
    with exit_on_sigterm(trainer, "test"):  # SIGTERM: one line and exit status 3, never 0
        trainer.test(module, datamodule=datamodule, verbose=False)
    if trainer.global_rank != 0:
        return {}
    if not out.is_file():
        raise RuntimeError(f"the test wrote no {out}")
    results = json.loads(out.read_text())["test"]
    from rich.console import Console

    Console().print(format_table(results))
    if "mpi_inf_3dhp" in results:
        from hotpose.metrics_3dhp import format_benchmark_table

        Console().print(format_benchmark_table(results["mpi_inf_3dhp"]))
    for mode, r in results.items():
        summary = ", ".join(f"{n} {r['overall'][f'{n}_mm']:.2f}" for n in NAMES if f"{n}_mm" in r["overall"])
        protocol = f"; {paper_note}" if mode == "paper" and paper_note else ""
        print(f"{mode}: {summary} (mm){protocol}; ckpt {cfg.ckpt}; written to {out}")
    return results


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
@one_line_user_errors()  # the user's file, key or value, not a bug: the message says it all
def main(cfg: DictConfig) -> float | None:
    results = evaluate(cfg)
    first = next(iter(results.values()), {})
    return first.get("overall", {}).get("mpjpe_mm")


if __name__ == "__main__":
    main()
