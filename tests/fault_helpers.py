"""Callbacks that stop a run the way schedulers and crashes do, for subprocess tests (``+callbacks.x=``)."""

from __future__ import annotations

import os
import signal

import pytorch_lightning as pl


class SignalAtStep(pl.Callback):
    """Send the signal named ``signame`` (``SIGTERM``, ``SIGKILL``) to this process after optimiser step ``step``."""

    def __init__(self, step: int, signame: str = "SIGTERM") -> None:
        self.step = step
        self.signum = getattr(signal, signame)

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)
