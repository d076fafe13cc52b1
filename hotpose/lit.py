"""``HotposeModule``: the LightningModule around an :class:`~hotpose.models.hourglass.Hourglass`.

What it adds to the network:

- **Which frames are scored.** The network returns ``pose (b, f_out, 17, 3)`` and ``frame_index
  (b, f_out)`` (the window position of each output frame). Targets and the ``valid`` mask are gathered
  at ``frame_index``, so a pruned model without recovery (TPC) is trained on its kept frames, as the
  official scripts do. At evaluation, ``seq2seq`` scores every output frame (``exact`` mode: the real
  ones) and ``seq2frame`` the output frame whose ``frame_index`` is the window centre ``(F - 1) // 2``.
- **Root handling.** Targets get their root joint set to 0 (the data already does; done again so a
  foreign data module cannot break it); predictions get their root zeroed before the metrics only.
- **Flip test-time augmentation** (``test_flip``): the mirrored input is run too, its output mirrored
  back and averaged. A pruned model without recovery either re-selects frames on the mirrored input
  (``flip_reselect=True``; only the centre frame is then common to both, so only seq2frame allows it)
  or reuses the first pass's selection (``False``, what the official TPC scripts do).
- **The official numerics and RNG stream** for converted checkpoints: ``official_numerics`` runs the
  network with the official explicit-matmul attention (the numerics its TPC ties were converted for),
  and ``test_seed`` seeds torch right before the first test batch, so that TPC's official tie-break
  noise is drawn in the official test loop's order (``docs/protocols.md``).
- **Optimiser and schedule** from ``_partial_`` configs; the configs are saved as hyperparameters, so
  a checkpoint rebuilds its module without the training config (``python -m hotpose.eval``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from hotpose.data.skeleton import ROOT
from hotpose.data.transforms import flip_pose
from hotpose.metrics import MODES, NAMES, PoseErrorMetric, per_action_table
from hotpose.models.layers import official_kernels

PIPELINES = ("seq2seq", "seq2frame")
EVAL_MODES = (*MODES, "both")
MODEL_KEYS = ("backbone", "pruner", "recoverer", "pipeline")
#: model groups that may be absent (checkpoints written before they existed): absent = the default
OPTIONAL_MODEL_KEYS = ("head",)


class EpochDecay:
    """lr factor after ``epoch`` finished epochs: ``× step_gamma`` every ``step_every``-th, else ``× gamma``.

    The official schedule (applied after each epoch ``e = 1, 2, ...``): ``lr *= 0.5`` when
    ``e % step_every == 0``, else ``lr *= gamma``. MixSTE: gamma 0.99, step_every 200 (never reached in
    160 epochs); MHFormer: gamma 0.95, step_every 5. A class (not a lambda) so that it pickles
    (``ddp_spawn``) and its state lands in the checkpoint.
    """

    def __init__(self, gamma: float, step_every: int = 0, step_gamma: float = 0.5) -> None:
        if not 0 < gamma <= 1 or not 0 < step_gamma <= 1 or step_every < 0:
            raise ValueError(f"EpochDecay needs 0 < gamma, step_gamma <= 1 and step_every >= 0, "
                             f"got {gamma}, {step_gamma}, {step_every}")
        self.gamma, self.step_every, self.step_gamma = float(gamma), int(step_every), float(step_gamma)

    def __call__(self, epoch: int) -> float:
        steps = epoch // self.step_every if self.step_every else 0
        return self.step_gamma ** steps * self.gamma ** (epoch - steps)


def epoch_decay_scheduler(optimizer: torch.optim.Optimizer, gamma: float, step_every: int = 0,
                          step_gamma: float = 0.5) -> torch.optim.lr_scheduler.LambdaLR:
    """The official per-epoch schedule as a ``LambdaLR`` (``scheduler/mixste.yaml``, ``mhformer.yaml``)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, EpochDecay(gamma, step_every, step_gamma))


def _plain(cfg: Any) -> Any:
    """DictConfig → plain resolved containers (hyperparameters must not hold interpolations)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, Mapping):
        return {k: _plain(v) for k, v in cfg.items()}
    return cfg


def gather_frames(x: Tensor, frame_index: Tensor) -> Tensor:
    """``x (b, f, ...)`` at the window positions ``frame_index (b, k)`` → ``(b, k, ...)``."""
    if frame_index.ndim != 2 or frame_index.shape[0] != x.shape[0]:
        raise ValueError(f"frame_index must be (b, k) with b = {x.shape[0]}, got {tuple(frame_index.shape)}")
    rows = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[rows, frame_index.to(x.device)]


def centre_positions(frame_index: Tensor, centre: int) -> Tensor:
    """Position in the output ``(b, k)`` of window frame ``centre``, one per row → ``(b,)``."""
    hits = frame_index == centre
    found = hits.sum(dim=1)
    if not bool((found == 1).all()):
        bad = torch.nonzero(found != 1).flatten()[:5].tolist()
        raise ValueError(f"seq2frame needs the centre frame {centre} exactly once in every output; windows "
                         f"{bad} have it {found[bad].tolist()} times (does the pruner keep the centre?)")
    return hits.int().argmax(dim=1)


class HotposeModule(pl.LightningModule):
    """Training, validation and test of one hourglass model.

    Args:
        model: the ``backbone``, ``pruner``, ``recoverer`` and ``pipeline`` configs (and optionally ``head``)
            given to :func:`hotpose.models.build_model` (saved in the checkpoint).
        loss: config of :class:`hotpose.losses.PoseLoss`.
        optimizer, scheduler: ``_partial_`` configs called with the parameters / the optimiser
            (``scheduler`` may be None); the scheduler steps once per epoch.
        pipeline: ``seq2seq`` or ``seq2frame`` (which frames are scored at evaluation).
        test_flip, flip_reselect: flip test-time augmentation (module docstring).
        eval_mode: ``exact``, ``paper`` or ``both`` (:mod:`hotpose.metrics`); the first listed mode
            drives ``val/mpjpe_mm`` and ``test/mpjpe_mm``.
        compile: run the network through ``torch.compile`` (the parameters stay in ``self.net``).
        official_numerics: run attention as explicit matmuls, as the official classes do (converted
            checkpoints with the official tie-break; SDPA otherwise).
        test_seed: ``torch.manual_seed`` right before the first test batch (None: no reseeding).
        actions: action vocabulary of the metrics; None takes the val/test action groups from the
            data module at setup.
        net: an already built network (tests, or models outside the registry); not saved in the
            hyperparameters, so such a checkpoint cannot be rebuilt by ``load_from_checkpoint``.
    """

    def __init__(
        self,
        model: Mapping[str, Any] | None,
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        pipeline: str = "seq2seq",
        test_flip: bool = True,
        flip_reselect: bool = True,
        eval_mode: str = "exact",
        compile: bool = False,
        actions: Sequence[str] | None = None,
        net: nn.Module | None = None,
        official_numerics: bool = False,
        test_seed: int | None = None,
    ) -> None:
        super().__init__()
        if pipeline not in PIPELINES:
            raise ValueError(f"pipeline must be one of {PIPELINES}, got {pipeline!r}")
        if eval_mode not in EVAL_MODES:
            raise ValueError(f"eval_mode must be one of {EVAL_MODES}, got {eval_mode!r}")
        if net is None and model is None:
            raise ValueError("HotposeModule needs a model config (backbone/pruner/recoverer/pipeline)"
                             " or a net")
        if model is not None:
            missing = [k for k in MODEL_KEYS if k not in model]
            if missing:
                raise ValueError(f"model config lacks {missing}; it needs the groups {list(MODEL_KEYS)}")
        self.save_hyperparameters(
            {"model": _plain(model), "loss": _plain(loss), "optimizer": _plain(optimizer),
             "scheduler": _plain(scheduler), "pipeline": pipeline, "test_flip": bool(test_flip),
             "flip_reselect": bool(flip_reselect), "eval_mode": eval_mode, "compile": bool(compile),
             "actions": None if actions is None else list(actions),
             "official_numerics": bool(official_numerics),
             "test_seed": None if test_seed is None else int(test_seed)}
        )
        if net is None:
            from hotpose.models.build import build_saved_model

            net = build_saved_model(self.hparams.model)
        self.net = net
        self.loss_fn = instantiate(self.hparams.loss)
        self.pipeline = pipeline
        self.eval_modes = list(MODES) if eval_mode == "both" else [eval_mode]
        self.metrics = nn.ModuleDict()  # "<stage>_<mode>" → PoseErrorMetric, built in setup()
        self.results: dict[str, dict[str, float]] = {}  # "<stage>/<mode>" → last computed metrics
        self.run_stats: dict[str, Any] = {}  # filled by callbacks (params, FLOPs, frames/s) for metrics.json
        # a plain attribute, not a submodule: registering the net twice would duplicate its state_dict keys
        object.__setattr__(self, "_forward", self.net)

    # ---------------------------------------------------------------------------------- setup

    def setup(self, stage: str) -> None:
        actions = self.hparams.actions
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if actions is None and dm is not None and hasattr(dm, "sequences"):
            splits = ("val", "test") if stage in ("fit", "validate") else ("test",)
            actions = sorted({r.action_group for s in splits for r in dm.sequences(s)})
        self._build_metrics(actions)
        # a benchmark with metrics of its own (MPI-INF-3DHP: PCK/AUC) provides them through its data module
        factory = getattr(dm, "benchmark_metric", None)
        if callable(factory):
            for split in ("val", "test"):
                self.metrics[f"{split}_benchmark"] = factory()
        if self.hparams.compile and self._forward is self.net:
            object.__setattr__(self, "_forward", torch.compile(self.net))

    def run_at_precision(self, precision: str) -> None:
        """Evaluate (and predict) with the network at ``precision`` (:mod:`hotpose.precision`): float32,
        bf16 autocast, or a dynamically quantised int8 copy; the metrics always see float32 poses."""
        from hotpose.precision import AtPrecision

        object.__setattr__(self, "_forward", AtPrecision(self.net, precision, self.device))

    def _build_metrics(self, actions: Sequence[str] | None) -> None:
        for stage in ("val", "test"):
            for mode in self.eval_modes:
                self.metrics[f"{stage}_{mode}"] = PoseErrorMetric(actions, mode=mode)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint of another model configuration before its weights are loaded."""
        saved = checkpoint.get("hyper_parameters", {})
        for key in ("model", "pipeline"):
            if key in saved and _comparable(saved[key]) != _comparable(self.hparams[key]):
                raise ValueError(
                    f"checkpoint was trained with a different {key} configuration:\n"
                    f"{_diff(_comparable(saved[key]), _comparable(self.hparams[key]))}\n"
                    "use the checkpoint's configuration (python -m hotpose.eval ckpt=... reads it)"
                    " or start anew"
                )

    # -------------------------------------------------------------------------------- forward

    def forward(self, x: Tensor, kept: list[Tensor] | None = None) -> Any:
        if self.hparams.get("official_numerics"):
            with official_kernels():
                return self._forward(x, kept=kept)
        return self._forward(x, kept=kept)

    def _targets(self, batch: Mapping[str, Any]) -> tuple[Tensor, Tensor, Tensor]:
        for k in ("input_2d", "target_3d", "valid"):
            if k not in batch:
                raise ValueError(f"batch lacks key {k!r}; it has {sorted(batch)} (see docs/design.md)")
        x, target, valid = batch["input_2d"], batch["target_3d"], batch["valid"]
        if x.ndim != 4 or target.shape[:3] != x.shape[:3] or tuple(valid.shape) != tuple(x.shape[:2]):
            raise ValueError(f"batch shapes disagree: input_2d {tuple(x.shape)}, "
                             f"target_3d {tuple(target.shape)}, "
                             f"valid {tuple(valid.shape)}")
        target = target.clone()
        target[..., ROOT, :] = 0
        return x, target, valid.bool()

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        x, target, valid = self._targets(batch)
        out = self(x)
        pos = out.frame_index
        target, valid = gather_frames(target, pos), gather_frames(valid, pos)
        terms = self.loss_fn.terms(out.pose, target, valid)
        weights = dict(self.loss_fn.weights)
        head_terms = getattr(self.net, "head_terms", None)
        if head_terms is not None:  # e.g. the token head's cross-entropy on ground-truth codes
            for name, (weight, value) in head_terms(out, target, valid).items():
                terms[name], weights[name] = value, weight
        loss = sum(weights[name] * value for name, value in terms.items())
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=x.shape[0],
                 sync_dist=True)
        for name, value in terms.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=x.shape[0],
                     sync_dist=True)
        return loss

    def predict_scored(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """Evaluation forward (with flip TTA): scored ``pred``, ``target`` ``(b, f_s, 17, 3)``, ``valid``,
        and ``position (b, f_s)`` of each scored frame in the window."""
        x, target, valid = self._targets(batch)
        out = self(x)
        centre = (x.shape[1] - 1) // 2
        flipped = None
        if self.hparams.test_flip:
            reuse = not self.hparams.flip_reselect
            flipped = self(flip_pose(x), kept=list(out.kept) if reuse and out.kept else None)
        if self.pipeline == "seq2frame":
            pick = centre_positions(out.frame_index, centre)[:, None]
            pose = gather_frames(out.pose, pick)
            if flipped is not None:
                pick_f = centre_positions(flipped.frame_index, centre)[:, None]
                pose = (pose + flip_pose(gather_frames(flipped.pose, pick_f))) / 2
            pos = torch.full_like(pick, centre)
        else:
            pose, pos = out.pose, out.frame_index
            if flipped is not None:
                if not torch.equal(flipped.frame_index, pos):
                    raise ValueError("the flipped pass kept other frames than the first one, so seq2seq "
                                     "cannot "
                                     "average them; set flip_reselect=false (reuse the first selection) "
                                     "or test_flip=false")
                pose = (pose + flip_pose(flipped.pose)) / 2
        pose = pose.clone()
        pose[..., ROOT, :] = 0
        return {"pred": pose, "target": gather_frames(target, pos), "valid": gather_frames(valid, pos),
                "position": pos}

    def _window_keys(self, batch: Mapping[str, Any], position: Tensor) -> Tensor | None:
        """A unique id per window (sequence, camera, source frame of its first scored frame)."""
        if "seq_index" not in batch or "frame_index" not in batch:
            return None
        src = gather_frames(batch["frame_index"][..., None], position[:, :1])[:, 0, 0].long()
        camera = batch.get("camera", torch.zeros_like(batch["seq_index"]))
        seq = batch["seq_index"].long() * 16 + camera.long()
        return seq * (1 << 32) + src

    def _eval_step(self, stage: str, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        scored = self.predict_scored(batch)
        key = self._window_keys(batch, scored["position"])
        for mode in self.eval_modes:
            # position: MPJVE only between frames adjacent in time (pruned seq2seq outputs its kept frames)
            self.metrics[f"{stage}_{mode}"].update(scored["pred"], scored["target"], scored["valid"],
                                                   list(batch["action"]), key, position=scored["position"])
        if f"{stage}_benchmark" in self.metrics:
            frames = gather_frames(batch["frame_index"][..., None], scored["position"])[..., 0]
            self.metrics[f"{stage}_benchmark"].update(scored["pred"], scored["target"], scored["valid"],
                                                      list(batch["sequence"]), frames)
        return {**scored, "input_2d": gather_frames(batch["input_2d"], scored["position"])}

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        return self._eval_step("val", batch)

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Tensor]:
        if batch_idx == 0 and self.hparams.get("test_seed") is not None:
            # the official test loop's stream: seeded once, then drawn only by the forwards, in order
            torch.manual_seed(self.hparams.test_seed)
        return self._eval_step("test", batch)

    def _eval_epoch_end(self, stage: str) -> None:
        for i, mode in enumerate(self.eval_modes):
            metric = self.metrics[f"{stage}_{mode}"]
            result = {k: float(v) for k, v in metric.compute().items()}
            metric.reset()
            self.results[f"{stage}/{mode}"] = result
            for k, v in result.items():  # per-action values go to metrics.json and the table below
                if not k.startswith("action/") and math.isfinite(v):
                    self.log(f"{stage}/{mode}/{k}", v, sync_dist=True)
            if stage == "test":
                self._log_action_table(f"{stage}/{mode}/per_action", result)
            if i == 0:  # the primary mode also under the short names the checkpoint callback monitors
                for name in ("mpjpe_mm", "p_mpjpe_mm", "n_mpjpe_mm", "mpjve_mm"):
                    if name in result:
                        self.log(f"{stage}/{name}", result[name], prog_bar=name == "mpjpe_mm", sync_dist=True)
        if f"{stage}_benchmark" in self.metrics:
            self._benchmark_epoch_end(stage)

    def _benchmark_epoch_end(self, stage: str) -> None:
        """Compute and log the data module's benchmark metric (its per-sequence values go to metrics.json)."""
        metric = self.metrics[f"{stage}_benchmark"]
        name = getattr(metric, "benchmark", "benchmark")
        result = {k: float(v) for k, v in metric.compute().items()}
        metric.reset()
        self.results[f"{stage}/{name}"] = result
        for k, v in result.items():
            if "/" not in k and math.isfinite(v):
                self.log(f"{stage}/{name}/{k}", v, sync_dist=True)

    def _log_action_table(self, key: str, result: dict[str, float]) -> None:
        """Per-action rows to every logger that takes tables (wandb); rank 0 only."""
        if self._trainer is None or self.trainer.global_rank != 0:
            return
        columns = ["action", *(f"{n}_mm" for n in NAMES)]
        rows = [[action, *(r.get(c, float("nan")) for c in columns[1:])]
                for action, r in per_action_table(result).items()]
        for logger in self.trainer.loggers:
            if hasattr(logger, "log_table"):
                logger.log_table(key=key, columns=columns, data=rows)

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    # ------------------------------------------------------------------------------ optimiser

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.net.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def example_input(self, batch_size: int = 1) -> Tensor:
        """Zeros ``(batch_size, F, 17, c_in)`` shaped like the network's input (FLOP counting)."""
        backbone = getattr(self.net, "backbone", self.net)
        frames = int(getattr(backbone, "frames", 0) or getattr(self.net, "frames", 0))
        if not frames:
            raise ValueError("cannot tell the network's input frames (no .frames on the net or its backbone)")
        channels = int(getattr(backbone, "in_channels", 2))
        joints = int(getattr(backbone, "num_joints", 17))
        return torch.zeros(batch_size, frames, joints, channels, device=self.device)


def _comparable(model: Any) -> Any:
    """A model config without the groups that are at their default (``head`` = the regression head), so that
    checkpoints written before a group existed still match."""
    if not isinstance(model, dict) or "head" not in model:
        return model
    head = model["head"]
    if head is None or (isinstance(head, dict) and head.get("_target_") is None):
        return {k: v for k, v in model.items() if k != "head"}
    return model


def _diff(a: Any, b: Any, path: str = "") -> str:
    """Readable list of differing keys between two nested dicts."""
    if isinstance(a, dict) and isinstance(b, dict):
        lines = [_diff(a.get(k), b.get(k), f"{path}.{k}" if path else str(k)) for k in sorted(set(a) | set(b))
                 if a.get(k) != b.get(k)]
        return "\n".join(line for line in lines if line)
    return f"  {path or 'value'}: checkpoint {a!r} != current {b!r}"
