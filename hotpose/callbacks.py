"""Lightning callbacks: model complexity, throughput, pose pictures, ``metrics.json``, SIGTERM checkpoint.

They share what they measure through ``pl_module.run_stats`` (a plain dict on :class:`HotposeModule`), which
:class:`MetricsFile` writes out with the test results, so that sweep reports need no logger.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from pytorch_lightning.utilities.exceptions import SIGTERMException

from hotpose.data.skeleton import PARENTS

log = logging.getLogger(__name__)


def _stats(pl_module: pl.LightningModule) -> dict[str, Any]:
    if not hasattr(pl_module, "run_stats"):
        pl_module.run_stats = {}
    return pl_module.run_stats


class Complexity(pl.Callback):
    """Logs parameters (and FLOPs when ``hotpose.flops.count_flops`` exists) once, at fit or test start."""

    def __init__(self, flops: bool = True) -> None:
        self.flops = flops
        self._done = False

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._done:
            return
        self._done = True
        net = getattr(pl_module, "net", pl_module)
        stats = _stats(pl_module)
        stats["params"] = sum(p.numel() for p in net.parameters())
        metrics = {"model/params_m": stats["params"] / 1e6}
        if self.flops:
            try:
                from hotpose.flops import count_flops
            except ImportError:
                count_flops = None
            if count_flops is not None:
                try:
                    was_training = net.training
                    net.eval()
                    with torch.no_grad():
                        flops = count_flops(net, pl_module.example_input())
                    net.train(was_training)
                    stats.update({k: float(v) for k, v in flops.items() if isinstance(v, (int, float))})
                    metrics.update({f"model/{k}": float(v) for k, v in flops.items()
                                    if k in ("paper_gflops", "full_gflops")})
                except Exception as err:  # a counting failure must not stop a training run
                    log.warning("FLOP counting failed: %s", err)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=0)
        log.info("model: %s", ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module)


class Throughput(pl.Callback):
    """Output frames per second of the evaluation forward passes (flip TTA included), per stage.

    Timed around each batch (data loading excluded); the first ``warmup`` batches are skipped.
    seq2seq produces ``F`` frames per window, seq2frame one.
    """

    def __init__(self, warmup: int = 1) -> None:
        self.warmup = warmup
        self._reset()

    def _reset(self) -> None:
        self._t0 = 0.0
        self._seconds = 0.0
        self._frames = 0
        self._batches = 0

    def _start(self) -> None:
        self._t0 = time.perf_counter()

    def _end(self, pl_module: pl.LightningModule, batch: Any) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        self._batches += 1
        if self._batches <= self.warmup:
            return
        self._seconds += time.perf_counter() - self._t0
        x = batch["input_2d"]
        per_window = x.shape[1] if getattr(pl_module, "pipeline", "seq2seq") == "seq2seq" else 1
        self._frames += x.shape[0] * per_window

    def _report(self, stage: str, pl_module: pl.LightningModule) -> None:
        if self._seconds > 0:
            fps = self._frames / self._seconds
            _stats(pl_module)[f"{stage}_frames_per_s"] = fps
            pl_module.log(f"{stage}/frames_per_s", fps, sync_dist=True)
        self._reset()

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._start()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        self._end(pl_module, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._report("val", pl_module)

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._start()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._end(pl_module, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._report("test", pl_module)


def _draw_skeleton(ax: Any, pose: Any, colour: str, three_d: bool) -> None:
    for j, parent in enumerate(PARENTS):
        if parent < 0:
            continue
        seg = pose[[parent, j]]
        if three_d:  # camera frame: x right, y down, z forward → plot x, z (depth), -y (up)
            ax.plot(seg[:, 0], seg[:, 2], -seg[:, 1], color=colour, lw=1.5)
        else:
            ax.plot(seg[:, 0], -seg[:, 1], color=colour, lw=1.5)


def render_poses(input_2d: Any, pred: Any, target: Any, path: str | Path, title: str = "") -> Path:
    """One row per window: the 2D input, and the predicted (red) over the true (black) 3D skeleton → a PNG.

    ``input_2d (n, 17, 2)``, ``pred`` / ``target (n, 17, 3)`` numpy arrays (metres, root-relative). Both 3D
    skeletons share one panel and one scale (fitted to the two), so that the error is seen, and the
    panel's title gives that pose's P1.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    n = len(pred)
    fig = plt.figure(figsize=(6.4, 3.0 * n + 0.4))
    for i in range(n):
        ax = fig.add_subplot(n, 2, 2 * i + 1)
        _draw_skeleton(ax, input_2d[i], "tab:blue", three_d=False)
        ax.set_aspect("equal")
        ax.set_title("2D input" if i == 0 else "", fontsize=9)
        ax.axis("off")
        ax3 = fig.add_subplot(n, 2, 2 * i + 2, projection="3d")
        _draw_skeleton(ax3, target[i], "black", three_d=True)
        _draw_skeleton(ax3, pred[i], "tab:red", three_d=True)
        radius = float(np.ceil(max(np.abs(pred[i]).max(), np.abs(target[i]).max(), 0.1) * 10) / 10)
        for setter in (ax3.set_xlim, ax3.set_ylim, ax3.set_zlim):
            setter(-radius, radius)
        ax3.set_box_aspect((1, 1, 1))
        error_mm = float(np.linalg.norm(pred[i] - target[i], axis=-1).mean() * 1000)
        ax3.set_title(("predicted (red) over true (black)\n" if i == 0 else "")
                      + f"P1 {error_mm:.0f} mm, box ±{radius:.1f} m", fontsize=8)
        ax3.view_init(elev=15, azim=-70)
        ax3.set_xticklabels([])
        ax3.set_yticklabels([])
        ax3.set_zticklabels([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


class PosePictures(pl.Callback):
    """Renders ``num_windows`` windows of the first validation/test batch (their middle scored frame).

    PNGs go to ``<dirpath>/<stage>_epoch<e>.png`` and to every logger that takes images (wandb's
    ``log_image``, TensorBoard's ``add_image``).
    """

    def __init__(self, dirpath: str | Path, num_windows: int = 3, every_n_epochs: int = 1) -> None:
        self.dirpath = Path(dirpath)
        self.num_windows = num_windows
        self.every_n_epochs = max(1, every_n_epochs)
        self._sample: dict[str, Any] | None = None
        self._tested: tuple[int, str] | None = None  # (epoch, file) of the checkpoint the test restored

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # trainer.test(ckpt_path="best") restores only the weights: the trainer's epoch stays the last one
        if getattr(trainer.state, "fn", None) == "test" and "epoch" in checkpoint:
            self._tested = (int(checkpoint["epoch"]), Path(str(trainer.ckpt_path or "checkpoint")).name)

    def on_test_end(self, trainer, pl_module) -> None:
        self._tested = None

    def title(self, trainer: pl.Trainer, stage: str) -> tuple[str, str]:
        """``(title, file stem)`` that say which weights made the predictions."""
        if stage != "test":
            return f"{stage}, epoch {trainer.current_epoch}", f"{stage}_epoch{trainer.current_epoch:03d}"
        if self._tested is not None:
            epoch, name = self._tested
            return f"test, checkpoint of epoch {epoch} ({name})", f"test_epoch{epoch:03d}"
        if trainer.current_epoch > 0:  # tested right after fitting, on the last weights
            epoch = trainer.current_epoch - 1
            return f"test, weights after epoch {epoch} (the last)", f"test_epoch{epoch:03d}"
        return "test", "test"

    def _keep(self, outputs: Any, batch_idx: int) -> None:
        if batch_idx != 0 or not isinstance(outputs, dict) or "pred" not in outputs:
            return
        b, mid = outputs["pred"].shape[0], outputs["pred"].shape[1] // 2
        # spread over the batch: neighbouring windows are usually the same motion a moment apart
        rows = torch.linspace(0, b - 1, min(self.num_windows, b)).round().long().unique()
        self._sample = {k: outputs[k][rows.to(outputs[k].device), mid].detach().float().cpu().numpy()
                        for k in ("input_2d", "pred", "target")}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        if not trainer.sanity_checking and trainer.current_epoch % self.every_n_epochs == 0:
            self._keep(outputs, batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._keep(outputs, batch_idx)

    @rank_zero_only
    def _emit(self, trainer: pl.Trainer, stage: str) -> None:
        if self._sample is None:
            return
        sample, self._sample = self._sample, None
        title, stem = self.title(trainer, stage)
        path = render_poses(sample["input_2d"], sample["pred"], sample["target"], self.dirpath / f"{stem}.png",
                            title=title)
        for logger in trainer.loggers:
            try:
                if hasattr(logger, "log_image"):
                    logger.log_image(key=f"{stage}/poses", images=[str(path)], step=trainer.global_step)
                elif hasattr(getattr(logger, "experiment", None), "add_image"):
                    import matplotlib.pyplot as plt

                    image = plt.imread(path)[..., :3]
                    logger.experiment.add_image(f"{stage}/poses", image, trainer.global_step,
                                                dataformats="HWC")
            except Exception as err:  # pictures are a convenience: never stop training for them
                log.warning("could not send pose pictures to %s: %s", type(logger).__name__, err)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._emit(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._emit(trainer, "test")


class MetricsFile(pl.Callback):
    """Writes ``<path>`` (``metrics.json``) at the end of every test: test results per protocol (overall
    and per action), params, FLOPs, frames/s, epochs, best checkpoint and the Hydra overrides."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @staticmethod
    def overrides() -> list[str]:
        try:
            from hydra.core.hydra_config import HydraConfig

            if HydraConfig.initialized():
                return list(HydraConfig.get().overrides.task)
        except Exception:  # compose() without a Hydra run: no overrides to record
            pass
        return []

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        results = getattr(pl_module, "results", {})
        test = {key.split("/", 1)[1]: value for key, value in results.items() if key.startswith("test/")}
        payload: dict[str, Any] = {
            "test": {mode: _summary(r) for mode, r in test.items()},
            "stats": dict(getattr(pl_module, "run_stats", {})),
            "epochs": trainer.current_epoch,
            "global_step": trainer.global_step,
            "best_checkpoint": getattr(trainer.checkpoint_callback, "best_model_path", None) or None,
            "overrides": self.overrides(),
            "hparams": {k: v for k, v in dict(pl_module.hparams).items() if k != "actions"},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(payload, indent=2, default=str))


def _summary(result: dict[str, float]) -> dict[str, Any]:
    from hotpose.metrics import per_action_table

    if any(k.startswith("sequence/") for k in result):  # a benchmark metric (MPI-INF-3DHP PCK/AUC)
        from hotpose.metrics_3dhp import benchmark_summary

        return benchmark_summary(result)

    overall = {k: v for k, v in result.items() if not k.startswith("action/")}
    return {"overall": overall, "per_action": {a: r for a, r in per_action_table(result).items()
                                               if a != "Average"}}


def format_table(results: dict[str, dict[str, Any]]) -> Any:
    """A rich table from ``{mode: {"overall": {...}, "per_action": {action: {...}}}}`` (``metrics.json``'s
    ``test`` entry): one row per action, a P1/P2 column pair per protocol, in mm."""
    from rich.table import Table

    modes = [m for m in results if "per_action" in results[m]]  # benchmark entries have their own table
    table = Table(title="per-action errors (mm)")
    table.add_column("action")
    for mode in modes:
        table.add_column(f"{mode} P1", justify="right")
        table.add_column(f"{mode} P2", justify="right")
    actions = list(results[modes[0]]["per_action"]) if modes else []
    rows = [(a, [results[m]["per_action"].get(a, {}) for m in modes]) for a in actions]
    rows.append(("Average", [results[m]["overall"] for m in modes]))
    for i, (action, per_mode) in enumerate(rows):
        cells = [f"{r.get(n, float('nan')):.2f}" for r in per_mode for n in ("mpjpe_mm", "p_mpjpe_mm")]
        table.add_row(action, *cells, end_section=i == len(rows) - 2)
    return table


class SigtermCheckpoint(pl.Callback):
    """On SIGTERM (Lightning stops after the current batch) save ``<dirpath>/<filename>`` to resume from.

    Lightning's signal connector turns SIGTERM into a ``SIGTERMException`` after the running batch; the
    state is consistent there, so the checkpoint resumes with ``ckpt_path=<that file>``.
    """

    def __init__(self, dirpath: str | Path, filename: str = "sigterm.ckpt") -> None:
        self.path = Path(dirpath) / filename

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        trainer.save_checkpoint(self.path)
        if trainer.global_rank == 0:
            log.warning("SIGTERM: saved %s; resume with ckpt_path=%s", self.path, self.path)
