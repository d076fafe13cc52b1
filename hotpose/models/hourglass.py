"""The hourglass: prune frames inside any backbone, recover them before its head (HoT, H2OT).

One code path for every backbone (through the seams of :class:`hotpose.models.backbones.base.Backbone`)
and every schedule: a pruning *stage* ``(layer, tokens)`` runs right before block ``layer`` and keeps
``tokens`` of the frames entering it; several stages (progressive pruning) simply follow one another::

    t = backbone.embed(x)                                   (b, F, n, c)
    for block i:
        if a stage s sits at i:
            kept_s = policy.select(backbone.frame_features(t), tokens_s, centre)   (b, k_s)
            t = t[kept_s] (+ token_embeddings[s] by rank when token_embedding)
        t = backbone.forward_block(i, t)
    t = backbone.norm(t)
    t = recoverer(t, frame_index, F)                        (b, F, n, c), or the kept frames for none
    pose = backbone.head(t)                                 (b, f_out, 17, 3)
           (or an output head given to the hourglass, e.g. the pose-token head, in place of backbone.head)

Input channel rule: a backbone that expects 3 channels (x, y, confidence) fed with 2-channel keypoints
gets a constant confidence channel of ones appended here, not inside the backbone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from hotpose.models.backbones.base import Backbone
from hotpose.models.pruners import Pruner

CONFIDENCE_CHANNELS = 3  # x, y, confidence


class HourglassOutput(NamedTuple):
    """``pose (b, f_out, 17, 3)``; ``frame_index (b, f_out)`` int64: the input frame of each output frame
    (``arange(F)`` after recovery, the kept frames without); ``kept``: one ``(b, k_s)`` per stage, indexing
    the frames that *entered* that stage (pass it back as ``forward(x, kept=...)`` to reuse a selection);
    ``logits (b, f_out, m, k)``: codebook logits of a token output head, None for a regression head."""

    pose: Tensor
    frame_index: Tensor
    kept: list[Tensor]
    logits: Tensor | None = None


def block_schedule(frames: int, num_blocks: int, stages: Sequence[tuple[int, int]]) -> list[int]:
    """Frames each block sees when ``stages`` prune before their layers: e.g. ``(243, 4, [(1, 81)])``
    → ``[243, 81, 81, 81]``. Validates the stages (ValueError naming the bad one)."""
    current, previous_layer, by_layer = frames, -1, dict(stages)
    for s, (layer, tokens) in enumerate(stages):
        if not 0 <= layer < num_blocks:
            raise ValueError(f"pruning stage {s} (layer={layer}, tokens={tokens}): layer must be in "
                             f"[0, {num_blocks}) (the backbone has {num_blocks} blocks)")
        if layer <= previous_layer:
            raise ValueError(f"pruning stages must have strictly increasing layers, got {list(stages)}")
        if not 1 <= tokens < current:
            raise ValueError(f"pruning stage {s} (layer={layer}, tokens={tokens}): tokens must be in "
                             f"[1, {current}) (fewer than the {current} frames entering it)")
        current, previous_layer = tokens, layer
    schedule, current = [], frames
    for i in range(num_blocks):
        current = by_layer.get(i, current)
        schedule.append(current)
    return schedule


def require_finite(x: Tensor, what: str) -> None:
    """ValueError naming ``what`` and the first bad position if ``x`` holds NaN or inf (a host sync)."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        first = [int(i) for i in torch.nonzero(bad)[0]]
        raise ValueError(f"{what} contain NaN or inf values (first at index {first}); fill or drop "
                         "missing detections before lifting")


def gather_frames(x: Tensor, index: Tensor) -> Tensor:
    """``x (b, f, ...)``, ``index (b, k)`` → ``(b, k, ...)``: per-sample frame selection."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], index]


class Hourglass(nn.Module):
    """A backbone with frame pruning stages and an optional recoverer.

    Args:
        backbone: factory of the backbone, called as ``backbone(block_frames=...)`` (e.g. a
            ``functools.partial`` of the class with its hyperparameters, as Hydra's ``_partial_`` gives).
        policy: token selection policy; None for no pruning (then ``stages`` must be empty).
        stages: ``(layer, tokens)`` pruning points, layers strictly increasing.
        token_embedding: add a learnable ``(1, tokens, c)`` embedding after each stage, indexed by the rank
            of the kept frame (HoT's ``pos_embed_token``); zeros at init.
        recoverer: factory ``recoverer(dim=c, frames=F)``, or None to output the kept frames. It is applied
            even without pruning stages (then it maps all F tokens to F frames).
        keep_center: every stage keeps the centre frame ``(F - 1) // 2`` (seq2frame).
        head: factory of an output head used instead of ``backbone.head``, called as ``head(dim=c, joints=17)``;
            the module maps ``(b, f, n, c)`` tokens to a pose ``(b, f, 17, 3)`` or to ``(pose, logits)``, and
            may offer ``loss_terms(logits, target, valid) -> {name: (weight, value)}`` (see :meth:`head_terms`).
            None: the backbone's own regression head.
        check_finite: refuse NaN/inf input keypoints: None (default) on CPU inputs only, where the check
            costs no device synchronisation; True on every device; False never (see
            :meth:`_should_check_finite`).
    """

    def __init__(self, backbone: Callable[..., Backbone], policy: Pruner | None = None,
                 stages: Sequence[tuple[int, int]] = (), token_embedding: bool = False,
                 recoverer: Callable[..., nn.Module] | None = None, keep_center: bool = False,
                 head: Callable[..., nn.Module] | None = None, check_finite: bool | None = None) -> None:
        super().__init__()
        self.check_finite = check_finite
        if isinstance(backbone, nn.Module):
            raise ValueError("Hourglass: pass a backbone factory (e.g. functools.partial(SomeBackbone, ...)),"
                             " not a built module: the hourglass builds it for its pruning schedule")
        stages = [(int(layer), int(tokens)) for layer, tokens in stages]
        if stages and policy is None:
            raise ValueError(f"Hourglass: pruning stages {stages} given without a selection policy")
        if stages:
            # Probe the geometry (frames, blocks) with a throw-away build; the RNG is restored so the
            # real build initialises exactly as a single build would.
            with torch.random.fork_rng(devices=[]):
                probe = backbone()
                frames, num_blocks = probe.frames, probe.num_blocks
                del probe
            self.backbone = backbone(block_frames=block_schedule(frames, num_blocks, stages))
        else:
            self.backbone = backbone()
        self.policy = policy
        self.stages = stages
        self.keep_center = keep_center
        self.frames = self.backbone.frames
        self.num_joints = self.backbone.num_joints
        self.in_channels = self.backbone.in_channels
        self.center = (self.frames - 1) // 2
        dim = self.backbone.token_dim
        self.token_embeddings = (
            nn.ParameterList(nn.Parameter(torch.zeros(1, tokens, dim)) for _, tokens in stages)
            if token_embedding and stages else None
        )
        self.recoverer = recoverer(dim=dim, frames=self.frames) if recoverer is not None else None
        # built last, so that a model without an output head initialises exactly as before
        self.output_head = head(dim=dim, joints=self.num_joints) if head is not None else None

    def _prepare_input(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.frames or x.shape[2] != self.num_joints:
            raise ValueError(f"Hourglass expects keypoints (b, {self.frames}, {self.num_joints}, c) "
                             f"(b, frames, joints, channels), got shape {tuple(x.shape)}")
        channels = x.shape[3]
        if channels == self.in_channels:
            pass
        elif channels == 2 and self.in_channels == CONFIDENCE_CHANNELS:
            x = torch.cat([x, x.new_ones(x.shape[:3] + (1,))], dim=-1)  # documented rule: confidence 1
        else:
            raise ValueError(f"Hourglass: input has {channels} channels per joint, the backbone expects "
                             f"{self.in_channels}" + (" (or 2, completed with confidence 1)"
                                                      if self.in_channels == CONFIDENCE_CHANNELS else ""))
        if self._should_check_finite(x):
            require_finite(x, "Hourglass input keypoints")
        return x

    def _should_check_finite(self, x: Tensor) -> bool:
        """The NaN/inf check reads a result back to the host: free for CPU tensors, a synchronisation
        per forward on an accelerator, and a graph break under ``torch.compile``. So it runs on CPU
        inputs when not compiling (``check_finite=None``), always (True) or never (False). The entry
        points (data sources, ``hotpose.infer``'s keypoint loading) validate before any device copy."""
        if self.check_finite is not None:
            return self.check_finite
        return x.device.type == "cpu" and not torch.compiler.is_compiling()

    def _check_kept(self, kept: Sequence[Tensor], b: int, frame_counts: list[int]) -> None:
        if len(kept) != len(self.stages):
            raise ValueError(f"Hourglass: kept has {len(kept)} entries, the model has {len(self.stages)} "
                             "pruning stages")
        for s, ((_, tokens), sel, f) in enumerate(zip(self.stages, kept, frame_counts)):
            if tuple(sel.shape) != (b, tokens) or sel.dtype != torch.int64:
                raise ValueError(f"Hourglass: kept[{s}] must be int64 ({b}, {tokens}), got {sel.dtype} "
                                 f"{tuple(sel.shape)}")
            if bool((sel < 0).any()) or bool((sel >= f).any()) or bool((sel[:, 1:] <= sel[:, :-1]).any()):
                raise ValueError(f"Hourglass: kept[{s}] must be strictly increasing indices in [0, {f})")

    def forward(self, x: Tensor, kept: Sequence[Tensor] | None = None) -> HourglassOutput:
        """``x (b, F, 17, cin)`` keypoints → :class:`HourglassOutput`; ``kept`` reuses a selection."""
        x = self._prepare_input(x)
        b = x.shape[0]
        stage_at = {layer: s for s, (layer, _) in enumerate(self.stages)}
        if kept is not None:
            counts = [self.frames] + [tokens for _, tokens in self.stages[:-1]]
            self._check_kept(kept, b, counts)
        frame_index = torch.arange(self.frames, device=x.device).expand(b, self.frames)
        selections: list[Tensor] = []

        t = self.backbone.embed(x)
        for i in range(self.backbone.num_blocks):
            s = stage_at.get(i)
            if s is not None:
                if kept is None:
                    sel = self.policy.select(self.backbone.frame_features(t), self.stages[s][1],
                                             self._center_position(frame_index, first=s == 0))
                else:
                    sel = kept[s].to(x.device)
                t = gather_frames(t, sel)
                frame_index = gather_frames(frame_index, sel)
                if self.token_embeddings is not None:
                    t = t + self.token_embeddings[s][:, :, None, :]
                selections.append(sel)
            t = self.backbone.forward_block(i, t)
        t = self.backbone.norm(t)

        reused_centre_check = self.keep_center and kept is not None and self.stages
        if reused_centre_check and not bool((frame_index == self.center).any(dim=1).all()):
            raise ValueError(f"Hourglass: the passed kept indices drop the centre frame {self.center}")
        if self.recoverer is not None:
            t = self.recoverer(t, frame_index, self.frames)
            if t.shape[1] == self.frames:
                frame_index = torch.arange(self.frames, device=x.device).expand(b, self.frames)
            elif t.shape[1] != frame_index.shape[1]:
                raise ValueError(f"Hourglass: recoverer returned {t.shape[1]} frames, expected {self.frames} "
                                 f"or the {frame_index.shape[1]} kept")
        pose, logits = self._head(t)
        return HourglassOutput(pose, frame_index.contiguous(), selections, logits)

    def _head(self, t: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.output_head is None:
            return self.backbone.head(t), None
        out = self.output_head(t)
        return (out, None) if isinstance(out, Tensor) else (out[0], out[1])

    def head_terms(self, out: HourglassOutput, target: Tensor, valid: Tensor | None = None
                   ) -> dict[str, tuple[float, Tensor]]:
        """Extra training terms ``{name: (weight, value)}`` of the output head (e.g. the token head's
        cross-entropy on ground-truth codes) for ``target (b, f_out, 17, 3)`` at the output frames; {} if none."""
        terms = getattr(self.output_head, "loss_terms", None)
        if terms is None or out.logits is None:
            return {}
        return terms(out.logits, target, valid)

    def _center_position(self, frame_index: Tensor, first: bool) -> int | Tensor | None:
        """Where the centre frame sits in the current (possibly pruned) sequence; None without keep_center."""
        if not self.keep_center:
            return None
        if first:
            return self.center
        return (frame_index == self.center).long().argmax(dim=1)
