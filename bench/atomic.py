"""Atomic file writes: a reader sees the old file or the new one, never a half-written one."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from bench.errors import DiskFullError

# a full disk, a full quota, or a file-size cap: the user frees space and reruns
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, flush it to disk, rename it into place.

    A crash, a kill or a full disk before the rename leaves ``path`` as it was, and the
    temporary file is removed when the write fails; running out of space raises
    ``DiskFullError`` naming the file.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _no_space(path, exc) if exc.errno in NO_SPACE else exc from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            raise _no_space(path, exc) from None
        raise
    return path


def _no_space(path: Path, exc: OSError) -> DiskFullError:
    return DiskFullError(
        f"{path}: {os.strerror(exc.errno or errno.ENOSPC).lower()} while writing it; nothing was half-written and "
        "every result finished before is intact: free some space and rerun (--resume continues a run)"
    )
