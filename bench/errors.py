"""Error types shared by modules that should not import each other (the CLI catches them
without importing Optuna or torch-heavy modules first)."""

from __future__ import annotations


class StorageError(RuntimeError):
    """A storage URL that cannot be used; the message never shows the password."""
