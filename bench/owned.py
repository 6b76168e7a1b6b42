"""Output folders unet-bench shares with their user: a manifest lists the files it wrote there.

A command that writes into a folder the user names lists each file in the folder's manifest
(``.unet-bench-report``, ``.unet-bench-predict``, ...) before writing it, and refuses, before
writing anything, a folder holding a file it would replace (or, for a command that owns its whole
folder, any file) that the manifest does not list. A user's own file is never overwritten, and a
command killed half-way leaves no file of its own that the next run would take for the user's.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from bench.atomic import atomic_write_bytes
from bench.errors import UserError


class ForeignFileError(UserError):
    """An output folder holding a file unet-bench did not write: it is never replaced."""


def claimed(folder: Path, manifest: str) -> set[str]:
    """The files ``folder``'s manifest lists (relative, with ``/``)."""
    path = folder / manifest
    lines = path.read_text().splitlines() if path.is_file() else []
    return {line for line in lines if line and not line.startswith("#")}


def claim(folder: Path, manifest: str, names: Iterable[str], what: str) -> None:
    """List ``names`` in ``folder``'s manifest before they are written (``what`` wrote them)."""
    listed = claimed(folder, manifest)
    if not set(names) <= listed:
        write_manifest(folder, manifest, listed | set(names), what)


def write_manifest(folder: Path, manifest: str, names: Iterable[str], what: str) -> None:
    header = f"# files unet-bench wrote in this folder; {what} replaces these and no others"
    atomic_write_bytes(folder / manifest, "\n".join([header, *sorted(names)]).encode() + b"\n")


def check_owned(
    folder: Path, manifest: str, paths: Iterable[Path], advice: str, error: type[UserError] = ForeignFileError
) -> None:
    """Refuse (``error``, with ``advice``) a folder where any existing file of ``paths`` is not in
    its manifest, or that is not a folder at all."""
    if folder.exists() and not folder.is_dir():
        raise error(f"{folder}: not a folder; nothing was written: {advice}")
    ours = claimed(folder, manifest)
    for path in paths:
        if (path.is_file() or path.is_symlink()) and path.relative_to(folder).as_posix() not in ours:
            raise error(
                f"{path}: not written by unet-bench (no {manifest} lists it); nothing was written: {advice}, "
                "or move the file away"
            )


def check_whole_folder(folder: Path, manifest: str, advice: str) -> None:
    """``check_owned`` over every file under ``folder`` but the manifest: for a command that
    owns the whole folder it writes to."""
    files = sorted(p for p in folder.rglob("*") if p.name != manifest) if folder.is_dir() else []
    check_owned(folder, manifest, files, advice)


def drop_stale(folder: Path, manifest: str, written: Iterable[str], what: str) -> None:
    """Delete the files the manifest lists that this run did not write (a figure an earlier
    report drew and this one does not), and list only ``written``: a regenerated folder holds
    what its page shows and nothing stale. Only manifest-listed files are touched."""
    keep = set(written)
    for name in sorted(claimed(folder, manifest) - keep):
        (folder / name).unlink(missing_ok=True)
    write_manifest(folder, manifest, keep, what)
