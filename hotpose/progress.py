"""Rich progress bars for long work outside Lightning's loops (lifting, rendering, export checks).

Training shows Lightning's ``RichProgressBar``; these give the other entry points the same look. They draw
on stderr and only when it is a terminal (logs, pipes and tests stay clean), unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


def _console(console: Any = None) -> Any:
    from rich.console import Console

    return console if console is not None else Console(stderr=True)


@contextmanager
def progress(description: str, total: float | None = None, *, enabled: bool | None = None,
             console: Any = None) -> Iterator[Callable[[float], None]]:
    """A bar (``total`` known) or a spinner with the elapsed time (``total=None``) while the block runs.

    Yields ``advance(n=1)``. ``enabled=None`` draws only when the console is a terminal.
    """
    console = _console(console)
    if not (console.is_terminal if enabled is None else enabled):
        yield lambda n=1: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [SpinnerColumn(), TextColumn("{task.description}")]
    if total is not None:
        columns += [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def track(items: Iterable[T], description: str, total: float | None = None, **kwargs: Any) -> Iterator[T]:
    """``items`` one by one, advancing a :func:`progress` bar after each."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress(description, total, **kwargs) as advance:
        for item in items:
            yield item
            advance(1)
