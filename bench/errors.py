"""Error types shared by modules that should not import each other (the CLI catches them
without importing Optuna or torch-heavy modules first)."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an error's message ("" when it has none), for one-line reports."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


class StorageError(RuntimeError):
    """A storage URL that cannot be used; the message never shows the password."""


class DiskFullError(OSError):
    """A write that found no space (or hit a file-size cap); the message names the file and
    says that nothing was half-written."""

    def __str__(self) -> str:  # the message alone, without OSError's "[Errno 28]" prefix
        return str(self.strerror)


class WorkerError(RuntimeError):
    """A search worker process that stopped with an error (printed by the worker itself)."""
