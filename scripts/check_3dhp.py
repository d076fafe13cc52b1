#!/usr/bin/env python
"""Check an MPI-INF-3DHP data folder (P-STMO / MotionAGFormer preparation) before training on it.

Usage: ``python scripts/check_3dhp.py DIR``

Loads ``data_train_3dhp.npz`` and ``data_test_3dhp.npz`` with the same code the DataModule uses
(hotpose.data.mpi_inf_3dhp), prints the subjects, cameras, test sequences, frames and valid frames found and
everything that is missing or wrong, and compares the valid-frame counts with the released annotation's
(TS1-TS6: 603, 540, 505, 553, 276, 452; 2,929 in all). Exits 1 when anything required is missing or
unreadable, else 0 (a valid-count difference is reported as a warning).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hotpose.data.mpi_inf_3dhp import (
    OFFICIAL_VALID_FRAMES,
    TEST_FILE,
    TEST_SEQUENCES,
    TRAIN_FILE,
    TRAIN_SUBJECTS,
    load_test_sequences,
    load_train_sequences,
)
from hotpose.data.sources import DataError


def check(root: Path) -> tuple[list[str], list[str]]:
    """Print what ``root`` holds; return ``(problems, warnings)`` (no problems: the folder is usable)."""
    problems: list[str] = []
    warnings: list[str] = []
    try:
        records = load_train_sequences(root / TRAIN_FILE, TRAIN_SUBJECTS)
    except DataError as err:
        problems.append(str(err))
    else:
        total = sum(r.num_frames for r in records)
        print(f"{TRAIN_FILE}: {len(TRAIN_SUBJECTS)} subjects, {len(records)} camera sequences, {total:,} frames")
        for subject in TRAIN_SUBJECTS:
            mine = [r for r in records if r.subject == subject]
            sequences = sorted({r.action for r in mine})
            cameras = sorted({r.camera for r in mine})
            print(f"  {subject}: sequences {', '.join(sequences)}; cameras {cameras}; "
                  f"{sum(r.num_frames for r in mine):,} frames")
    try:
        tests = load_test_sequences(root / TEST_FILE, TEST_SEQUENCES)
    except DataError as err:
        problems.append(str(err))
    else:
        valid = sum(int(t.valid.sum()) for t in tests)
        print(f"{TEST_FILE}: {len(tests)} sequences, {sum(t.record.num_frames for t in tests):,} frames, "
              f"{valid:,} valid (scored)")
        for t in tests:
            name, count = t.record.subject, int(t.valid.sum())
            print(f"  {name}: {t.record.num_frames:6,d} frames, {count:5,d} valid, "
                  f"{t.record.res_w}x{t.record.res_h} pixels")
            if count != OFFICIAL_VALID_FRAMES[name]:
                warnings.append(f"{root / TEST_FILE}: {name} has {count} valid frames, the released annotation "
                                f"{OFFICIAL_VALID_FRAMES[name]}; scores will not be comparable with published ones")
    return problems, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder with data_train_3dhp.npz and data_test_3dhp.npz")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"MISSING: {args.root} is not a folder", file=sys.stderr)
        return 1
    problems, warnings = check(args.root)
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    for problem in problems:
        print(f"MISSING or WRONG: {problem}", file=sys.stderr)
    print("ok: the folder is complete" if not problems else f"{len(problems)} problem(s) found")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
