"""The environment fingerprint stored with every result: what ran it, on what.

Two numbers are only comparable when the fingerprints say the same hardware and software (or
say how they differ); reports print it in their Environment table. ``unet-bench compare`` does
not show it: it compares the numbers of two runs only.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

import torch

from bench.energy import nvml_state
from bench.schema import ENVIRONMENT_COLUMNS

REPO = Path(__file__).resolve().parents[1]


def _git(*args: str) -> str:
    """What ``git ARGS`` prints in this checkout (empty when it fails)."""
    result = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False)
    return result.stdout.strip()


@functools.lru_cache(maxsize=1)
def git_sha() -> str:
    """Commit of this checkout, ``+dirty`` when tracked files differ; empty outside git.
    ``UNETBENCH_GIT_SHA`` overrides it: a lent GPU machine gets a copy of the working tree whose
    ``.git`` (if any) need not be the commit that tree holds."""
    if override := os.environ.get("UNETBENCH_GIT_SHA"):
        return override
    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{sha}+dirty" if sha and dirty else sha


def cpu_id() -> str:
    """CPU family and model numbers ('25/17'): a virtual machine's model name may say only 'AMD
    EPYC', and two generations behind one name pick different kernels."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return ""
    fields = {key.strip(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
    return f"{fields['cpu family']}/{fields.get('model', '')}" if fields.get("cpu family") else ""


# beyond torch, the libraries whose arithmetic reaches a stored number: the same job scored
# differently on two machines, and nothing said which versions each had
NUMERIC_PACKAGES = ("numpy", "scipy", "scikit-image", "segmentation-models-pytorch", "monai", "timm")


def package_versions() -> dict[str, str]:
    """Installed versions of ``NUMERIC_PACKAGES`` (those missing left out)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in NUMERIC_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_model()


def fingerprint(device: torch.device | None = None) -> dict[str, Any]:
    """Device name and count, driver, CUDA, cuDNN, torch, CPU model, threads, git sha, host; on a
    GPU also its clocks, power limit, persistence, MIG and ECC modes (``energy.nvml_state``)."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return dict(_fingerprint(str(device)), cpu_threads=torch.get_num_threads())


@functools.lru_cache(maxsize=8)
def _fingerprint(device_text: str) -> dict[str, Any]:
    device = torch.device(device_text)
    info: dict[str, Any] = {
        "device": device.type,
        "device_name": device_name(device),
        "device_count": torch.cuda.device_count() if device.type == "cuda" else 1,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda or "",
        "cudnn_version": str(torch.backends.cudnn.version() or "") if torch.backends.cudnn.is_available() else "",
        "driver_version": "",
        "cpu_model": cpu_model(),
        "cpu_id": cpu_id(),
        # with the thread count, what decides a CPU result's last digits: the same training job
        # scored 0.553 validation V_rand on one thread and 0.561 on two
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git_sha": git_sha(),
        "host": socket.gethostname(),
    }
    if device.type == "cuda":
        try:
            out = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.split()
            info["driver_version"] = out[0] if out else ""
        except (OSError, subprocess.SubprocessError):
            pass
        props = torch.cuda.get_device_properties(device)
        info["device_memory_gib"] = round(props.total_memory / 2**30, 1)
        info.update(nvml_state(device))  # clocks, power limit, persistence, MIG, ECC
    return info


def row_identity(device: torch.device) -> dict[str, Any]:
    """The fingerprint fields that are columns of every result row."""
    fp = fingerprint(device)
    return {k: fp[k] for k in ENVIRONMENT_COLUMNS}


def row_environment(device: torch.device) -> dict[str, Any]:
    """The rest of the fingerprint (device count, driver, cuDNN, CPU model, threads, ...), which
    rows carry in ``extra["env"]`` so that every measurement names everything it ran on."""
    return {k: v for k, v in fingerprint(device).items() if k not in ENVIRONMENT_COLUMNS}
