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

from hotpose.callbacks import MetricsFile, format_table
from hotpose.data.sources import DataError
from hotpose.lit import MODEL_KEYS, HotposeModule
from hotpose.metrics import NAMES
from hotpose.precision import check_precision
from hotpose.train import instantiate_group


def read_hparams(ckpt: str | Path) -> dict[str, Any]:
    """The module hyperparameters saved in a hotpose checkpoint (ValueError when it is not one)."""
    path = Path(ckpt)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not hparams or not all(k in (hparams.get("model") or {}) for k in MODEL_KEYS):
        raise ValueError(f"{path} is not a hotpose training checkpoint (no saved model configuration); "
                         "official weights need converting first")
    return hparams


def evaluate(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Test ``cfg.ckpt`` on ``cfg.data``, print the table, write ``<output_dir>/eval.json``.

    Returns ``{mode: {"overall": {...}, "per_action": {...}}}``. The results travel through the json
    file, written by rank 0 of the test, so that ``ddp_spawn`` workers report them too.
    """
    hparams = read_hparams(cfg.ckpt)
    with open_dict(cfg):
        for key in MODEL_KEYS:
            cfg[key] = OmegaConf.create(hparams["model"][key])
    overrides = {"eval_mode": cfg.eval_mode}
    for key in ("test_flip", "flip_reselect"):
        if cfg.get(key) is not None:
            overrides[key] = bool(cfg[key])
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    module = HotposeModule.load_from_checkpoint(cfg.ckpt, map_location="cpu", weights_only=False, **overrides)
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
    trainer.test(module, datamodule=datamodule, verbose=False)
    if trainer.global_rank != 0:
        return {}
    if not out.is_file():
        raise RuntimeError(f"the test wrote no {out}")
    results = json.loads(out.read_text())["test"]
    from rich.console import Console

    Console().print(format_table(results))
    for mode, r in results.items():
        summary = ", ".join(f"{n} {r['overall'][f'{n}_mm']:.2f}" for n in NAMES if f"{n}_mm" in r["overall"])
        print(f"{mode}: {summary} (mm); ckpt {cfg.ckpt}; written to {out}")
    return results


@hydra.main(version_base="1.3", config_path="../configs", config_name="eval")
def main(cfg: DictConfig) -> float | None:
    try:
        results = evaluate(cfg)
    except DataError as error:  # the user's data, not a bug: the message says it all
        raise SystemExit(f"error: {error}") from None
    first = next(iter(results.values()), {})
    return first.get("overall", {}).get("mpjpe_mm")


if __name__ == "__main__":
    main()
