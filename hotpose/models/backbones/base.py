"""The seams every backbone exposes, so that pruning and recovery never live in a backbone file.

A backbone is a video pose transformer cut into four pieces that the generic
:class:`hotpose.models.hourglass.Hourglass` runs in order::

    tokens = backbone.embed(x)                     # (b, f, j, cin) -> (b, f, n, c)
    for i in range(backbone.num_blocks):
        (prune here if a pruning stage is placed before block i)
        tokens = backbone.forward_block(i, tokens) # (b, f_i, n, c) -> same layout
    tokens = backbone.norm(tokens)                 # last norm before recovery
    (recover here: (b, k, n, c) -> (b, F, n, c))
    pose = backbone.head(tokens)                   # (b, f, n, c) -> (b, f, 17, 3)

Token tensors always have time on dim 1 and a "token group" on dim 2 (the joints for MixSTE,
MotionBERT and MotionAGFormer; the three hypotheses for MHFormer). The number of frames may change
between blocks (that is what pruning does); a backbone whose modules are sized by the sequence length
(MotionAGFormer's temporal-GCN BatchNorm) reads ``block_frames[i]`` at construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class Backbone(nn.Module):
    """Base class of the seams. Subclasses set the attributes below in ``__init__``.

    Attributes:
        frames: receptive field / full clip length ``F`` the backbone was built for.
        num_joints: joints in and out (17).
        in_channels: input channels per joint (2 = x, y; 3 = x, y, confidence).
        token_dim: channel width ``c`` of the token tensors seen by pruners and recoverers.
        paper_prune: the HoT paper's ``(layer, tokens)`` for this backbone (config default only).
    """

    frames: int
    num_joints: int
    in_channels: int
    token_dim: int

    def __init__(self, block_frames: Sequence[int] | None = None) -> None:
        super().__init__()
        self._block_frames = list(block_frames) if block_frames is not None else None

    def block_frames(self, i: int) -> int:
        """Frames block ``i`` sees (``frames`` unless the hourglass prunes before it)."""
        return self.frames if self._block_frames is None else self._block_frames[i]

    @property
    def num_blocks(self) -> int:
        raise NotImplementedError

    def check_input(self, x: Tensor) -> None:
        """Refuse keypoints that are not ``(b, frames, num_joints, in_channels)``, naming what was found."""
        expected = (self.frames, self.num_joints, self.in_channels)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"{type(self).__name__}.embed expects input (b, {self.frames}, {self.num_joints}, "
                f"{self.in_channels}) (b, frames, joints, channels), got shape {tuple(x.shape)}"
            )

    def embed(self, x: Tensor) -> Tensor:
        """``(b, f, j, cin)`` keypoints → ``(b, f, n, c)`` tokens."""
        raise NotImplementedError

    def forward_block(self, i: int, x: Tensor) -> Tensor:
        """Run block ``i`` on ``(b, f_i, n, c)`` tokens."""
        raise NotImplementedError

    def norm(self, x: Tensor) -> Tensor:
        """Final normalisation before recovery (identity unless the backbone has one)."""
        return x

    def frame_features(self, x: Tensor) -> Tensor:
        """One feature vector per frame for token selection: ``(b, f, n, c)`` → ``(b, f, d)``.

        The default is the mean over the token group (HoT's joint pooling); MHFormer overrides it
        with the concatenation of its hypotheses, as the official TPC does.
        """
        # The mean is taken as the official code takes it (average pooling over a (b, f*c, n) view):
        # another summation order moves the features by ~1e-7, enough to flip the frames that
        # TPC's official 1e-6 tie noise decides. The memory layout of x matters too: a backbone whose
        # official tokens are laid out otherwise at this point passes that layout (MixSTE).
        b, f, n, c = x.shape
        pooled = F.adaptive_avg_pool1d(rearrange(x, "b f n c -> b (f c) n"), 1)
        return pooled.reshape(b, f, c)

    def head(self, x: Tensor) -> Tensor:
        """``(b, f, n, c)`` tokens → ``(b, f, 17, 3)`` root-relative 3D joints (metres)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """The unpruned backbone alone (what the official baseline class computes)."""
        t = self.embed(x)
        for i in range(self.num_blocks):
            t = self.forward_block(i, t)
        return self.head(self.norm(t))
