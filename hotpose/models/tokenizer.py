"""A VQ-VAE pose tokenizer over single-frame 17-joint 3D poses (TokenHMR's stage 1, for H36M-17).

The 17 joints are read as a 1-D sequence (VideoPose3D joint order) and encoded by 1-D convolutions into
``tokens`` latent vectors of ``code_dim`` channels; each is replaced by its nearest entry of a codebook of
``codebook_size`` codes::

    pose (b, 17, 3) --encode--> z (b, m, d) --quantise--> z_q (b, m, d) --decode--> pose (b, 17, 3)

Encoder: Conv1d(3→w) → resample the joint axis 17 → 2m → Conv1d → strided Conv1d (2m → m) → residual
dilated blocks → Conv1d(w→d). Decoder: the mirror image (residual blocks, resample m → 17, Conv1d(w→3)).

Two input representations (``representation``):

- ``positions``: root-relative joint positions in metres (root row 0).
- ``bones``: the unit direction of each bone (row ``j`` = joint ``j`` minus its parent; row 0 is 0); the 16
  bone lengths are *not* quantised: they pass around the bottleneck and rebuild the pose by forward
  kinematics, so the codebook only has to describe the orientation of the limbs.

The quantiser (:class:`EMAQuantizer`) keeps its codebook as buffers updated by exponential moving averages
of the encoder outputs assigned to each code (no codebook gradient), re-seeds codes whose EMA count falls
below ``dead_threshold`` with random current encoder outputs, is initialised from the first training batch,
and passes gradients to the encoder by the straight-through estimator. Its commitment loss
``mean((z - sg(z_q))²)`` keeps the encoder near its codes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hotpose.data.skeleton import NUM_JOINTS, PARENTS, ROOT

REPRESENTATIONS = ("positions", "bones")
#: the parent of every joint but the root, in the order of ``PARENTS`` (parents always come first)
_BONES = tuple(j for j in range(NUM_JOINTS) if PARENTS[j] >= 0)


# ------------------------------------------------------------------------------------- pure functions

def nearest_code(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest code (squared L2) of every row: ``z (n, d)``, ``codebook (k, d)`` → ``(n,)`` int64."""
    if z.ndim != 2 or codebook.ndim != 2 or z.shape[1] != codebook.shape[1]:
        raise ValueError(f"nearest_code needs z (n, d) and codebook (k, d); got {tuple(z.shape)} and "
                         f"{tuple(codebook.shape)}")
    # ||z||² is the same for every code of a row: only -2 z·e + ||e||² decides the argmin
    distance = codebook.pow(2).sum(dim=1)[None, :] - 2.0 * z @ codebook.t()
    return distance.argmin(dim=1)


def ema_update(count: Tensor, total: Tensor, z: Tensor, index: Tensor, decay: float) -> tuple[Tensor, Tensor]:
    """One EMA step of the per-code statistics.

    ``count (k,)`` ← ``decay · count + (1 - decay) · n_k`` and ``total (k, d)`` ← ``decay · total +
    (1 - decay) · Σ_{i: index_i = k} z_i``, where ``n_k`` is how many rows of ``z (n, d)`` chose code ``k``.
    The code is then ``total / count``.
    """
    onehot = F.one_hot(index, count.shape[0]).to(z.dtype)  # (n, k)
    return (decay * count + (1.0 - decay) * onehot.sum(dim=0),
            decay * total + (1.0 - decay) * onehot.t() @ z)


def perplexity(index: Tensor, codebook_size: int) -> Tensor:
    """``exp(entropy)`` of the code histogram of ``index``: 1 when one code is used, k when all are equally."""
    p = torch.bincount(index.flatten(), minlength=codebook_size).float()
    p = p / p.sum().clamp_min(1.0)
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


def bone_directions(pose: Tensor) -> tuple[Tensor, Tensor]:
    """``pose (..., 17, 3)`` → unit bone directions ``(..., 17, 3)`` (row 0 = 0) and lengths ``(..., 16)``."""
    parents = torch.tensor([max(p, 0) for p in PARENTS], device=pose.device)
    bones = pose - pose[..., parents, :]
    lengths = torch.linalg.vector_norm(bones, dim=-1)
    directions = bones / lengths.clamp_min(1e-8)[..., None]
    directions[..., ROOT, :] = 0
    return directions, lengths[..., list(_BONES)]


def forward_kinematics(directions: Tensor, lengths: Tensor) -> Tensor:
    """Root-relative pose ``(..., 17, 3)`` from directions ``(..., 17, 3)`` (normalised here) and lengths
    ``(..., 16)`` (in the order of the non-root joints)."""
    unit = directions / torch.linalg.vector_norm(directions, dim=-1, keepdim=True).clamp_min(1e-8)
    joints = [unit.new_zeros(unit.shape[:-2] + (3,))] * NUM_JOINTS
    for b, j in enumerate(_BONES):
        joints[j] = joints[PARENTS[j]] + lengths[..., b, None] * unit[..., j, :]
    return torch.stack(joints, dim=-2)


# ----------------------------------------------------------------------------------------- quantiser

class QuantizerOutput(NamedTuple):
    """``quantized (..., d)`` with straight-through gradients, ``index (...)`` int64, the scalar
    ``commitment`` loss and the batch's code ``perplexity``."""

    quantized: Tensor
    index: Tensor
    commitment: Tensor
    perplexity: Tensor


class EMAQuantizer(nn.Module):
    """Nearest-code vector quantiser with an EMA codebook and dead-code reset (module docstring).

    Args:
        codebook_size: number of codes ``k``.
        code_dim: code width ``d``.
        decay: EMA factor ``mu`` (TokenHMR / T2M-GPT: 0.99).
        dead_threshold: a code whose EMA count is below this is re-seeded with a random encoder output.
    """

    def __init__(self, codebook_size: int, code_dim: int, decay: float = 0.99, dead_threshold: float = 1.0) -> None:
        super().__init__()
        if codebook_size < 2 or code_dim < 1:
            raise ValueError(f"EMAQuantizer needs codebook_size >= 2 and code_dim >= 1, got {codebook_size}, "
                             f"{code_dim}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMAQuantizer decay must be in (0, 1), got {decay}")
        self.codebook_size, self.code_dim = int(codebook_size), int(code_dim)
        self.decay, self.dead_threshold = float(decay), float(dead_threshold)
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim) * 0.01)
        self.register_buffer("ema_count", torch.ones(codebook_size))
        self.register_buffer("ema_total", self.codebook.clone())
        self.register_buffer("initialised", torch.tensor(False))

    def lookup(self, index: Tensor) -> Tensor:
        """Codes of ``index (...)`` → ``(..., d)``."""
        return F.embedding(index, self.codebook)

    def soft_lookup(self, logits: Tensor, temperature: float = 1.0) -> Tensor:
        """Differentiable expected code ``softmax(logits / temperature) @ codebook``: ``(..., k)`` → ``(..., d)``."""
        if logits.shape[-1] != self.codebook_size:
            raise ValueError(f"logits have {logits.shape[-1]} classes, the codebook has {self.codebook_size}")
        return torch.softmax(logits / temperature, dim=-1) @ self.codebook.to(logits.dtype)

    def quantize(self, z: Tensor) -> Tensor:
        """Nearest code index of every vector ``z (..., d)`` → ``(...)`` (no update)."""
        return nearest_code(z.reshape(-1, self.code_dim), self.codebook.to(z.dtype)).reshape(z.shape[:-1])

    @torch.no_grad()
    def _random_rows(self, flat: Tensor, n: int) -> Tensor:
        rows = flat[torch.randint(0, flat.shape[0], (n,), device=flat.device)]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(rows, src=0)  # every rank must re-seed with the same vectors
        return rows

    @torch.no_grad()
    def _update(self, flat: Tensor, index: Tensor) -> None:
        count, total = ema_update(self.ema_count, self.ema_total, flat, index, self.decay)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # the EMA is linear: averaging the per-rank results = the EMA of the global batch (up to scale)
            world = torch.distributed.get_world_size()
            torch.distributed.all_reduce(count)
            torch.distributed.all_reduce(total)
            count, total = count / world, total / world
        dead = count < self.dead_threshold
        if bool(dead.any()):
            # a re-seeded code starts as if it held `dead_threshold` samples at a current encoder output
            seeds = self._random_rows(flat, int(dead.sum()))
            count[dead] = self.dead_threshold
            total[dead] = seeds * self.dead_threshold
        self.ema_count.copy_(count)
        self.ema_total.copy_(total)
        self.codebook.copy_(total / count[:, None])

    @torch.no_grad()
    def _initialise(self, flat: Tensor) -> None:
        seeds = self._random_rows(flat, self.codebook_size)
        self.codebook.copy_(seeds)
        self.ema_total.copy_(seeds)
        self.ema_count.fill_(1.0)
        self.initialised.fill_(True)

    def forward(self, z: Tensor) -> QuantizerOutput:
        """``z (..., d)`` → :class:`QuantizerOutput`; in training mode the codebook is updated first."""
        if z.shape[-1] != self.code_dim:
            raise ValueError(f"EMAQuantizer expects vectors of width {self.code_dim}, got shape {tuple(z.shape)}")
        flat = z.reshape(-1, self.code_dim)
        if self.training and not bool(self.initialised):
            self._initialise(flat.detach().float())
        index = nearest_code(flat.detach(), self.codebook.to(flat.dtype))
        if self.training:
            self._update(flat.detach().float(), index)
        codes = self.lookup(index).to(flat.dtype)
        commitment = F.mse_loss(flat, codes.detach())
        quantized = flat + (codes - flat).detach()  # straight-through: the encoder gets dL/dz_q
        return QuantizerOutput(quantized.reshape(z.shape), index.reshape(z.shape[:-1]), commitment,
                               perplexity(index, self.codebook_size))


# ---------------------------------------------------------------------------------------- networks

class ResidualConv1d(nn.Module):
    """``x + Conv1d(k1)(ReLU(Conv1d(k3, dilation)(ReLU(x))))`` on ``(b, c, l)``."""

    def __init__(self, width: int, dilation: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation)
        self.mix = nn.Conv1d(width, width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.mix(F.relu(self.conv(F.relu(x))))


def _residual_stack(width: int, depth: int) -> nn.Sequential:
    # dilations 3^(depth-1) ... 1: a growing-then-fine receptive field along the joint sequence
    return nn.Sequential(*(ResidualConv1d(width, 3 ** d) for d in reversed(range(depth))))


class Resample1d(nn.Module):
    """Linear interpolation of the sequence axis of ``(b, c, l)`` to ``length``."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.length = int(length)

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, size=self.length, mode="linear", align_corners=True)


class TokenizerOutput(NamedTuple):
    """``pose (b, 17, 3)`` reconstruction, ``index (b, m)`` codes, scalar ``commitment`` and ``perplexity``."""

    pose: Tensor
    index: Tensor
    commitment: Tensor
    perplexity: Tensor


class PoseTokenizer(nn.Module):
    """VQ-VAE over single-frame poses (module docstring).

    Args:
        tokens: tokens per pose ``m``.
        codebook_size: codes ``k``.
        code_dim: code width ``d``.
        width: channels of the convolutions.
        depth: residual blocks in the encoder and in the decoder.
        representation: ``positions`` or ``bones``.
        decay, dead_threshold: of the :class:`EMAQuantizer`.
        num_joints: joints of the skeleton (17).
    """

    def __init__(self, tokens: int = 17, codebook_size: int = 512, code_dim: int = 32, width: int = 64,
                 depth: int = 2, representation: str = "bones", decay: float = 0.99,
                 dead_threshold: float = 1.0, num_joints: int = NUM_JOINTS) -> None:
        super().__init__()
        if representation not in REPRESENTATIONS:
            raise ValueError(f"representation must be one of {REPRESENTATIONS}, got {representation!r}")
        if num_joints != NUM_JOINTS:
            raise ValueError(f"PoseTokenizer is built for the {NUM_JOINTS}-joint skeleton, got num_joints={num_joints}")
        if tokens < 1 or width < 1 or depth < 0:
            raise ValueError(f"PoseTokenizer needs tokens >= 1, width >= 1, depth >= 0; got {tokens}, {width}, {depth}")
        self.config = {"tokens": int(tokens), "codebook_size": int(codebook_size), "code_dim": int(code_dim),
                       "width": int(width), "depth": int(depth), "representation": representation,
                       "decay": float(decay), "dead_threshold": float(dead_threshold), "num_joints": int(num_joints)}
        self.tokens, self.code_dim, self.codebook_size = int(tokens), int(code_dim), int(codebook_size)
        self.num_joints, self.representation = num_joints, representation
        self.encoder = nn.Sequential(
            nn.Conv1d(3, width, 3, padding=1), nn.ReLU(),
            Resample1d(2 * tokens), nn.Conv1d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv1d(width, width, 4, stride=2, padding=1),  # 2m → m
            _residual_stack(width, depth), nn.ReLU(),
            nn.Conv1d(width, code_dim, 1),
        )
        self.quantizer = EMAQuantizer(codebook_size, code_dim, decay, dead_threshold)
        self.decoder = nn.Sequential(
            nn.Conv1d(code_dim, width, 3, padding=1), nn.ReLU(),
            _residual_stack(width, depth), nn.ReLU(),
            Resample1d(num_joints), nn.Conv1d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv1d(width, 3, 3, padding=1),
        )

    # ----------------------------------------------------------------------------------- pieces

    def _check_pose(self, pose: Tensor) -> None:
        if pose.ndim < 2 or tuple(pose.shape[-2:]) != (self.num_joints, 3):
            raise ValueError(f"PoseTokenizer expects poses (..., {self.num_joints}, 3), got {tuple(pose.shape)}")

    def encode(self, pose: Tensor) -> Tensor:
        """Root-relative poses ``(..., 17, 3)`` → continuous latents ``(..., m, d)``."""
        self._check_pose(pose)
        lead = pose.shape[:-2]
        x = pose.reshape(-1, self.num_joints, 3)
        x = x - x[:, ROOT : ROOT + 1]
        if self.representation == "bones":
            x = bone_directions(x)[0]
        z = self.encoder(x.transpose(1, 2)).transpose(1, 2)  # (n, m, d)
        return z.reshape(*lead, self.tokens, self.code_dim)

    def decode(self, codes: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Code vectors ``(..., m, d)`` → root-relative poses ``(..., 17, 3)``; ``bones`` needs the bone
        ``lengths (..., 16)``."""
        if tuple(codes.shape[-2:]) != (self.tokens, self.code_dim):
            raise ValueError(f"decode expects codes (..., {self.tokens}, {self.code_dim}), got {tuple(codes.shape)}")
        lead = codes.shape[:-2]
        out = self.decoder(codes.reshape(-1, self.tokens, self.code_dim).transpose(1, 2)).transpose(1, 2)
        out = out.reshape(*lead, self.num_joints, 3)
        if self.representation == "bones":
            if lengths is None or tuple(lengths.shape) != tuple(lead) + (len(_BONES),):
                got = None if lengths is None else tuple(lengths.shape)
                raise ValueError(f"the bones tokenizer decodes with bone lengths {tuple(lead) + (len(_BONES),)}, "
                                 f"got {got}")
            return forward_kinematics(out, lengths)
        root_mask = torch.ones(self.num_joints, 1, device=out.device, dtype=out.dtype)
        root_mask[ROOT] = 0
        return out * root_mask

    def decode_index(self, index: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Hard decoding: code indices ``(..., m)`` → poses ``(..., 17, 3)``."""
        return self.decode(self.quantizer.lookup(index), lengths)

    def decode_logits(self, logits: Tensor, lengths: Tensor | None = None, temperature: float = 1.0) -> Tensor:
        """Soft decoding: logits ``(..., m, k)`` → ``softmax @ codebook`` → poses ``(..., 17, 3)``."""
        return self.decode(self.quantizer.soft_lookup(logits, temperature), lengths)

    def tokenize(self, pose: Tensor) -> Tensor:
        """Code indices ``(..., m)`` of poses ``(..., 17, 3)`` (no codebook update)."""
        return self.quantizer.quantize(self.encode(pose))

    def forward(self, pose: Tensor) -> TokenizerOutput:
        """Encode, quantise (updating the codebook in training mode) and decode ``pose (b, 17, 3)``."""
        z = self.encode(pose)
        q = self.quantizer(z)
        lengths = bone_directions(pose)[1] if self.representation == "bones" else None
        return TokenizerOutput(self.decode(q.quantized, lengths), q.index, q.commitment, q.perplexity)


# ------------------------------------------------------------------------------------ checkpoints

def tokenizer_state(tokenizer: PoseTokenizer) -> dict[str, Any]:
    """What :func:`load_tokenizer` reads: ``{"config": ..., "state_dict": ...}``."""
    return {"config": dict(tokenizer.config), "state_dict": tokenizer.state_dict()}


def build_tokenizer(config: Mapping[str, Any] | None = None) -> PoseTokenizer:
    """A :class:`PoseTokenizer` from its keyword arguments (``None``: the defaults)."""
    config = dict(config or {})
    try:
        return PoseTokenizer(**config)
    except TypeError as err:
        raise ValueError(f"bad tokenizer config {config}: {err}") from err


def load_tokenizer(path: str | Path) -> PoseTokenizer:
    """A trained tokenizer from ``tokenizer.pt`` (:func:`tokenizer_state`) or from a Lightning checkpoint of
    :class:`hotpose.tokenizer_lit.TokenizerModule` (``python -m hotpose.train task=tokenizer``)."""
    from hotpose.checkpoints import CheckpointError, load_torch_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"tokenizer checkpoint {path} does not exist (train one with "
                         "`python -m hotpose.train task=tokenizer`)")
    blob = load_torch_file(path, what="tokenizer checkpoint")
    if isinstance(blob, dict) and "config" in blob and "state_dict" in blob:
        config, state = blob["config"], blob["state_dict"]
    elif isinstance(blob, dict) and "state_dict" in blob and "tokenizer" in blob.get("hyper_parameters", {}):
        config = blob["hyper_parameters"]["tokenizer"]
        state = {k.removeprefix("tokenizer."): v for k, v in blob["state_dict"].items() if k.startswith("tokenizer.")}
    else:
        raise CheckpointError(f"{path} is neither a tokenizer.pt nor a checkpoint of `task=tokenizer` (no 'config' + "
                         "'state_dict', nor hyper_parameters.tokenizer)")
    tokenizer = build_tokenizer(config)
    missing, unexpected = tokenizer.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: tokenizer weights do not match its config {config}: missing {missing}, "
                         f"unexpected {unexpected}")
    if not bool(tokenizer.quantizer.initialised):
        warnings.warn(f"{path}: the tokenizer's codebook was never initialised (was it trained?)", stacklevel=2)
    return tokenizer
