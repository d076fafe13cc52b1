"""What a run stopped by SIGTERM (a scheduler's preemption, ``scancel``, ``kill``) tells its caller.

Lightning turns SIGTERM into a ``SIGTERMException`` after the running batch, and
:class:`hotpose.callbacks.SigtermCheckpoint` saves a checkpoint there. The exception is a ``SystemExit``
without a status, so the process used to exit 0 and a scheduler took the job for finished. Here it
becomes one line on stderr (where the checkpoint is, how to resume) and exit status 3.

Requeueing is left to the cluster: under SLURM, Lightning's own plugin saves ``hpc_ckpt_<n>.ckpt`` and
requeues the job on the warning signal (``sbatch --signal=USR1@90``), and a fixed run folder
(``hydra.run.dir``) lets the requeued job find it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities.exceptions import SIGTERMException

#: exit status of a run stopped by SIGTERM (0 done, 1 bug, 2 user mistake; see hotpose.errors)
PREEMPTED_EXIT = 3


def _saved_checkpoint(trainer: pl.Trainer) -> Path | None:
    from hotpose.callbacks import SigtermCheckpoint

    for callback in trainer.callbacks:
        if isinstance(callback, SigtermCheckpoint) and callback.path.is_file():
            return callback.path
    return None


def stopped_message(trainer: pl.Trainer, stage: str) -> str:
    """The one line printed for a SIGTERM during ``stage`` (``fit`` / ``test``)."""
    where = f"during {stage} at epoch {trainer.current_epoch}, step {trainer.global_step}"
    saved = _saved_checkpoint(trainer) if stage == "fit" else None
    if saved is not None:
        # the same run folder: there Lightning also restores which checkpoint is best so far
        then = (f"saved {saved}; resume with the same command and ckpt_path={saved} "
                f"hydra.run.dir={trainer.default_root_dir}")
    elif stage == "fit":
        then = "no SIGTERM checkpoint (callbacks.sigterm_checkpoint is off); checkpoints/last.ckpt holds the last epoch"
    else:
        then = "training had finished; test again with python -m hotpose.eval ckpt=<checkpoint>"
    job = os.environ.get("SLURM_JOB_ID")
    return f"stopped by SIGTERM {where}{f' (SLURM job {job})' if job else ''}: {then}; exit status {PREEMPTED_EXIT}"


@contextmanager
def exit_on_sigterm(trainer: pl.Trainer, stage: str) -> Iterator[None]:
    """Run a trainer stage; on SIGTERM print :func:`stopped_message` and exit :data:`PREEMPTED_EXIT`."""
    try:
        yield
    except SIGTERMException:
        if trainer.global_rank == 0:
            print(stopped_message(trainer, stage), file=sys.stderr, flush=True)
        raise SystemExit(PREEMPTED_EXIT) from None
