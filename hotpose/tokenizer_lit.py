"""``TokenizerModule``: trains the VQ-VAE pose tokenizer (``python -m hotpose.train task=tokenizer``).

It reads the same batches as :class:`hotpose.lit.HotposeModule` (``configs/task/tokenizer.yaml`` sets the
data to one-frame windows, so every ``target_3d (b, 1, 17, 3)`` frame is one training pose of the training
subjects) and ignores the 2D input. Loss: ``recon · MPJPE(decoded, pose) + commitment · mean((z - sg(z_q))²)``
(metres). Validation and test (the held-out subjects) log the reconstruction MPJPE and P-MPJPE in mm, the
fraction of codes used over the whole split (``usage``) and the perplexity of that code histogram. At the
end of fitting the tokenizer alone is saved as ``tokenizer.pt`` next to the checkpoints; ``head.tokenizer_ckpt``
accepts that file or any checkpoint of this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import Tensor

from hotpose.lit import _plain
from hotpose.metrics import mpjpe as pose_mpjpe
from hotpose.metrics import p_mpjpe
from hotpose.models.tokenizer import build_tokenizer, perplexity, tokenizer_state

DEFAULT_LOSS = {"recon": 1.0, "commitment": 0.02}


class TokenizerModule(pl.LightningModule):
    """Training and evaluation of a :class:`~hotpose.models.tokenizer.PoseTokenizer`.

    Args:
        tokenizer: keyword arguments of :class:`PoseTokenizer` (saved in the checkpoint).
        loss: ``{"recon": w, "commitment": w}``.
        optimizer, scheduler: ``_partial_`` configs as in :class:`hotpose.lit.HotposeModule`.
        save_path: where to write ``tokenizer.pt`` at the end of fitting (None: nowhere).
    """

    def __init__(self, tokenizer: Mapping[str, Any] | None, optimizer: Mapping[str, Any],
                 loss: Mapping[str, Any] | None = None, scheduler: Mapping[str, Any] | None = None,
                 save_path: str | None = None) -> None:
        super().__init__()
        weights = {**DEFAULT_LOSS, **dict(_plain(loss) or {})}
        unknown = sorted(set(weights) - set(DEFAULT_LOSS))
        if unknown:
            raise ValueError(f"tokenizer loss: unknown terms {unknown}; known: {sorted(DEFAULT_LOSS)}")
        if any(float(v) < 0 for v in weights.values()):
            raise ValueError(f"tokenizer loss weights must be >= 0, got {weights}")
        self.save_hyperparameters({"tokenizer": _plain(tokenizer) or {}, "loss": weights,
                                   "optimizer": _plain(optimizer), "scheduler": _plain(scheduler),
                                   "save_path": save_path})
        self.tokenizer = build_tokenizer(self.hparams.tokenizer)
        self.weights = {k: float(v) for k, v in weights.items()}
        self.eval_modes = ["exact"]  # one protocol: every held-out pose once
        self.results: dict[str, dict[str, float]] = {}  # "<stage>/exact" → metrics (metrics.json)
        self.run_stats: dict[str, Any] = {}
        self._eval: dict[str, Tensor] = {}

    # -------------------------------------------------------------------------------- data

    @staticmethod
    def poses(batch: Mapping[str, Any]) -> Tensor:
        """The real frames of ``batch["target_3d"] (b, f, 17, 3)`` as single poses ``(n, 17, 3)``."""
        if "target_3d" not in batch:
            raise ValueError(f"batch lacks key 'target_3d'; it has {sorted(batch)} (see docs/design.md)")
        target = batch["target_3d"]
        if target.ndim != 4 or target.shape[-2:] != (17, 3):
            raise ValueError(f"target_3d must be (b, f, 17, 3), got {tuple(target.shape)}")
        valid = batch.get("valid")
        poses = target[valid.bool()] if valid is not None else target.reshape(-1, 17, 3)
        return poses - poses[:, :1]

    def forward(self, pose: Tensor) -> Any:
        return self.tokenizer(pose)

    def example_input(self, batch_size: int = 1) -> Tensor:
        """A zero pose batch ``(batch_size, 17, 3)`` (FLOP counting)."""
        return torch.zeros(batch_size, self.tokenizer.num_joints, 3, device=self.device)

    # ---------------------------------------------------------------------------- training

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        pose = self.poses(batch)
        out = self.tokenizer(pose)
        recon = torch.linalg.vector_norm(out.pose - pose, dim=-1).mean()
        loss = self.weights["recon"] * recon + self.weights["commitment"] * out.commitment
        if not torch.isfinite(loss):
            raise FloatingPointError(f"tokenizer loss is {loss.item()} at step {self.global_step}")
        n = pose.shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("train/mpjpe_mm", recon * 1000, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("train/commitment", out.commitment, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("train/perplexity", out.perplexity, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return loss

    # -------------------------------------------------------------------------- evaluation

    def _eval_start(self) -> None:
        k = self.tokenizer.codebook_size
        self._eval = {"mpjpe": torch.zeros((), dtype=torch.float64, device=self.device),
                      "p_mpjpe": torch.zeros((), dtype=torch.float64, device=self.device),
                      "count": torch.zeros((), dtype=torch.float64, device=self.device),
                      "codes": torch.zeros(k, dtype=torch.long, device=self.device)}

    def _eval_step(self, batch: Mapping[str, Any]) -> None:
        pose = self.poses(batch)
        out = self.tokenizer(pose)
        s = self._eval
        s["mpjpe"] += pose_mpjpe(out.pose, pose).double().sum()
        s["p_mpjpe"] += p_mpjpe(out.pose, pose).double().sum()
        s["count"] += pose.shape[0]
        s["codes"] += torch.bincount(out.index.flatten(), minlength=self.tokenizer.codebook_size)

    def _eval_end(self, stage: str) -> None:
        s = {k: v.clone() for k, v in self._eval.items()}
        if self.trainer.world_size > 1:
            s = {k: self.trainer.strategy.reduce(v, reduce_op="sum") for k, v in s.items()}
        count = float(s["count"].clamp_min(1))
        codes = s["codes"]
        index = torch.repeat_interleave(torch.arange(codes.numel(), device=codes.device), codes)
        result = {"mpjpe_mm": float(s["mpjpe"]) / count * 1000, "p_mpjpe_mm": float(s["p_mpjpe"]) / count * 1000,
                  "codebook_usage": float((codes > 0).float().mean()),
                  "perplexity": float(perplexity(index, codes.numel())), "poses": count}
        self.results[f"{stage}/exact"] = result
        for name, value in result.items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "mpjpe_mm", sync_dist=False)

    def on_validation_epoch_start(self) -> None:
        self._eval_start()

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_start(self) -> None:
        self._eval_start()

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    # --------------------------------------------------------------------------- optimiser

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer)(params=self.tokenizer.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_fit_end(self) -> None:
        path = self.hparams.save_path
        if path and self.trainer.global_rank == 0:
            from hotpose.checkpoints import atomic_torch_save

            atomic_torch_save(tokenizer_state(self.tokenizer), path)
