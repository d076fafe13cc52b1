"""Benchmarks run with ``python -m hotpose.bench <name> [options]``; one module per benchmark."""
