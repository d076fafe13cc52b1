"""The one error type of the data layer (its own module so that every data module can raise it)."""

from __future__ import annotations

from hotpose.errors import UserError


class DataError(UserError, ValueError):
    """A data file is missing, unreadable or inconsistent; the message names the file and the problem."""
