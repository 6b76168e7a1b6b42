"""Error types shared by modules that should not import each other, and the one base class of
every error a user can cause and fix (``UserError``, defined in ``variants``, the lower layer).
The CLI catches ``UserError`` alone: any other exception is a bug and shows its traceback."""

from __future__ import annotations

from variants.errors import UserError

__all__ = [
    "DiskFullError",
    "DoesNotFitError",
    "SearchError",
    "StorageError",
    "UsageError",
    "UserError",
    "WorkerError",
    "first_line",
]


def first_line(exc: BaseException) -> str:
    """The first line of an error's message ("" when it has none), for one-line reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class UsageError(UserError):
    """A command line that lacks an option it needs or gives one in the wrong form."""


class StorageError(UserError):
    """A storage URL that cannot be used; the message never shows the password."""


class DiskFullError(UserError):
    """A write that found no space (or hit a file-size cap); the message names the file and
    says that nothing was half-written."""


class WorkerError(UserError):
    """A search worker process that stopped with an error (printed by the worker itself)."""


class SearchError(UserError):
    """A search that cannot give what was asked of it (no trial completed)."""


class DoesNotFitError(UserError):
    """A configuration that does not fit in memory where no out-of-memory row can stand in for
    its result (a search trial's costs are needed to rank it)."""
