"""Progress bars of the long non-training work: drawn on terminals only, never in the way of the results."""

from __future__ import annotations

import io

from rich.console import Console

from hotpose.progress import progress, track


def _console(terminal: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=100)


def test_bar_counts_every_item_on_a_terminal() -> None:
    console = _console(True)
    assert list(track(range(5), "lifting", console=console)) == [0, 1, 2, 3, 4]
    text = console.file.getvalue()
    assert "lifting" in text and "5/5" in text


def test_nothing_is_drawn_off_a_terminal() -> None:
    console = _console(False)
    assert list(track(iter("abc"), "rendering", total=3, console=console)) == ["a", "b", "c"]
    with progress("exporting", console=console) as advance:
        advance(1)
    assert console.file.getvalue() == ""


def test_spinner_without_total_and_forced_display() -> None:
    console = _console(False)
    with progress("exporting onnx", enabled=True, console=console):
        pass
    assert "exporting onnx" in console.file.getvalue()
