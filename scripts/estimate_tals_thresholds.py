"""Estimate per-joint TALS thresholds (mm) from detected vs ground-truth 2D and write them as JSON.

    python scripts/estimate_tals_thresholds.py --out tals_mini.json                       # embedded data
    python scripts/estimate_tals_thresholds.py --root /path/to/h36m --dataset h36m \\
        --detector cpn_ft_h36m_dbb --out tals_h36m_cpn.json
    python -m hotpose.train tals=enabled loss.tals.thresholds_mm=null loss.tals.thresholds_file=tals_h36m_cpn.json

Method: hotpose/tals_thresholds.py (the 2D gap lifted to 3D by the weak-perspective scale of each frame).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hotpose.data.skeleton import JOINT_NAMES
from hotpose.tals_thresholds import estimate_thresholds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="folder of the npz files (default: the embedded mini data)")
    parser.add_argument("--dataset", default="mini")
    parser.add_argument("--detector", default="det", help="2D file tag compared with 'gt'")
    parser.add_argument("--subjects", nargs="+", default=["S1", "S5", "S6", "S7", "S8"])
    parser.add_argument("--quantile", type=float, default=0.5)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    tau = estimate_thresholds(args.root, args.dataset, args.detector, args.subjects, args.quantile)
    payload = {"thresholds_mm": [round(float(t), 2) for t in tau], "joints": list(JOINT_NAMES),
               "method": "weak-perspective lifted |det - gt| 2D gap", "quantile": args.quantile,
               "dataset": args.dataset, "detector": args.detector, "subjects": args.subjects}
    args.out.write_text(json.dumps(payload, indent=2))
    for name, t in zip(JOINT_NAMES, payload["thresholds_mm"]):
        print(f"{name:>12s} {t:7.2f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
