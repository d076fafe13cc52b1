"""``job.json`` in each run folder: which process runs the job, so a report can tell running from killed.

A job that raised writes ``failed.json``, a finished one ``metrics.json``; a job killed outright (SIGKILL, the
out-of-memory killer, a lost node) writes neither, and used to be listed as still running. With the
process id and host recorded at the start, a folder without results whose process is gone is "killed".
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

FILE = "job.json"


def mark_started(output_dir: str | Path) -> Path:
    """Write ``<output_dir>/job.json`` (pid, host, start time)."""
    path = Path(output_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def unfinished_status(run_dir: str | Path) -> str:
    """``running`` or ``killed`` for a run folder without results (``running`` when it cannot be told:
    no ``job.json``, or the job ran on another host)."""
    path = Path(run_dir) / FILE
    try:
        info = json.loads(path.read_text())
        pid, host = int(info["pid"]), str(info["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return "running"
    if host != socket.gethostname():
        return "running"
    return "running" if _alive(pid) else "killed"
