"""Load the HoT authors' released checkpoints (state_dicts of the official model classes) into hotpose.

The official repository (NationalGAILab/HoT) has one model class per file; ``variant`` is that file's
name::

    mixste  hot_mixste  tpc_mixste   mhformer  tpc_mhformer   motionbert  hot_motionbert
    motionagformer  hot_motionagformer

``load_official(path_or_state_dict, variant, **overrides)`` returns an :class:`OfficialModel` in eval
mode: a hotpose :class:`~hotpose.models.hourglass.Hourglass` built from the matching config groups
(backbone, pruner, recoverer, pipeline), holding the checkpoint's tensors. Its ``forward(x)`` computes
what the official class computes; for ``tpc_*`` that is the prediction at the kept frames (the first
thing the official forward returns), and ``forward_output(x)`` also gives the kept indices.

What the file decides and what the caller decides:

* Everything the tensors' shapes show is read from them: width, depth, frames, input channels, MLP
  widths, joints, the kept-token count of ``hot_*`` (``pos_embed_token``) and, for
  ``hot_motionagformer``, the pruning layer (its temporal-GCN BatchNorms switch size there). Narrow
  research configurations therefore load as they are.
* The rest keeps the official value unless passed as a keyword: ``layer_index`` (hot_mixste 3,
  tpc_mixste 7, tpc_mhformer 1, hot_motionbert 1), ``token_num`` of the TPC-only variants (tpc_mixste
  61, tpc_mhformer 117), attention ``heads``, and ``tie_break`` (``"official"``: the official random
  1e-6 density perturbation, reproducible by seeding torch right before the forward;
  ``"deterministic"``: hotpose's index rule).
* ``frames`` / ``token_num`` passed as keywords are checked against the file: a mismatch is refused
  with the expected and the found value (the official loader silently keeps what fits).
* ``tpc_mixste`` / ``tpc_mhformer`` files have exactly the keys of ``mixste`` / ``mhformer``: no file
  can tell them apart, the variant name decides (the weights differ: they were trained with pruning).
  ``hot_*`` files have the baseline keys plus ``pos_embed_token``, ``x_token`` and
  ``cross_attention.*``; loading a file as the wrong one of the two is refused (extra or missing keys).

Accepted inputs: a bare state_dict, a path to a ``.pth``/``.bin``/``.ckpt`` file, and the common
wrappers (``{"model_pos": ...}`` as in VideoPose3D/MixSTE/MotionBERT releases, ``{"state_dict": ...}``,
``{"model": ...}``), with or without DataParallel ``module.`` prefixes.

``hotpose_checkpoint(model)`` turns the result into hotpose's checkpoint format (see
:mod:`hotpose.convert`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from hotpose.models.layers import official_kernels
from hotpose.models.pruners import TIE_BREAKS

# variant -> (backbone family, pruning kind): "none", "hot" (TPC + TRA recovery, seq2seq) or
# "tpc" (TPC keeping the centre frame, no recovery, seq2frame).
VARIANTS: dict[str, tuple[str, str]] = {
    "mixste": ("mixste", "none"),
    "hot_mixste": ("mixste", "hot"),
    "tpc_mixste": ("mixste", "tpc"),
    "mhformer": ("mhformer", "none"),
    "tpc_mhformer": ("mhformer", "tpc"),
    "motionbert": ("motionbert", "none"),
    "hot_motionbert": ("motionbert", "hot"),
    "motionagformer": ("motionagformer", "none"),
    "hot_motionagformer": ("motionagformer", "hot"),
}

# Official values that no tensor shows (hard-coded in, or defaults of, the official files).
OFFICIAL_LAYER_INDEX = {"hot_mixste": 3, "tpc_mixste": 7, "tpc_mhformer": 1, "hot_motionbert": 1,
                        "hot_motionagformer": 7}
OFFICIAL_TPC_TOKENS = {"tpc_mixste": 61, "tpc_mhformer": 117}
OFFICIAL_HEADS = {"mixste": 8, "mhformer": 8, "motionbert": 8, "motionagformer": 4}
OFFICIAL_MHG_HEADS = 9
OFFICIAL_TPC_K = 2  # neighbours in the DPC-kNN density (the frame itself included)

# Keys only HoT (TPC + TRA) files have.
HOT_KEYS = ("pos_embed_token", "x_token")
HOT_PREFIX = "cross_attention."

# One key that only a given family's files have, to name the family of a wrong file.
FAMILY_SIGNATURES = {
    "mixste": "Spatial_patch_to_embedding.weight",
    "mhformer": "Transformer_hypothesis.norm.weight",
    "motionbert": "blocks_st.0.norm1_s.weight",
    "motionagformer": "layers.0.fusion.weight",
}

WRAPPER_KEYS = ("model_pos", "state_dict", "model")
DATA_PARALLEL_PREFIX = "module."

# Where the pieces sit in hotpose's Hourglass state_dict.
BACKBONE_PREFIX = "backbone."
PRUNE_EMBED_KEY = "token_embeddings.0"
RECOVERER_PREFIX = "recoverer."
RECOVERER_QUERIES = "queries"
RECOVERER_ATTENTION = "cross_attention."

# hotpose backbone classes and the official values of their arguments that no tensor shows.
NET_TARGETS = {
    "mixste": "hotpose.models.backbones.mixste.MixSTE",
    "mhformer": "hotpose.models.backbones.mhformer.MHFormer",
    "motionbert": "hotpose.models.backbones.motionbert.MotionBERT",
    "motionagformer": "hotpose.models.backbones.motionagformer.MotionAGFormer",
}
OFFICIAL_NET_SETTINGS: dict[str, dict[str, Any]] = {
    "mixste": dict(drop=0.0, attn_drop=0.0, drop_path=0.1, block_norm_eps=1e-6, head_norm_eps=1e-5),
    "mhformer": dict(mhg_heads=OFFICIAL_MHG_HEADS, drop=0.1, drop_path=0.2),
    "motionbert": dict(drop=0.0, attn_drop=0.0, drop_path=0.0, norm_eps=1e-6, init_std=0.02),
    "motionagformer": dict(drop=0.0, attn_drop=0.0, drop_path=0.0, layer_scale_init=1e-5, neighbour_num=4,
                           symmetric_skeleton=False, out_channels=3),
}
# The paper's (layer, tokens) per backbone: config defaults of the baselines' backbone group.
PAPER_PRUNE = {"mixste": (3, 81), "mhformer": (1, 117), "motionbert": (1, 81), "motionagformer": (7, 81)}
# Official TRA initialisation (only matters for training from the converted file).
TRA_INIT_STD = {"mixste": None, "motionbert": 0.02, "motionagformer": None}


# ------------------------------------------------------------------------------------------------
# Reading a file / a state_dict


def read_state_dict(source: str | Path | Mapping[str, Any]) -> dict[str, Tensor]:
    """A bare ``{key: tensor}`` dict from a path or a (wrapped) state_dict; ``module.`` prefixes removed."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"official checkpoint {path} does not exist")
        from hotpose.checkpoints import load_torch_file

        # weights only, plus numpy arrays (the RNG state some MixSTE-style files carry), rebuilt without code
        obj = load_torch_file(path, what="official checkpoint", allow_numpy=True)
        where = str(path)
    elif isinstance(source, Mapping):
        obj, where = source, "state_dict"
    else:
        raise ValueError(f"expected a path or a state_dict mapping, got {type(source).__name__}")
    state = _unwrap(obj, where)
    keys = list(state)
    if keys and all(k.startswith(DATA_PARALLEL_PREFIX) for k in keys):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def _unwrap(obj: Any, where: str) -> dict[str, Tensor]:
    path = []
    while isinstance(obj, Mapping) and not all(isinstance(v, Tensor) for v in obj.values()):
        inner = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            bad = {k: type(v).__name__ for k, v in obj.items() if not isinstance(v, Tensor)}
            raise ValueError(
                f"{where}{''.join(f'[{p!r}]' for p in path)}: not a state_dict (non-tensor entries "
                f"{dict(list(bad.items())[:5])}) and none of the wrapper keys {WRAPPER_KEYS} holds one"
            )
        path.append(inner)
        obj = obj[inner]
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(f"{where}: no tensors found")
    return dict(obj)


# ------------------------------------------------------------------------------------------------
# What the shapes say


@dataclass
class Found:
    """Hyper-parameters read off a checkpoint's shapes.

    ``net`` holds backbone constructor arguments; ``frames_key``/``tokens_key`` name the tensor that
    shows the value, for error messages.
    """

    net: dict[str, Any]
    frames: int
    frames_key: str
    tokens: int | None = None
    tokens_key: str | None = None
    layer_index: int | None = None
    tra_qkv_bias: bool | None = None


def _shape(state: Mapping[str, Tensor], key: str, variant: str, ndim: int) -> tuple[int, ...]:
    if key not in state:
        raise ValueError(f"not a {variant} checkpoint: key {key!r} is missing")
    shape = tuple(state[key].shape)
    if len(shape) != ndim:
        raise ValueError(f"{variant} checkpoint: {key!r} has shape {shape}, expected {ndim} dimensions")
    return shape


def _count(state: Mapping[str, Tensor], prefix: str, variant: str) -> int:
    """Number of numbered children ``prefix.<i>.…``; they must be 0..n-1."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    found = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if not found:
        raise ValueError(f"not a {variant} checkpoint: no {prefix}.<i>.* keys")
    if found != set(range(len(found))):
        raise ValueError(f"{variant} checkpoint: {prefix}.<i> indices {sorted(found)} are not "
                         f"0..{len(found) - 1}")
    return len(found)


def _infer_mixste(state: Mapping[str, Tensor], variant: str) -> Found:
    dim, cin = _shape(state, "Spatial_patch_to_embedding.weight", variant, 2)
    _, joints, _ = _shape(state, "Spatial_pos_embed", variant, 3)
    _, frames, _ = _shape(state, "Temporal_pos_embed", variant, 3)
    mlp, _ = _shape(state, "STEblocks.0.mlp.fc1.weight", variant, 2)
    net = dict(frames=frames, in_channels=cin, num_joints=joints, dim=dim,
               depth=_count(state, "STEblocks", variant), mlp_hidden=mlp,
               qkv_bias="STEblocks.0.attn.qkv.bias" in state)
    return Found(net, frames, "Temporal_pos_embed")


def _infer_mhformer(state: Mapping[str, Tensor], variant: str) -> Found:
    (frames,) = _shape(state, "norm_1.weight", variant, 1)
    _, tokens, _ = _shape(state, "Transformer_encoder_1.pos_embed", variant, 3)
    out, three_dim, _ = _shape(state, "regression.1.weight", variant, 3)
    joints = out // 3
    if tokens % joints:
        raise ValueError(f"{variant} checkpoint: {tokens} MHG tokens are not a multiple of {joints} joints")
    short = "embedding_1.0.weight" in state
    if short != (frames <= 27):
        raise ValueError(
            f"{variant} checkpoint: {frames} frames but the embeddings are "
            f"{'Conv+BN' if short else 'Conv only'}; the official layout has Conv+BN exactly when "
            "frames <= 27"
        )
    mhg_mlp, _ = _shape(state, "Transformer_encoder_1.blocks.0.mlp.fc1.weight", variant, 2)
    mlp, _ = _shape(state, "Transformer_hypothesis.SHR_blocks.0.mlp.fc1.weight", variant, 2)
    shr = _count(state, "Transformer_hypothesis.SHR_blocks", variant)
    if shr != 2 or _count(state, "Transformer_hypothesis.CHI_blocks", variant) != 1:
        raise ValueError(f"{variant} checkpoint: expected 2 SHR blocks and 1 CHI block, found {shr} SHR")
    net = dict(frames=frames, in_channels=tokens // joints, num_joints=joints, dim=three_dim // 3,
               mlp_hidden=mlp, mhg_depth=_count(state, "Transformer_encoder_1.blocks", variant),
               mhg_mlp_ratio=mhg_mlp / frames)
    return Found(net, frames, "norm_1.weight")


def _infer_motionbert(state: Mapping[str, Tensor], variant: str) -> Found:
    dim, cin = _shape(state, "joints_embed.weight", variant, 2)
    _, joints, _ = _shape(state, "pos_embed", variant, 3)
    _, frames, _, _ = _shape(state, "temp_embed", variant, 4)
    mlp, _ = _shape(state, "blocks_st.0.mlp_s.fc1.weight", variant, 2)
    rep, _ = _shape(state, "pre_logits.fc.weight", variant, 2)
    net = dict(frames=frames, in_channels=cin, num_joints=joints, dim=dim,
               depth=_count(state, "blocks_st", variant), mlp_hidden=mlp, dim_rep=rep,
               qkv_bias="blocks_st.0.attn_s.qkv.bias" in state)
    return Found(net, frames, "temp_embed")


def _infer_motionagformer(state: Mapping[str, Tensor], variant: str) -> Found:
    dim, cin = _shape(state, "joints_embed.weight", variant, 2)
    _, joints, _ = _shape(state, "pos_embed", variant, 3)
    mlp, _ = _shape(state, "layers.0.att_spatial.mlp.fc1.weight", variant, 2)
    rep, _ = _shape(state, "rep_logit.fc.weight", variant, 2)
    depth = _count(state, "layers", variant)
    sizes = [_shape(state, f"layers.{i}.graph_temporal.mixer.batch_norm.weight", variant, 1)[0]
             for i in range(depth)]
    net = dict(in_channels=cin, num_joints=joints, dim=dim, depth=depth, mlp_ratio=mlp / dim,
               dim_rep=rep, qkv_bias="layers.0.att_spatial.mixer.qkv.bias" in state)
    found = Found(net, sizes[0], "layers.0.graph_temporal.mixer.batch_norm.weight")
    if variant.startswith("hot_"):
        _, frames, _ = _shape(state, "x_token", variant, 3)
        found.frames, found.frames_key = frames, "x_token"
        # The temporal GCN's BatchNorm is sized by the frames its block sees: the first shorter block
        # is where the official model prunes.
        cut = next((i for i, n in enumerate(sizes) if n != frames), depth)
        found.layer_index = cut
        if sizes[:cut] != [frames] * cut or len(set(sizes[cut:])) > 1:
            raise ValueError(
                f"{variant} checkpoint: temporal-GCN BatchNorm sizes per layer {sizes} do not read as "
                f"{frames} frames, then one kept-token count from one layer on"
            )
    net["frames"] = found.frames
    return found


INFER: dict[str, Callable[[Mapping[str, Tensor], str], Found]] = {
    "mixste": _infer_mixste,
    "mhformer": _infer_mhformer,
    "motionbert": _infer_motionbert,
    "motionagformer": _infer_motionagformer,
}


# ------------------------------------------------------------------------------------------------
# Key maps: official key -> hotpose backbone key. First matching rule wins; a rule's replacement is
# a template (re.Match.expand) or a function of the match.

Rule = tuple[str, str | Callable[[re.Match[str]], str]]


def _minus1(m: re.Match[str], group: int) -> str:
    return str(int(m.group(group)) - 1)


_CHI_NORMS = {"1": "query_norms", "2": "key_norms", "3": "value_norms"}

KEY_RULES: dict[str, list[Rule]] = {
    "mixste": [
        (r"Spatial_patch_to_embedding\.(weight|bias)", r"joint_embed.\1"),
        (r"Spatial_pos_embed", "spatial_pos_embed"),
        (r"Temporal_pos_embed", "temporal_pos_embed"),
        (r"STEblocks\.(\d+)\.(.+)", r"spatial_blocks.\1.\2"),
        (r"TTEblocks\.(\d+)\.(.+)", r"temporal_blocks.\1.\2"),
        (r"Spatial_norm\.(weight|bias)", r"spatial_norm.\1"),
        (r"Temporal_norm\.(weight|bias)", r"temporal_norm.\1"),
        (r"head\.0\.(weight|bias)", r"head_norm.\1"),
        (r"head\.1\.(weight|bias)", r"head_proj.\1"),
    ],
    "mhformer": [
        (r"norm_([123])\.(weight|bias)", lambda m: f"mhg_norms.{_minus1(m, 1)}.{m.group(2)}"),
        (r"Transformer_encoder_([123])\.(.+)", lambda m: f"mhg_encoders.{_minus1(m, 1)}.{m.group(2)}"),
        (r"embedding_([123])\.(.+)", lambda m: f"embeddings.{_minus1(m, 1)}.{m.group(2)}"),
        (r"Transformer_hypothesis\.pos_embed_([123])", lambda m: f"pos_embeds.{_minus1(m, 1)}"),
        (r"Transformer_hypothesis\.SHR_blocks\.(\d+)\.norm1_([123])\.(.+)",
         lambda m: f"blocks.{m.group(1)}.attn_norms.{_minus1(m, 2)}.{m.group(3)}"),
        (r"Transformer_hypothesis\.SHR_blocks\.(\d+)\.attn_([123])\.(.+)",
         lambda m: f"blocks.{m.group(1)}.attns.{_minus1(m, 2)}.{m.group(3)}"),
        (r"Transformer_hypothesis\.SHR_blocks\.(\d+)\.norm2\.(.+)", r"blocks.\1.mlp_norm.\2"),
        (r"Transformer_hypothesis\.SHR_blocks\.(\d+)\.mlp\.(.+)", r"blocks.\1.mlp.\2"),
        # The single CHI block follows the two SHR blocks. norm3_<k><m>: hypothesis k's query (m=1),
        # key (m=2) and value (m=3) norms.
        (r"Transformer_hypothesis\.CHI_blocks\.0\.norm3_([123])([123])\.(.+)",
         lambda m: f"blocks.2.{_CHI_NORMS[m.group(2)]}.{_minus1(m, 1)}.{m.group(3)}"),
        (r"Transformer_hypothesis\.CHI_blocks\.0\.attn_([123])\.(.+)",
         lambda m: f"blocks.2.cross_attns.{_minus1(m, 1)}.{m.group(2)}"),
        (r"Transformer_hypothesis\.CHI_blocks\.0\.norm2\.(.+)", r"blocks.2.mlp_norm.\1"),
        (r"Transformer_hypothesis\.CHI_blocks\.0\.mlp\.(.+)", r"blocks.2.mlp.\1"),
        (r"Transformer_hypothesis\.norm\.(weight|bias)", r"final_norm.\1"),
        (r"regression\.0\.(.+)", r"regression_norm.\1"),
        (r"regression\.1\.(.+)", r"regression_conv.\1"),
    ],
    "motionbert": [
        (r"joints_embed\.(weight|bias)", r"joint_embed.\1"),
        (r"pos_embed", "spatial_pos_embed"),
        (r"temp_embed", "temporal_pos_embed"),
        (r"blocks_(st|ts)\.(\d+)\.(norm1|attn|norm2|mlp)_s\.(.+)", r"\1_blocks.\2.spatial.\3.\4"),
        (r"blocks_(st|ts)\.(\d+)\.(norm1|attn|norm2|mlp)_t\.(.+)", r"\1_blocks.\2.temporal.\3.\4"),
        (r"ts_attn\.(\d+)\.(weight|bias)", r"fusion.\1.\2"),
        (r"norm\.(weight|bias)", r"final_norm.\1"),
        (r"pre_logits\.fc\.(weight|bias)", r"pre_logits.fc.\1"),
        (r"head\.(weight|bias)", r"head_proj.\1"),
    ],
    "motionagformer": [
        (r"joints_embed\.(weight|bias)", r"joints_embed.\1"),
        (r"pos_embed", "pos_embed"),
        (r"layers\.(\d+)\.(.+)", r"blocks.\1.\2"),
        (r"norm\.(weight|bias)", r"final_norm.\1"),
        (r"rep_logit\.fc\.(weight|bias)", r"rep_logit.fc.\1"),
        (r"head\.(weight|bias)", r"pose_head.\1"),
    ],
}

# The HoT additions, the same in every hot_* file.
HOT_RULES: list[Rule] = [
    (r"pos_embed_token", PRUNE_EMBED_KEY),
    (r"x_token", RECOVERER_PREFIX + RECOVERER_QUERIES),
    (r"cross_attention\.(linear_q|linear_k|linear_v|proj)\.(weight|bias)",
     RECOVERER_PREFIX + RECOVERER_ATTENTION + r"\1.\2"),
]


def map_key(key: str, family: str, pruning: str) -> str | None:
    """The hotpose Hourglass key of an official key, or None when the variant has no such key."""
    rules = [(p, BACKBONE_PREFIX, r) for p, r in KEY_RULES[family]]
    if pruning == "hot":
        rules = [(p, "", r) for p, r in HOT_RULES] + rules
    for pattern, prefix, repl in rules:
        m = re.fullmatch(pattern, key)
        if m:
            return prefix + (repl(m) if callable(repl) else m.expand(repl))
    return None


# ------------------------------------------------------------------------------------------------
# Variant checks, settings, configs


def _variant(variant: str) -> tuple[str, str]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown official variant {variant!r}; expected one of {list(VARIANTS)}")
    return VARIANTS[variant]


def check_variant_keys(state: Mapping[str, Tensor], variant: str) -> None:
    """Refuse a file of another family, or a HoT file as a plain/TPC variant and vice versa."""
    family, pruning = _variant(variant)
    others = [f for f, key in FAMILY_SIGNATURES.items() if f != family and key in state]
    if FAMILY_SIGNATURES[family] not in state:
        what = f"a {others[0]}-family checkpoint" if others else "not an official HoT checkpoint"
        raise ValueError(f"{variant}: the file is {what} (key {FAMILY_SIGNATURES[family]!r} is missing; "
                         f"first keys: {list(state)[:4]})")
    hot_keys = sorted(k for k in state if k in HOT_KEYS or k.startswith(HOT_PREFIX))
    hot_file = f"hot_{family}"
    missing = [k for k in HOT_KEYS if k not in state]
    if not any(k.startswith(HOT_PREFIX) for k in state):
        missing.append(HOT_PREFIX + "*")
    if pruning == "hot" and missing:
        raise ValueError(
            f"{variant}: the file lacks the HoT keys {missing} (a {variant} file has pos_embed_token, "
            f"x_token and cross_attention.*); it looks like a {family} or tpc_{family} checkpoint, "
            "load it as that"
        )
    if pruning != "hot" and hot_keys:
        also = f" (no official {hot_file} class exists)" if hot_file not in VARIANTS else ""
        raise ValueError(
            f"{variant}: the file has the HoT keys {hot_keys[:4]}{'...' if len(hot_keys) > 4 else ''}, "
            f"which a {variant} file does not have; it is a {hot_file} checkpoint{also}"
        )


ALLOWED_OVERRIDES = ("frames", "token_num", "layer_index", "heads", "tie_break")


@dataclass
class Settings:
    """The hourglass settings of one variant: found in the file or official defaults or overrides."""

    heads: int
    tie_break: str
    layer_index: int | None = None
    token_num: int | None = None


def resolve_settings(variant: str, found: Found, overrides: Mapping[str, Any]) -> Settings:
    """Check ``overrides`` against the file and fill the rest with the official values."""
    family, pruning = _variant(variant)
    unknown = sorted(set(overrides) - set(ALLOWED_OVERRIDES))
    if unknown:
        raise ValueError(f"load_official: unknown keyword(s) {unknown}; allowed: {list(ALLOWED_OVERRIDES)}")
    frames = overrides.get("frames")
    if frames is not None and int(frames) != found.frames:
        raise ValueError(
            f"{variant}: expected frames={int(frames)}, the checkpoint has {found.frames} frames "
            f"({found.frames_key}); the model's frame count is fixed by the file"
        )
    settings = Settings(heads=int(overrides.get("heads", OFFICIAL_HEADS[family])),
                        tie_break=str(overrides.get("tie_break", "official")))
    if settings.tie_break not in TIE_BREAKS:
        raise ValueError(f"{variant}: tie_break must be one of {TIE_BREAKS}, got {settings.tie_break!r}")
    if pruning == "none":
        extra = [k for k in ("token_num", "layer_index") if overrides.get(k) is not None]
        if extra:
            raise ValueError(f"{variant} does not prune: {extra} do not apply (did you mean hot_{family} "
                             f"or tpc_{family}?)")
        return settings

    token_num = overrides.get("token_num")
    if found.tokens is not None:
        if token_num is not None and int(token_num) != found.tokens:
            raise ValueError(f"{variant}: expected token_num={int(token_num)}, the checkpoint keeps "
                             f"{found.tokens} tokens ({found.tokens_key})")
        token_num = found.tokens
    elif token_num is None:
        token_num = OFFICIAL_TPC_TOKENS[variant]
    token_num = int(token_num)

    layer_index = overrides.get("layer_index")
    if found.layer_index is not None:
        if layer_index is not None and int(layer_index) != found.layer_index:
            raise ValueError(f"{variant}: expected layer_index={int(layer_index)}, the checkpoint prunes "
                             f"before layer {found.layer_index} (its temporal-GCN BatchNorm sizes change "
                             "there)")
        layer_index = found.layer_index
    elif layer_index is None:
        layer_index = OFFICIAL_LAYER_INDEX[variant]
    layer_index = int(layer_index)

    blocks = 3 if family == "mhformer" else found.net["depth"]
    # The official MixSTE loops prune inside "for i in range(1, depth)": layer 0 would never prune.
    # Of MHFormer's blocks only the two SHR blocks can prune.
    first, last = (1, blocks - 1) if family == "mixste" else (0, 1 if family == "mhformer" else blocks - 1)
    if not first <= layer_index <= last:
        hint = "" if "layer_index" in overrides else " (official default; pass layer_index=...)"
        raise ValueError(f"{variant}: layer_index={layer_index}{hint} must be in [{first}, {last}] for this "
                         f"{blocks}-block checkpoint (the official model would silently not prune)")
    if not 1 <= token_num < found.frames:
        hint = "" if "token_num" in overrides else " (official default; pass token_num=...)"
        raise ValueError(f"{variant}: token_num={token_num}{hint} must be in [1, {found.frames}) "
                         f"(the checkpoint has {found.frames} frames)")
    settings.layer_index, settings.token_num = layer_index, token_num
    return settings


def official_config(variant: str, found: Found, settings: Settings) -> DictConfig:
    """The hotpose config groups ``backbone``, ``pruner``, ``recoverer``, ``pipeline`` of a variant.

    Values are concrete (no interpolation), so each group can be used on its own.
    """
    family, pruning = _variant(variant)
    net = {"_target_": NET_TARGETS[family], "_partial_": True, **found.net, "heads": settings.heads,
           **OFFICIAL_NET_SETTINGS[family]}
    layer, tokens = ((settings.layer_index, settings.token_num) if pruning != "none"
                     else PAPER_PRUNE[family])
    backbone = {"name": family, "frames": found.frames, "in_channels": found.net["in_channels"],
                "prune_layer": layer, "prune_tokens": tokens, "net": net}
    if family in TRA_INIT_STD:
        # Read from the file for hot_*; otherwise the official HoT value (no q/k/v bias in MotionAGFormer).
        qkv_bias = found.tra_qkv_bias if found.tra_qkv_bias is not None else family != "motionagformer"
        backbone.update(tra_heads=settings.heads, tra_qkv_bias=bool(qkv_bias),
                        tra_init_std=TRA_INIT_STD[family])
    if pruning == "none":
        pruner = {"policy": None, "layer": layer, "tokens": tokens, "stages": None, "token_embedding": False}
    else:
        pruner = {"policy": {"_target_": "hotpose.models.pruners.TPC", "k": OFFICIAL_TPC_K,
                             "tie_break": settings.tie_break},
                  "layer": layer, "tokens": tokens, "stages": None, "token_embedding": pruning == "hot"}
    if pruning == "hot":
        recoverer = {"_target_": "hotpose.models.recoverers.TRA", "_partial_": True,
                     "heads": backbone["tra_heads"], "qkv_bias": backbone["tra_qkv_bias"],
                     "init_std": backbone["tra_init_std"]}
    else:
        recoverer = {"_target_": "hotpose.models.recoverers.NoRecovery", "_partial_": True}
    # TPC-only models and MHFormer are evaluated on the centre frame (seq2frame) in the official code.
    if pruning == "tpc" or family == "mhformer":
        pipeline = {"name": "seq2frame", "keep_center": True, "train_stride": 1}
    else:
        pipeline = {"name": "seq2seq", "keep_center": False, "train_stride": found.frames}
    return OmegaConf.create({"backbone": backbone, "pruner": pruner, "recoverer": recoverer,
                             "pipeline": pipeline})


# ------------------------------------------------------------------------------------------------
# Loading


def map_state_dict(state: Mapping[str, Tensor], variant: str) -> dict[str, Tensor]:
    """Official keys → hotpose Hourglass keys; a key the variant does not have is refused."""
    family, pruning = _variant(variant)
    mapped, unknown = {}, []
    for key, value in state.items():
        new = map_key(key, family, pruning)
        if new is None:
            unknown.append(key)
        else:
            mapped[new] = value
    if unknown:
        raise ValueError(f"{variant}: the file has {len(unknown)} key(s) a {variant} checkpoint does not "
                         f"have: {unknown[:6]}{'...' if len(unknown) > 6 else ''}")
    return mapped


def load_into(model: nn.Module, mapped: Mapping[str, Tensor], state: Mapping[str, Tensor],
              variant: str) -> None:
    """Strict load with messages in the file's own key names."""
    family, pruning = _variant(variant)
    origin = {map_key(k, family, pruning): k for k in state}
    target = model.state_dict()
    extra = [origin[k] for k in mapped if k not in target]
    missing = [k for k in target if k not in mapped]
    if extra or missing:
        raise ValueError(
            f"{variant}: the file does not match the model built from its shapes: "
            + (f"keys without a place {extra[:6]}; " if extra else "")
            + (f"model entries the file lacks {missing[:6]}" if missing else "")
        )
    wrong = [f"{origin[k]} {tuple(v.shape)} (expected {tuple(target[k].shape)})"
             for k, v in mapped.items() if tuple(v.shape) != tuple(target[k].shape)]
    if wrong:
        raise ValueError(f"{variant}: tensors with unexpected shapes: {wrong[:6]}")
    model.load_state_dict(dict(mapped), strict=True)


class OfficialModel(nn.Module):
    """A hotpose model holding an official checkpoint.

    ``forward(x (b, F, 17, cin)) -> (b, f_out, 17, 3)``: what the official class returns (its first
    output for ``tpc_*``: the poses of the kept frames). ``forward_output`` gives the full
    :class:`~hotpose.models.hourglass.HourglassOutput` (kept indices, frame index).

    Attributes:
        net: the :class:`~hotpose.models.hourglass.Hourglass` (named as in the LightningModule, so the
            state_dict keys are the ones a hotpose checkpoint uses).
        variant: the official file name.
        cfg: the ``backbone``/``pruner``/``recoverer``/``pipeline`` configs that build ``net``.
    """

    def __init__(self, net: nn.Module, variant: str, cfg: DictConfig, official_numerics: bool = True) -> None:
        super().__init__()
        self.net = net
        self.variant = variant
        self.cfg = cfg
        self.official_numerics = official_numerics

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_output(x).pose

    def forward_output(self, x: Tensor, kept: list[Tensor] | None = None) -> Any:
        # The official classes compute attention with explicit matmuls; SDPA's ~1e-7 rounding
        # differences would otherwise flip frame choices that the official 1e-6 tie noise decides.
        with official_kernels(self.official_numerics):
            return self.net(x, kept=kept)


def load_official(source: str | Path | Mapping[str, Any], variant: str, **overrides: Any) -> OfficialModel:
    """Build the hotpose model of an official checkpoint and load it (strictly); returned in eval mode.

    Args:
        source: path to the file, or a (possibly wrapped) state_dict.
        variant: official file name (see :data:`VARIANTS`).
        **overrides: ``frames`` and ``token_num`` (checked against the file), ``layer_index``,
            ``token_num`` of tpc_* (official defaults otherwise), ``heads``, ``tie_break``
            (``"official"`` by default, or ``"deterministic"``).

    Raises:
        ValueError: a file of another variant or family, or frames / tokens / layer that disagree
            with the file, with what was expected and what was found.
    """
    from hotpose.models.build import build_model

    family, _ = _variant(variant)
    state = read_state_dict(source)
    check_variant_keys(state, variant)
    found = INFER[family](state, variant)
    if variant.startswith("hot_"):
        _, tokens, _ = _shape(state, "pos_embed_token", variant, 3)
        _, recover, _ = _shape(state, "x_token", variant, 3)
        if recover != found.frames:
            raise ValueError(f"{variant}: x_token recovers {recover} frames but {found.frames_key} has "
                             f"{found.frames}")
        if found.layer_index is not None:  # hot_motionagformer: BatchNorm sizes after the cut
            cut_size = state[f"layers.{found.layer_index}.graph_temporal.mixer.batch_norm.weight"].shape[0]
            if cut_size != tokens:
                raise ValueError(f"{variant}: pos_embed_token keeps {tokens} tokens but the pruned layers' "
                                 f"temporal-GCN BatchNorms have {cut_size}")
        found.tokens, found.tokens_key = tokens, "pos_embed_token"
        found.tra_qkv_bias = "cross_attention.linear_q.bias" in state
    settings = resolve_settings(variant, found, overrides)
    cfg = official_config(variant, found, settings)
    mapped = map_state_dict(state, variant)
    net = build_model(cfg.backbone, cfg.pruner, cfg.recoverer, cfg.pipeline)
    load_into(net, mapped, state, variant)
    return OfficialModel(net, variant, cfg, official_numerics=settings.tie_break == "official").eval()


HOTPOSE_CHECKPOINT_FORMAT = 1


def official_recipe(variant: str) -> dict[str, Any]:
    """Loss, optimiser and schedule of the official training script of ``variant``'s family, so that a
    converted checkpoint is a complete hotpose checkpoint (evaluation, fine-tuning) — and how its flipped
    test pass selects frames: the TPC scripts reuse the unflipped selection, the HoT models re-select."""
    if VARIANTS[variant][0] == "mhformer":
        recipe: dict[str, Any] = {
            "loss": {"_target_": "hotpose.losses.PoseLoss", "mpjpe": 1.0},
            "optimizer": {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "amsgrad": True},
            "scheduler": {"_target_": "hotpose.lit.epoch_decay_scheduler", "_partial_": True, "gamma": 0.95,
                          "step_every": 5, "step_gamma": 0.5}}
    else:  # MixSTE's script; HoT ships none for MotionBERT / MotionAGFormer
        recipe = {
            "loss": {"_target_": "hotpose.losses.PoseLoss", "weighted_mpjpe": 1.0, "temporal_consistency": 0.5,
                     "velocity": 2.0},
            "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 4e-5, "weight_decay": 0.1},
            "scheduler": {"_target_": "hotpose.lit.epoch_decay_scheduler", "_partial_": True, "gamma": 0.99,
                          "step_every": 200, "step_gamma": 0.5}}
    # The official test scripts' batch size (README test commands) and seed (main_*.py): the paper
    # protocol's P2 and TPC's tie-break noise depend on them.
    mhformer = VARIANTS[variant][0] == "mhformer"
    paper = {"batch_size": 256 if mhformer else 4, "seed": 1 if mhformer else 1126}
    return {**recipe, "flip_reselect": VARIANTS[variant][1] != "tpc", "paper_protocol": paper}


def hotpose_checkpoint(model: OfficialModel, source: str | None = None) -> dict[str, Any]:
    """The hotpose checkpoint dict of a loaded official model (see :mod:`hotpose.convert`)."""
    cfg = OmegaConf.to_container(model.cfg, resolve=True)
    return {
        # Lightning's load_from_checkpoint migrates by this version; read without importing Lightning.
        "pytorch-lightning_version": metadata.version("pytorch-lightning"),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "hyper_parameters": {"model": cfg, "pipeline": cfg["pipeline"]["name"], **official_recipe(model.variant),
                             "official_numerics": model.official_numerics},
        "hotpose_variant": model.variant,
        "hotpose_format": HOTPOSE_CHECKPOINT_FORMAT,
        "source": source,
    }
