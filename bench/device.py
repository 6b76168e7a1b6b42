"""Which device a job or a measurement runs on."""

from __future__ import annotations

import torch

from variants.overrides import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` (a GPU when there is one), ``cpu``, ``cuda`` or ``cuda:N``; a device this machine
    lacks is the user's to fix, so it is a ConfigError, not torch's error deep in a run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"device {name!r} is not a device name; use auto, cpu, cuda or cuda:N", key="device"
        ) from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise ConfigError(f"device {name!r}: no such CUDA device on this machine; use auto or cpu", key="device")
    return device
