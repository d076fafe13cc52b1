"""What a user mistake is, and how every entry point reports one: one line, exit status 2.

A :class:`UserError` says the input was wrong (a file, key, value or option), names it and what to do; the
command prints ``error: <message>`` on stderr and exits 2, without a traceback. Anything else that goes
wrong is a bug in hotpose and keeps its traceback (exit status 1). Exit statuses: 0 done, 1 bug,
2 user mistake, 3 stopped by SIGTERM with a checkpoint to resume from (see :mod:`hotpose.preemption`).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

#: exit status of a command stopped by a user mistake
USER_ERROR_EXIT = 2

F = TypeVar("F", bound=Callable[..., Any])


class UserError(Exception):
    """A mistake in what the user gave; the message names the file, key or value and what to do."""


class ConfigError(UserError, ValueError):
    """A configuration that cannot run (refused before the first step)."""


def exit_on_user_error(error: BaseException) -> None:
    """Print ``error: <first line>`` on stderr and exit :data:`USER_ERROR_EXIT`."""
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(USER_ERROR_EXIT)


@contextmanager
def user_errors_exit(*also: type[BaseException]) -> Iterator[None]:
    """Turn :class:`UserError` (and the types in ``also``) into one line and exit status 2."""
    try:
        yield
    except (UserError, *also) as error:
        exit_on_user_error(error)


def one_line_user_errors(*also: type[BaseException]) -> Callable[[F], F]:
    """Decorator form of :func:`user_errors_exit` for ``main`` functions (put it under ``@hydra.main``)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            with user_errors_exit(*also):
                return fn(*args, **kwargs)

        return run  # type: ignore[return-value]

    return wrap


def _missing_keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted keys set to ``???`` (walked without resolving interpolations, which may need other keys)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    keys = node.keys() if isinstance(node, DictConfig) else range(len(node)) if isinstance(node, ListConfig) else ()
    for key in keys:
        if not prefix and key == "hydra":  # Hydra's own node (tests compose with it): not the user's to set
            continue
        if OmegaConf.is_missing(node, key):
            yield f"{prefix}{key}"
        elif not OmegaConf.is_interpolation(node, key):
            yield from _missing_keys(node[key], f"{prefix}{key}.")


def check_required(cfg: Any) -> None:
    """Refuse a configuration with mandatory values (``???``) left unset, naming each key."""
    missing = sorted(_missing_keys(cfg))
    if missing:
        keys = ", ".join(missing)
        example = " ".join(f"{k}=..." for k in missing)
        raise ConfigError(f"{keys} {'is' if len(missing) == 1 else 'are'} not set: add {example} to the command")


def writable_folder(folder: Any, key: str) -> Any:
    """Create ``folder`` (a Path) and check that files can be written in it; :class:`ConfigError` naming
    ``key`` otherwise."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise ConfigError(f"{key}={folder}: cannot write there ({error.strerror or error}); choose another "
                          "folder") from None
    return folder
