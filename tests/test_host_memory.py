"""hotpose.host_memory: glibc malloc set to reuse freed memory, once, and never where it cannot."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CHECK = ("import hotpose.host_memory as m; first = m.keep_freed_memory(); "
         "print(first, m.keep_freed_memory())")


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "HOTPOSE_KEEP_FREED_MEMORY"}
    if env_value is not None:
        env["HOTPOSE_KEEP_FREED_MEMORY"] = env_value
    done = subprocess.run([sys.executable, "-c", CHECK], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or not os.confstr("CS_GNU_LIBC_VERSION"),
                    reason="glibc only")
def test_applied_once_on_glibc() -> None:
    assert _run(None) == "True True"


@pytest.mark.parametrize("value", ["0", "off", "false"])
def test_opt_out_leaves_malloc_alone(value: str) -> None:
    assert _run(value) == "False False"
