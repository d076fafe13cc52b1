"""Numeric precision of a model at inference: ``float32``, ``bf16`` (autocast) or ``int8``.

PROVISIONAL (issue 14's branch): the minimal version of the contract shared with issue 11, whose module
replaces this one. ``prepare_model`` readies the network for a precision, ``autocast`` is the context its
forward passes run in. This version runs float32 and bf16; it refuses int8 with a clear message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager

import torch
from torch import nn

PRECISIONS = ("float32", "bf16", "int8")


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS` and available here; ValueError otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "int8":
        raise ValueError("precision='int8' is not available in this build (float32 and bf16 are); "
                         "use precision=float32 or precision=bf16")
    return precision


def prepare_model(model: nn.Module, precision: str, device: str | torch.device = "cpu") -> nn.Module:
    """``model`` on ``device`` in eval mode, ready to run at ``precision`` (weights stay float32: bf16 is
    applied by :func:`autocast`)."""
    check_precision(precision)
    return model.to(device).eval()


def autocast(precision: str, device: str | torch.device = "cpu") -> AbstractContextManager[None]:
    """The context the forward passes run in: nothing for float32, ``torch.autocast(bfloat16)`` for bf16."""
    check_precision(precision)
    if precision == "float32":
        return contextlib.nullcontext()
    return _bf16(torch.device(device).type)


@contextlib.contextmanager
def _bf16(device_type: str) -> Iterator[None]:
    with torch.autocast(device_type=device_type, dtype=torch.bfloat16):
        yield
