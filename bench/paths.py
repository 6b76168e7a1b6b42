"""Names from data that become file or folder names: each must be one safe path part, so a suite
named ``../../x``, a study named ``/etc`` or a run folder called ``..`` can never make unet-bench
write outside the folders the user named."""

from __future__ import annotations

import re

from bench.errors import UserError

# letters, digits and . _ + - only: no separator, no NUL, nothing a shell or a file system reads specially
SAFE_PART = re.compile(r"[A-Za-z0-9._+-]+")
MAX_PART = 120  # well under every file system's 255-byte name limit, with room for prefixes and suffixes


class UnsafeNameError(UserError):
    """A name that would become a path but is not one plain folder or file name."""


def safe_part(name: str, what: str) -> str:
    """``name`` unchanged when it is one safe path part: not empty, not ``.`` or ``..``, only
    ``[A-Za-z0-9._+-]`` (so no separator, drive or NUL), not starting with ``-`` or ``.`` (no
    option look-alikes, no hidden files) and at most ``MAX_PART`` characters; else one line
    naming ``what`` the name is for."""
    if SAFE_PART.fullmatch(name) and name[0] not in ".-" and len(name) <= MAX_PART:
        return name
    raise UnsafeNameError(
        f"{what} {name!r} cannot be used as a file or folder name: use 1-{MAX_PART} letters, digits and . _ + - "
        "(not starting with . or -), no path separators"
    )
