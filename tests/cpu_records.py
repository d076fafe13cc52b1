"""Which CPU the tests run on: official outputs that hinge on a float32 tie are recorded per vendor.

A TPC tie that the official 1e-6 density noise decides can be flipped by a 1e-7 rounding difference,
and MKL runs other float32 GEMM kernels on Intel and AMD processors. Fixtures with such ties hold one
record per vendor, each computed by the official code on a CPU of that vendor.
"""

from __future__ import annotations

import re
from pathlib import Path


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ...: the vendor string (``unknown`` where not readable)."""
    try:
        found = re.search(r"^vendor_id\s*:\s*(\S+)", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        return "unknown"
    return found.group(1) if found else "unknown"
