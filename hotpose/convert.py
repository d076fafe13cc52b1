"""Convert an official HoT checkpoint into a hotpose checkpoint.

    python -m hotpose.convert --variant hot_mixste --input hot_mixste.pth --output hot_mixste.ckpt
    python -m hotpose.convert --variant tpc_mixste --input model.pth --output tpc.ckpt --token-num 61

``--variant`` is the official file name (mixste, hot_mixste, tpc_mixste, mhformer, tpc_mhformer,
motionbert, hot_motionbert, motionagformer, hot_motionagformer); everything the tensors show is read
from them (see :mod:`hotpose.models.official`), the other options override the official defaults.
The file cannot tell ``tpc_mixste`` from ``mixste`` (or ``tpc_mhformer`` from ``mhformer``): the
variant given decides.

The output is a ``torch.save``'d dict in the layout of a Lightning checkpoint of
:class:`hotpose.lit.HotposeModule`::

    {
      "state_dict": {"net.<Hourglass key>": tensor, ...},
      "hyper_parameters": {"model": {"backbone": ..., "pruner": ..., "recoverer": ..., "pipeline": ...},
                           "pipeline": "seq2seq" | "seq2frame",
                           "loss": ..., "optimizer": ..., "scheduler": ...,  # the official recipe
                           "flip_reselect": bool,  # False for tpc_*: the flipped pass reuses the selection
                           "paper_protocol": {"batch_size": 4 | 256, "seed": 1126 | 1},  # official test
                           "official_numerics": bool},  # explicit-matmul attention (tie_break official)
      "pytorch-lightning_version": "...",
      "hotpose_variant": "<official variant>", "hotpose_format": 1, "source": "<input path>",
    }

``hyper_parameters.model`` holds the four config groups that :func:`hotpose.models.build.build_model`
takes, with concrete values (no interpolation); without Lightning the model is rebuilt by
``build_model(*(OmegaConf.create(model[k]) for k in ("backbone", "pruner", "recoverer", "pipeline")))``
and ``load_state_dict`` of the keys with ``net.`` removed. The TPC tie-break stored is the one used
for the conversion (``official`` by default); with it, ``hotpose.eval`` runs the official attention
numerics, and ``eval_mode=paper`` the official test batch size and seed (docs/protocols.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from hotpose.checkpoints import atomic_torch_save
from hotpose.models.official import VARIANTS, hotpose_checkpoint, load_official


def convert(input_path: str | Path, output_path: str | Path, variant: str, **overrides: object) -> dict:
    """Load ``input_path`` as ``variant``, write the hotpose checkpoint to ``output_path``, return it."""
    model = load_official(input_path, variant, **overrides)
    checkpoint = hotpose_checkpoint(model, source=str(input_path))
    atomic_torch_save(checkpoint, output_path)
    return checkpoint


#: variants whose files hold the same tensors: the file cannot tell them apart, --variant decides
INDISTINGUISHABLE = {"mixste": "tpc_mixste", "tpc_mixste": "mixste", "mhformer": "tpc_mhformer",
                     "tpc_mhformer": "mhformer"}


def assumptions(variant: str, overrides: dict[str, object], checkpoint: dict) -> list[str]:
    """What the conversion took on trust (the weights cannot show it), one line each."""
    model = checkpoint["hyper_parameters"]["model"]
    notes = []
    if "heads" not in overrides:
        heads = model["backbone"]["net"].get("heads")
        notes.append(f"assumed heads={heads} (the official value): the weights do not show the head count, and "
                     "another one gives other outputs; pass --heads N if the model was trained with N")
    if variant in INDISTINGUISHABLE:
        notes.append(f"not checked: a {variant} file holds the same tensors as a {INDISTINGUISHABLE[variant]} "
                     f"one; converted as {variant} because --variant says so")
    if variant.startswith("tpc_"):
        pruner = model["pruner"]
        given = [k for k in ("token_num", "layer_index") if k in overrides]
        if len(given) < 2:
            notes.append(f"assumed pruning to {pruner['tokens']} tokens before block {pruner['layer']} (official "
                         "values; the weights do not show them): pass --token-num / --layer-index otherwise")
    return notes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hotpose.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--variant", required=True, choices=list(VARIANTS), help="official model file name")
    parser.add_argument("--input", required=True, help="official checkpoint (.pth)")
    parser.add_argument("--output", required=True, help="hotpose checkpoint to write (.ckpt)")
    parser.add_argument("--frames", type=int, help="expected frames (checked against the file)")
    parser.add_argument("--token-num", type=int, help="kept tokens (checked for hot_*, set for tpc_*)")
    parser.add_argument("--layer-index", type=int, help="block before which frames are pruned")
    parser.add_argument("--heads", type=int, help="attention heads (official value by default)")
    parser.add_argument("--tie-break", choices=["official", "deterministic"], help="TPC tie-breaking mode")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("frames", args.frames), ("token_num", args.token_num),
                                   ("layer_index", args.layer_index), ("heads", args.heads),
                                   ("tie_break", args.tie_break)) if v is not None}
    try:
        checkpoint = convert(args.input, args.output, args.variant, **overrides)
    except (ValueError, FileNotFoundError) as err:
        parser.exit(2, f"error: {err}\n")
    cfg = checkpoint["hyper_parameters"]["model"]
    pruner = cfg["pruner"]
    pruning = ("no pruning" if pruner["policy"] is None
               else f"prune to {pruner['tokens']} before block {pruner['layer']}")
    print(f"{args.variant}: {cfg['backbone']['name']} ({cfg['backbone']['frames']} frames, {pruning}), "
          f"{len(checkpoint['state_dict'])} tensors -> {args.output}")
    for note in assumptions(args.variant, overrides, checkpoint):
        print(f"note: {note}")


if __name__ == "__main__":
    main()
