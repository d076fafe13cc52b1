"""Parameters and FLOPs of the HoT paper's models next to the official figures.

``python -m hotpose.bench complexity [--models NAME,...] [--markdown PATH] [--quick]``

Every model is composed from ``configs/train.yaml`` with group overrides (``backbone=mixste
pruner=tpc recoverer=tra`` …) and built by :func:`hotpose.models.build_model`, i.e. exactly what
``hotpose.train`` trains. FLOPs are per clip at batch 1 (:func:`hotpose.flops.count_flops`):
*paper* = 2 x the MACs thop 0.0.31 counts (the paper's convention), *full* = every multiply-add x2
(attention products, norms and the selection's ``cdist`` included). The official figures are
those of the authors' classes (official-measurements §1): the paper's GFLOPs, or 2 x thop 0.0.31
for MotionAGFormer, which the paper does not list.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hotpose.progress import track as track_progress

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass(frozen=True)
class PaperModel:
    """One configuration of the paper's complexity table and its official figures."""

    backbone: str
    overrides: tuple[str, ...]
    official_params: int
    official_gflops: float
    source: str = "paper"  # where official_gflops comes from


def _groups(backbone: str, pruner: str, recoverer: str, pipeline: str, *extra: str) -> tuple[str, ...]:
    return (f"backbone={backbone}", f"pruner={pruner}", f"recoverer={recoverer}", f"pipeline={pipeline}",
            *extra)


PAPER_MODELS: dict[str, PaperModel] = {
    "MixSTE": PaperModel("mixste", _groups("mixste", "none", "none", "seq2seq"), 33_783_811, 277.25),
    "HoT w. MixSTE": PaperModel(
        "mixste", _groups("mixste", "tpc", "tra", "seq2seq", "pruner.layer=3", "pruner.tokens=81"),
        35_000_323, 167.52),
    # the released TPC configuration: 61 tokens before layer 7, no recovery, no token embedding,
    # the centre frame always kept
    "TPC w. MixSTE": PaperModel(
        "mixste", _groups("mixste", "tpc", "none", "seq2frame", "pruner.layer=7", "pruner.tokens=61",
                          "pruner.token_embedding=false"),
        33_783_811, 251.29),
    "MHFormer": PaperModel("mhformer", _groups("mhformer", "none", "none", "seq2frame"), 31_516_125, 14.15),
    "TPC w. MHFormer": PaperModel(
        "mhformer", _groups("mhformer", "tpc", "none", "seq2frame", "pruner.layer=1", "pruner.tokens=117",
                            "pruner.token_embedding=false"),
        31_516_125, 8.22),
    "MotionBERT": PaperModel(
        "motionbert", _groups("motionbert", "none", "none", "seq2seq"), 16_001_549, 131.09),
    "HoT w. MotionBERT": PaperModel(
        "motionbert", _groups("motionbert", "tpc", "tra", "seq2seq", "pruner.layer=1", "pruner.tokens=81"),
        16_347_661, 63.21),
    "MotionAGFormer": PaperModel(
        "motionagformer", _groups("motionagformer", "none", "none", "seq2seq"), 11_723_811, 95.99,
        source="2x thop 0.0.31"),
    "HoT w. MotionAGFormer": PaperModel(
        "motionagformer",
        _groups("motionagformer", "tpc", "tra", "seq2seq", "pruner.layer=7", "pruner.tokens=81"),
        11_828_031, 60.56, source="2x thop 0.0.31"),
}

# Tiny sizes for --quick (machinery checks): 27 frames (36 for MHFormer, whose generation
# encoders need frames divisible by 9 and > 27), width 32, two blocks, 9 (12) frames kept before block 1.
_SMALL_TRANSFORMER = ("backbone.net.dim=32", "backbone.net.heads=4")
_QUICK: dict[str, tuple[str, ...]] = {
    "mixste": ("backbone.frames=27", "backbone.tra_heads=4", *_SMALL_TRANSFORMER, "backbone.net.depth=2",
               "backbone.net.mlp_hidden=64", "pruner.layer=1", "pruner.tokens=9"),
    "motionbert": ("backbone.frames=27", "backbone.tra_heads=4", *_SMALL_TRANSFORMER, "backbone.net.depth=2",
                   "backbone.net.mlp_hidden=64", "backbone.net.dim_rep=64",
                   "pruner.layer=1", "pruner.tokens=9"),
    "motionagformer": ("backbone.frames=27", *_SMALL_TRANSFORMER, "backbone.net.depth=2",
                       "backbone.net.dim_rep=64", "pruner.layer=1", "pruner.tokens=9"),
    "mhformer": ("backbone.frames=36", *_SMALL_TRANSFORMER, "backbone.net.mlp_hidden=64",
                 "backbone.net.mhg_depth=1", "pruner.layer=1", "pruner.tokens=12"),
}


def quick_overrides(backbone: str) -> list[str]:
    """Overrides that shrink ``backbone`` (and its pruning point) to a few frames and a narrow width."""
    if backbone not in _QUICK:
        raise ValueError(f"no quick sizes for backbone {backbone!r}; known: {', '.join(_QUICK)}")
    return list(_QUICK[backbone])


def compose_model_config(overrides: Sequence[str], config_dir: Path = CONFIG_DIR):
    """Compose ``train.yaml`` with ``overrides`` without disturbing an already initialised Hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.singleton import Singleton

    if not (config_dir / "train.yaml").is_file():
        raise ValueError(f"no train.yaml in config directory {config_dir}")
    saved = Singleton._instances.pop(GlobalHydra, None)
    try:
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name="train", overrides=list(overrides))
    finally:
        if saved is not None:
            Singleton._instances[GlobalHydra] = saved


def build_from_overrides(overrides: Sequence[str], config_dir: Path = CONFIG_DIR) -> nn.Module:
    """The model ``hotpose.train`` would build for these overrides."""
    from hotpose.models.build import build_model

    cfg = compose_model_config(overrides, config_dir)
    return build_model(cfg.backbone, cfg.pruner, cfg.recoverer, cfg.pipeline)


def build_paper_model(name: str, extra_overrides: Sequence[str] = (),
                      config_dir: Path = CONFIG_DIR) -> nn.Module:
    """Build one of :data:`PAPER_MODELS` (``extra_overrides`` come last and win)."""
    if name not in PAPER_MODELS:
        raise ValueError(f"unknown paper model {name!r}; choose from {', '.join(PAPER_MODELS)}")
    return build_from_overrides([*PAPER_MODELS[name].overrides, *extra_overrides], config_dir)


@dataclass(frozen=True)
class ComplexityRow:
    name: str
    frames: int
    params: int
    paper_gflops: float
    full_gflops: float
    official_params: int
    official_gflops: float
    source: str

    @property
    def params_match(self) -> bool:
        return self.params == self.official_params

    @property
    def gflops_match(self) -> bool:
        """Equal at the paper's two decimals."""
        return f"{self.paper_gflops:.2f}" == f"{self.official_gflops:.2f}"


def measure(name: str, quick: bool = False, config_dir: Path = CONFIG_DIR) -> ComplexityRow:
    """Build ``name``, count its parameters and FLOPs on one random clip."""
    from hotpose.flops import count_flops

    spec = PAPER_MODELS[name]
    extra = quick_overrides(spec.backbone) if quick else []
    model = build_paper_model(name, extra, config_dir)
    frames, channels = int(model.frames), int(model.in_channels)
    counts = count_flops(model, torch.randn(1, frames, 17, channels))
    return ComplexityRow(name, frames, counts["params"], counts["paper_gflops"], counts["full_gflops"],
                         spec.official_params, spec.official_gflops, spec.source)


def format_table(rows: Sequence[ComplexityRow], quick: bool = False) -> str:
    """Markdown table; ``quick`` rows (tiny models) get more decimals and no match verdict."""
    lines = [
        "| model | frames | params | official params | GFLOPs (paper conv.) | official GFLOPs "
        "| match | GFLOPs (full) |",
        "|---|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    digits = 4 if quick else 2
    for r in rows:
        official = f"{r.official_gflops:.2f}" + ("" if r.source == "paper" else f" ({r.source})")
        if quick:
            match = "–"
        elif r.params_match and r.gflops_match:
            match = "yes"
        else:
            match = "params only" if r.params_match else "GFLOPs only" if r.gflops_match else "no"
        lines.append(f"| {r.name} | {r.frames} | {r.params:,} | {r.official_params:,} "
                     f"| {r.paper_gflops:.{digits}f} | {official} | {match} | {r.full_gflops:.{digits}f} |")
    return "\n".join(lines)


MARKDOWN_NOTE = """\
GFLOPs per clip at batch 1. *Paper conv.* = 2 x the multiply-adds that thop 0.0.31 counted for the
official classes: Linear and Conv layers (conv bias included), BatchNorm (2 per element) and the
joint pooling before token selection ((17 + 1) per output), but no LayerNorm, no attention products
and no token selection. *Full* = 2 x every multiply-add: the attention products Q·Kᵀ and A·V,
LayerNorm (5 per element), the temporal GCN's products and DPC-kNN's distance matrix included.
Official params and GFLOPs: the authors' classes at the same configurations (MotionAGFormer is not
in the paper; its reference is 2 x thop 0.0.31 on the official class). Match = parameters equal
and GFLOPs equal at two decimals. Generated by `python -m hotpose.bench complexity --markdown`.
"""


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hotpose.bench complexity",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(PAPER_MODELS),
                        help="comma-separated names from the table (default: all)")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--quick", action="store_true", help="tiny models: checks the machinery only")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return parser.parse_args(list(argv))


def main(argv: Sequence[str] = ()) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in PAPER_MODELS]
    if unknown or not names:
        raise SystemExit(f"unknown model(s) {unknown or names}; choose from: {', '.join(PAPER_MODELS)}")
    previous_threads = torch.get_num_threads()
    if args.threads is not None or args.quick:
        torch.set_num_threads(args.threads or 1)
    rows = []
    try:
        for name in track_progress(names, "counting parameters and FLOPs"):
            rows.append(measure(name, quick=args.quick))
            print(f"counted {name}", flush=True)
    finally:
        torch.set_num_threads(previous_threads)
    table = format_table(rows, quick=args.quick)
    if args.quick:
        table = "(--quick: tiny models, not the paper's sizes)\n\n" + table
    print(table)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"# Model complexity\n\n{table}\n\n{MARKDOWN_NOTE}")
        print(f"wrote {args.markdown}")
    return 0 if all(r.params_match and r.gflops_match for r in rows) or args.quick else 1
