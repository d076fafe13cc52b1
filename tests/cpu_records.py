"""Which kind of CPU the tests run on: official outputs that hinge on a float32 tie are recorded per kind.

A TPC tie that the official 1e-6 density noise decides can be flipped by a 1e-7 rounding difference.
Two things choose the float32 kernels, and with them the roundings: the vendor (MKL runs other GEMM
kernels on Intel and AMD processors) and the vector instructions torch's own kernels were built for
(an AVX2-only AMD EPYC of family 25 rounds other ties than an AVX-512 one of family 26). Fixtures with
such ties hold one record per kind, each computed by the official code on a CPU of that kind.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

# kind -> the suffix of its record files (``extra_seeds<suffix>.pt``, ``official_numbers<suffix>.json``, ...)
RECORD_SUFFIXES = {"AuthenticAMD AVX512": "", "GenuineIntel AVX512": "_intel", "AuthenticAMD AVX2": "_amd_avx2"}
MAKE_RECORDS = ("make them with scripts/make_official_seeds.py and scripts/make_paper_fixture.py "
                "(see docs/protocols.md)")


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ...: the vendor string (``unknown`` where not readable)."""
    try:
        found = re.search(r"^vendor_id\s*:\s*(\S+)", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return "unknown"
    return found.group(1) if found else "unknown"


def cpu_kind() -> str:
    """The vendor and the level torch dispatches its CPU kernels at, e.g. ``AuthenticAMD AVX512``."""
    return f"{cpu_vendor()} {torch.backends.cpu.get_cpu_capability()}"


def record_suffix() -> str | None:
    """The suffix of this CPU kind's record files, or None where none was recorded."""
    return RECORD_SUFFIXES.get(cpu_kind())
