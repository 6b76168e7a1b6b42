"""Checkpoints: written atomically, read back without unpickling arbitrary objects.

``torch.load(weights_only=True)`` refuses anything but tensors and plain containers, so a
checkpoint from an untrusted source cannot run code. A write goes to a temporary file that is
renamed into place: a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from bench.atomic import atomic_write_bytes
from bench.errors import UserError, first_line


class CheckpointError(UserError):
    """A file that is not a checkpoint this harness can use; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that holds more than tensors and plain data (possibly code)."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load tensors and plain data only; a pickle payload is refused with a clear error, and so
    is a file that holds something else than the dict of state ``save_checkpoint`` writes."""
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols are not the user's concern
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it holds objects other than tensors and plain data "
            f"(loaded with weights_only=True: {unpickler_reason(exc)})"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any other failure to decode (EOF, KeyError, ...) is a damaged file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a unet-bench checkpoint (it holds a {type(state).__name__}, not a dict)")
    return state


def unpickler_reason(exc: pickle.UnpicklingError) -> str:
    """What torch's weights-only unpickler refused (e.g. 'Trying to load unsupported GLOBAL
    posix.system ...'), without its first line's advice to load with ``weights_only=False``: the
    one thing a file from an untrusted source must never get, nor its requests for bug reports."""
    lines = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Please file an issue", "Check the documentation"))]
    return reasons[0].rstrip(".") if reasons else "unsupported content"


# training settings a resumed run may change: how long it goes on, and where it runs
RESUMABLE_CHANGES = frozenset({"epochs", "max_minutes", "budget", "target", "device", "channels_last", "compile"})


def resume_mismatch(saved: dict[str, Any], asked: dict[str, Any]) -> list[str]:
    """What a checkpoint's job (``saved``: its ``meta``) and the job a resume asks for
    (``asked``) disagree on, one 'key: saved -> asked' each; the run's length and device may
    change, nothing else (another variant, data, split or setting is another run)."""
    differences = []
    for key in sorted(saved.keys() | asked.keys()):
        old, new = saved.get(key), asked.get(key)
        if key == "train_cfg" and isinstance(old, dict) and isinstance(new, dict):
            differences += [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(old.keys() | new.keys())
                            if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]  # fmt: skip
        elif old != new:
            differences.append(f"{key}: {old!r} -> {new!r}")
    return differences


def check_resumable(path: Path, saved: dict[str, Any], asked: dict[str, Any]) -> None:
    """A CheckpointError naming every difference when ``path`` (its job: ``saved``) is not the
    run a resume asks for (``asked``)."""
    if differences := resume_mismatch(saved, asked):
        raise CheckpointError(f"{path} was trained with other settings; a resume must ask for the same run "
                              f"({'; '.join(differences)}): drop --resume or choose another -o")  # fmt: skip
