"""One process at a time per run folder: two ``run --resume`` (or ``train --resume``) of the same
folder would both train the same stages and race on its files. The lock is a file holding the
owner's host and PID, made atomically (``O_EXCL``); a lock whose process is gone (killed, machine
restarted) is stale and taken over, so a crash never leaves a folder locked for good."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from bench.errors import UserError

LOCK_NAME = ".unet-bench.lock"


class RunBusyError(UserError):
    """The run folder is in use by another unet-bench process."""


def process_alive(pid: int) -> bool:
    """Whether a process with ``pid`` runs on this machine (one of another user's counts). A
    zombie (killed, not yet reaped by its parent, e.g. a worker whose command waits for another
    worker) is gone: os.kill still finds it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc here: os.kill's answer stands
    return state not in ("Z", "X")


def _owner(path: Path) -> dict[str, object] | None:
    """The lock's owner, or None when the file is gone or unreadable (a lock cut short by a crash)."""
    try:
        owner = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _stale(owner: dict[str, object] | None) -> bool:
    """A lock nobody holds: unreadable, or its process is gone from this machine. A lock from
    another host cannot be checked from here and is never taken over."""
    if owner is None:
        return True
    pid = owner.get("pid")
    return owner.get("host") == socket.gethostname() and isinstance(pid, int) and not process_alive(pid)


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while the block runs; a live owner elsewhere is one line naming it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    mine = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(2):  # a stale lock is removed once, then taken like a free one
        try:
            with os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY), "w") as lock:
                lock.write(json.dumps(mine))
            break
        except FileExistsError:
            owner = _owner(path)
            if not _stale(owner):
                assert owner is not None
                raise RunBusyError(
                    f"{folder} is in use by unet-bench process {owner.get('pid')} on {owner.get('host')} (since "
                    f"{owner.get('since')}); wait for it to finish or stop it. If that process is gone (another "
                    f"machine restarted), delete {path}"
                ) from None
            path.unlink(missing_ok=True)
    else:
        raise RunBusyError(f"{folder}: another process took the lock {path} at the same moment; try again")
    try:
        yield
    finally:
        if _owner(path) == mine:
            path.unlink(missing_ok=True)
