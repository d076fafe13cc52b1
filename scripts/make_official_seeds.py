"""Record the official classes' outputs at extra seeds on this CPU, for tests/models/test_official.py.

    python scripts/make_official_seeds.py --official-dir PATH/TO/HoT --out extra_seeds_NEW.pt \
        [--compare tests/fixtures/official/extra_seeds.pt]

For each tie-fragile fixture of ``tests/fixtures/official`` (the pruned models) the official class is
built at the fixture's narrow configuration, loaded with the fixture's weights (strictly), checked
against the fixture's recorded output at the fixture's seed, and run at seeds 1-4. Those seeds were
not chosen for robustness: their selections hinge on float32 ties, so a record holds for CPUs whose
kernels round as the recording one's. The tests keep one record per kind of CPU (vendor and torch's kernel
level, ``tests/cpu_records.py``: a new kind's file is ``extra_seeds<suffix>.pt`` with its suffix listed there);
``--compare`` tells whether an existing record still holds on this CPU (then hotpose must match it here),
or whether this CPU needs its own.

The official classes hard-code some of their paper sizes (depth; the MotionBERT and MotionAGFormer
widths): a scratch copy of the official ``model/`` folder gets the fixture's sizes written in (each
edit must match exactly once).
Nothing of the official code is kept. Run at the thread count the tests use (torch's default).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import shutil
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests"), str(ROOT / "tests" / "models")]

from bench_vs_official import install_timm_stand_in  # noqa: E402
from cpu_records import cpu_kind  # noqa: E402
from test_official import TOLERANCE, fixture  # noqa: E402

VARIANTS = {"hot_mixste": "mixste", "tpc_mixste": "mixste", "tpc_mhformer": "mhformer",
            "hot_motionbert": "motionbert", "hot_motionagformer": "motionagformer"}
SEEDS = (1, 2, 3, 4)


def size_edits(variant: str, cfg: dict) -> list[tuple[str, str]]:
    """(old, new) source edits that give a hard-coded official class the fixture's sizes."""
    if variant in ("hot_mixste", "tpc_mixste"):
        return [("depth = 8\n", f"depth = {cfg['depth']}\n")]
    if variant == "tpc_mhformer":
        return [(f"self.Transformer_encoder_{i} = Transformer_encoder(4, ",
                 f"self.Transformer_encoder_{i} = Transformer_encoder({cfg['mhg_depth']}, ") for i in (1, 2, 3)]
    if variant == "hot_motionbert":
        return [("dim_feat = 256\n", f"dim_feat = {cfg['dim_feat']}\n"),
                ("mlp_hidden_dim = 256 * 4\n", f"mlp_hidden_dim = {cfg['mlp']}\n"),
                ("dim_rep = 512\n", f"dim_rep = {cfg['dim_rep']}\n"),
                ("depth = 5\n", f"depth = {cfg['depth']}\n"),
                ("num_heads = 8\n", f"num_heads = {cfg['heads']}\n"),
                ("maxlen = 243\n", f"maxlen = {cfg['maxlen']}\n"),
                ("self.token_num = 81\n", f"self.token_num = {cfg['token_num']}\n"),
                ("self.layer_index = 1\n", f"self.layer_index = {cfg['layer_index']}\n")]
    if variant == "hot_motionagformer":
        return [("n_layers, dim_feat = 16, 128\n", f"n_layers, dim_feat = {cfg['n_layers']}, {cfg['dim_feat']}\n"),
                ("self.token_num = 81\n", f"self.token_num = {cfg['token_num']}\n"),
                ("self.layer_index = 7\n", f"self.layer_index = {cfg['layer_index']}\n"),
                ("n_frames_all = [243] * n_layers\n", f"n_frames_all = [{cfg['maxlen']}] * n_layers\n")]
    return []


def official_class(copy: Path, variant: str, cfg: dict) -> torch.nn.Module:
    family = VARIANTS[variant]
    path = copy / "model" / family / f"{variant}.py"
    source = path.read_text()
    for old, new in size_edits(variant, cfg):
        if source.count(old) != 1:
            raise SystemExit(f"{path.name}: expected {old.strip()!r} once, found it {source.count(old)} times")
        source = source.replace(old, new)
    path.write_text(source)
    module = importlib.import_module(f"model.{family}.{variant}")
    with contextlib.redirect_stdout(io.StringIO()):  # some official classes print their sizes
        if variant == "hot_motionagformer":
            return module.Model(Namespace(maxlen=cfg["maxlen"]), mlp_ratio=cfg["mlp_ratio"], dim_rep=cfg["dim_rep"],
                                num_heads=cfg["heads"])
        return module.Model(Namespace(**cfg))


def pose(out: object) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official-dir", required=True, type=Path, help="checkout of NationalGAILab/HoT")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--compare", type=Path, default=None, help="an existing record to compare with")
    args = parser.parse_args(argv)
    if not (args.official_dir / "model").is_dir():
        parser.error(f"--official-dir {args.official_dir}: no model/ folder there")
    install_timm_stand_in()
    outputs: dict[str, dict[int, torch.Tensor]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch)
        shutil.copytree(args.official_dir / "model", copy / "model")
        sys.path.insert(0, str(copy))
        for variant in VARIANTS:
            data = fixture(variant)
            model = official_class(copy, variant, data["official_config"]).eval()
            model.load_state_dict(data["weights"], strict=True)
            with torch.no_grad():
                torch.manual_seed(data["seed"])
                check = pose(model(data["x"]))
                diff = (check - data["output"]).abs().max().item()
                if diff > TOLERANCE:
                    raise SystemExit(f"{variant}: the official class gives {diff:.1e} from the fixture at its seed")
                outputs[variant] = {}
                for seed in SEEDS:
                    torch.manual_seed(seed)
                    outputs[variant][seed] = pose(model(data["x"])).clone()
            print(f"{variant}: fixture seed reproduced ({diff:.1e}), seeds {list(SEEDS)} recorded")
    torch.save(outputs, args.out)
    print(f"{args.out}: {cpu_kind()} CPU, {torch.get_num_threads()} thread(s)")
    if args.compare is not None:
        before = torch.load(args.compare, weights_only=True)
        for variant, seeds in outputs.items():
            diffs = [(seeds[s] - before[variant][s]).abs().max().item() if s in before.get(variant, {}) else None
                     for s in SEEDS]
            print(f"{variant}: max |Δ| to {args.compare.name} per seed: "
                  + ", ".join("missing" if d is None else f"{d:.1e}" for d in diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
