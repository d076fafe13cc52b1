"""Host memory: keep freed tensor memory in the process instead of returning it to the OS at once.

On Linux, PyTorch's CPU tensors come from glibc's ``malloc``. Blocks above its mmap threshold (128 KiB
at start, raised on the fly up to 32 MiB) are mapped on allocation and unmapped on free, and the top
of the heap is trimmed back to the OS once 128 KiB are free. A transformer forward pass frees and
re-allocates activations of several MiB in every layer, so each new activation tensor is faulted in
page by page: at paper sizes on a CPU that costs about as much as the elementwise op that fills it.
:func:`keep_freed_memory` turns both off (no mmap for tensors, no trimming), so freed blocks are
reused: what CUDA's caching allocator does on a GPU, and what jemalloc/tcmalloc are preloaded for.

The price is that the process keeps its peak heap until it exits. The entry points (``train``,
``eval``, ``infer``, ``stream``, ``bench``) call it once at start; set ``HOTPOSE_KEEP_FREED_MEMORY=0``
to leave malloc as it is (e.g. when something else in the process needs memory back).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV = "HOTPOSE_KEEP_FREED_MEMORY"
# mallopt(3) parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4
_TRIM_NEVER = 2**31 - 1  # the largest value mallopt takes: effectively never trim
_TOP_PAD = 64 << 20  # grow the heap 64 MiB at a time, not one page

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Configure glibc malloc to reuse freed memory (idempotent); True if it now does.

    False (and nothing changed) off Linux, under another C library, or with
    ``HOTPOSE_KEEP_FREED_MEMORY=0``.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _applied = all(mallopt(param, value) == 1 for param, value in
                   ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_NEVER), (_M_TOP_PAD, _TOP_PAD)))
    return _applied
