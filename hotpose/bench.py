"""``python -m hotpose.bench <name> [options]``: run the benchmark module ``hotpose.benchmarks.<name>``."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import hotpose.benchmarks


def available() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(hotpose.benchmarks.__path__))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m hotpose.bench {{{','.join(names)}}} [options]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"unknown benchmark {name!r}; choose one of {', '.join(names)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"hotpose.benchmarks.{name}").main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
