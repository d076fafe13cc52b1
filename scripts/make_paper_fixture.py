#!/usr/bin/env python
"""Compute the official test scripts' per-action P1/P2 on the paper-protocol harness (run once, by hand).

Usage::

    PYTHONPATH=. python scripts/make_paper_fixture.py --shim /path/to/timm-shim \\
        --official-dir /path/to/NationalGAILab/HoT --out tests/fixtures/paper

What it does:

1. Builds the small Human3.6M-format folder of ``tests/paper/h36m_folder.py``.
2. Copies the official repository into a scratch folder and adapts it to a CPU, with these textual
   edits only: ``.cuda()`` removed; the TPC density noise ``torch.rand(...)`` drawn from a generator
   that the script's ``torch.cuda.manual_seed_all(seed)`` seeds (on a GPU that noise comes from the
   CUDA generator, which nothing else touches, so the stand-in keeps the official stream: seeded once,
   then consumed by the forwards in test order; the CPU generator also feeds the model's weight init
   and the DataLoader's base seed); every clustering call's selected indices recorded; the per-action
   errors written with full precision (the script prints two decimals).
3. Instantiates the five official classes (mixste, hot_mixste, tpc_mixste, mhformer, tpc_mhformer) at
   narrow sizes through their ``args`` (the official depths, which the classes hard-code), snaps every
   weight to a power-of-two int8 grid (zero- and one-initialised tensors get small random values so
   that they matter), and saves them as official ``.pth`` state_dicts.
4. Runs ``main_mixste.py`` / ``main_mixste_tpc.py`` / ``main_mhformer.py`` / ``main_mhformer_tpc.py``
   ``--test`` with the README's test batch sizes (4 / 4 / 256 / 256) and strides on that folder.
5. Writes ``<out>/weights/<variant>.pt`` (packed int8 weights), ``<out>/official_numbers.json``
   (per-action P1/P2 in mm, the folder digest, the command lines) and ``<out>/official_kept.npz``
   (the frames each clustering call kept, in call order: ``<variant>/kept`` stacks the calls' rows,
   ``<variant>/rows`` gives each call's row count). No official code is written to ``<out>``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "paper"))
from h36m_folder import build_h36m_folder, folder_digest  # noqa: E402

# variant -> (official script, --model, official args, test batch size, test stride, weight seed)
NARROW = dict(channel=16, d_hid=32, n_joints=17, out_joints=17)
RUNS: dict[str, dict] = {
    "mixste": dict(script="main_mixste.py", model="mixste.mixste", frames=9, batch=4, stride=9, seed=11),
    "hot_mixste": dict(script="main_mixste.py", model="mixste.hot_mixste", frames=9, batch=4, stride=9,
                       token_num=3, layer_index=3, seed=12),
    "tpc_mixste": dict(script="main_mixste_tpc.py", model="mixste.tpc_mixste", frames=9, batch=4, stride=1,
                       token_num=3, layer_index=7, seed=13),
    "mhformer": dict(script="main_mhformer.py", model="mhformer.mhformer", frames=45, batch=256, stride=1,
                     seed=14),
    "tpc_mhformer": dict(script="main_mhformer_tpc.py", model="mhformer.tpc_mhformer", frames=27, batch=256,
                         stride=1, token_num=9, layer_index=1, seed=15),
}

HELPER = '''
import json, os
import numpy as np
import torch

GEN = torch.Generator()  # stands in for the CUDA generator of a GPU run
KEPT = []


def record(index):
    KEPT.append(index.detach().clone())


def dump(action_error_sum, mean_p1, mean_p2):
    out = {"per_action": {a: {"p1": float(v["p1"].avg * 1000.0), "p2": float(v["p2"].avg * 1000.0)}
                          for a, v in action_error_sum.items()},
           "average": {"p1": float(mean_p1), "p2": float(mean_p2)}}
    with open(os.environ["PAPER_FIXTURE_JSON"], "w") as f:
        json.dump(out, f)
    np.savez_compressed(os.environ["PAPER_FIXTURE_KEPT"],
                        **{f"call_{i:05d}": k.numpy().astype(np.int16) for i, k in enumerate(KEPT)})
'''

NOISE = "torch.rand(density.shape, device=density.device, dtype=density.dtype)"
CLUSTER_FILES = ("model/mixste/hot_mixste.py", "model/mixste/tpc_mixste.py",
                 "model/mhformer/module/trans_hypothesis_cluster.py")


def _edit(path: Path, old: str, new: str, count: int | None = None) -> None:
    text = path.read_text()
    found = text.count(old)
    if not found or (count is not None and found != count):
        raise SystemExit(f"{path}: expected {count or 'some'} occurrence(s) of {old!r}, found {found}")
    path.write_text(text.replace(old, new))


def cpu_copy(official: Path, work: Path) -> Path:
    """The official repository with the CPU edits listed in the module docstring."""
    copy = work / "official_cpu"
    shutil.copytree(official, copy, ignore=shutil.ignore_patterns("demo", "*.pth", ".git"))
    (copy / "cpu_run.py").write_text(HELPER)
    for script in sorted({r["script"] for r in RUNS.values()}):
        path = copy / script
        path.write_text("import cpu_run\n" + re.sub(r"\.cuda\(\)", "", path.read_text()))
        _edit(path, "torch.cuda.manual_seed_all(seed)", "cpu_run.GEN.manual_seed(seed)", count=1)
    for name in CLUSTER_FILES:
        path = copy / name
        path.write_text("import cpu_run\n" + path.read_text())
        _edit(path, NOISE, "torch.rand(density.shape, generator=cpu_run.GEN, dtype=density.dtype)", count=1)
        _edit(path, "    return index_down, idx_cluster", "    cpu_run.record(index_down)\n"
              "    return index_down, idx_cluster", count=1)
    _edit(copy / "common/utils.py", "    return mean_error_all['p1'].avg, mean_error_all['p2'].avg",
          "    import cpu_run\n    cpu_run.dump(action_error_sum, mean_error_all['p1'].avg, "
          "mean_error_all['p2'].avg)\n    return mean_error_all['p1'].avg, mean_error_all['p2'].avg", count=1)
    return copy


def official_args(run: dict) -> SimpleNamespace:
    frames = run["frames"]
    return SimpleNamespace(**NARROW, frames=frames, pad=(frames - 1) // 2, token_num=run.get("token_num", 81),
                           layer_index=run.get("layer_index", 3), layers=8)


def narrow_weights(copy: Path, variant: str, run: dict) -> dict[str, torch.Tensor]:
    """Official-class weights on an int8 grid (a power-of-two step per tensor)."""
    sys.path.insert(0, str(copy))
    try:
        module = importlib.import_module(f"model.{run['model']}")
        torch.manual_seed(run["seed"])
        model = module.Model(official_args(run))
    finally:
        sys.path.remove(str(copy))
    rng = np.random.RandomState(run["seed"])
    state = {}
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            state[key] = value.clone()
            continue
        v = value.double().numpy()
        if "running_var" in key:
            v = 1.0 + rng.randint(0, 64, v.shape) / 64.0
        elif np.all(v == 1.0):
            v = 1.0 + rng.randint(-16, 17, v.shape) / 64.0
        elif np.all(v == 0.0):
            v = rng.randint(-40, 41, v.shape) / 128.0
        step = 2.0 ** math.floor(math.log2(127.0 / max(np.abs(v).max(), 1e-12)))
        state[key] = torch.from_numpy(np.round(v * step) / step).float()
    return state


def pack(state: dict[str, torch.Tensor]) -> dict:
    """The weights as one int8 vector, a power-of-two exponent per tensor, and the integer tensors."""
    entries, chunks, exponents, other = [], [], [], {}
    for key, value in state.items():
        if not value.is_floating_point():
            other[key] = value
            continue
        peak = float(value.abs().max())
        exponent = math.floor(math.log2(127.0 / peak)) if peak > 0 else 0
        q = torch.round(value.double() * 2.0 ** exponent)
        if not torch.equal(q / 2.0 ** exponent, value.double()) or q.abs().max() > 127:
            raise SystemExit(f"{key}: not on an int8 grid")
        entries.append((key, list(value.shape)))
        chunks.append(q.to(torch.int8).flatten())
        exponents.append(exponent)
    return {"entries": entries, "int8": torch.cat(chunks), "exponents": torch.tensor(exponents), "other": other}


def run_official(copy: Path, variant: str, run: dict, folder: Path, work: Path, shim: str) -> tuple[dict, dict]:
    ckpt_dir = work / "ckpt" / variant
    out_json, out_kept = work / f"{variant}.json", work / f"{variant}_kept.npz"
    command = [sys.executable, run["script"], "--test", "--batch_size", str(run["batch"]), "--frames",
               str(run["frames"]), "--stride", str(run["stride"]), "--model", run["model"], "--channel",
               str(NARROW["channel"]), "--d_hid", str(NARROW["d_hid"]), "--root_path", f"{folder}/",
               "--previous_dir", str(ckpt_dir), "--workers", "0"]
    if "token_num" in run:
        command += ["--token_num", str(run["token_num"]), "--layer_index", str(run["layer_index"])]
    env = {**os.environ, "PYTHONPATH": f"{copy}:{shim}", "PAPER_FIXTURE_JSON": str(out_json),
           "PAPER_FIXTURE_KEPT": str(out_kept), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=copy, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{variant}: official script failed\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    with np.load(out_kept) as kept:
        calls = {k: kept[k] for k in sorted(kept.files)}
    printed = done.stdout.strip().splitlines()[-1]
    result = json.loads(out_json.read_text())
    result["printed"] = printed
    shown = command[1:]
    shown[shown.index("--root_path") + 1] = "<folder>/"
    shown[shown.index("--previous_dir") + 1] = f"<ckpt>/{variant}"
    result["command"] = " ".join(["python", *shown])
    return result, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official-dir", required=True, type=Path, help="the official HoT repository")
    parser.add_argument("--shim", required=True, help="folder providing timm's DropPath etc. (a timm stand-in)")
    parser.add_argument("--out", default=REPO / "tests" / "fixtures" / "paper", type=Path)
    parser.add_argument("--variants", nargs="*", default=list(RUNS))
    args = parser.parse_args()
    sys.path.insert(0, str(args.shim))  # the official classes import timm's DropPath here too
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = build_h36m_folder(work / "h36m")
        copy = cpu_copy(args.official_dir, work)
        (args.out / "weights").mkdir(parents=True, exist_ok=True)
        numbers_path = args.out / "official_numbers.json"
        numbers = json.loads(numbers_path.read_text()) if numbers_path.is_file() else {"variants": {}}
        numbers["folder_digest"] = folder_digest(folder)
        kept_path = args.out / "official_kept.npz"
        kept_all = dict(np.load(kept_path)) if kept_path.is_file() else {}
        for variant in args.variants:
            run = RUNS[variant]
            state = narrow_weights(copy, variant, run)
            (work / "ckpt" / variant).mkdir(parents=True)
            torch.save(state, work / "ckpt" / variant / "model.pth")
            torch.save(pack(state), args.out / "weights" / f"{variant}.pt")
            result, calls = run_official(copy, variant, run, folder, work, args.shim)
            result.update(frames=run["frames"], batch_size=run["batch"], stride=run["stride"],
                          token_num=run.get("token_num"), layer_index=run.get("layer_index"),
                          calls=len(calls))
            numbers["variants"][variant] = result
            kept_all = {k: v for k, v in kept_all.items() if not k.startswith(f"{variant}/")}
            if calls:  # one array per variant: the calls' rows stacked, and each call's row count
                kept_all[f"{variant}/kept"] = np.concatenate(list(calls.values()))
                kept_all[f"{variant}/rows"] = np.array([len(c) for c in calls.values()], dtype=np.int16)
            print(f"{variant}: {result['printed']} ({len(calls)} clustering calls)")
            numbers_path.write_text(json.dumps(numbers, indent=1, sort_keys=True) + "\n")
            np.savez_compressed(kept_path, **kept_all)


if __name__ == "__main__":
    main()
