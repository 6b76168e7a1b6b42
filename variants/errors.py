"""The one base class of the errors a user can cause and fix.

It lives in ``variants``, the lower layer, so that model configs and the harness derive from the
same class without an import cycle; ``bench.errors`` re-exports it.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input, a missing or damaged file, a full disk, an unusable storage: something the user
    can fix. ``unet-bench`` prints the message as one line and exits 2; any other exception is a
    bug in unet-bench and shows its traceback."""
