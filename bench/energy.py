"""Energy of a GPU measurement, from NVML's total-energy counter (nvidia-ml-py): read before and
after the timed steps, it gives joules per image, images per joule and the mean power. Where
there is no counter to read (a CPU, no NVML library, a GPU without the counter) the measurement
carries the reason instead of a number, so a row never shows an energy that was not measured."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Energy:
    """What the counter said over one window: joules (None when not measured, and why)."""

    joules: float | None
    seconds: float
    why_not: str = ""

    def metrics(self, images: int) -> dict[str, tuple[float, str]]:
        """energy_per_image (J), images_per_joule and power_mean (W); empty when not measured."""
        if self.joules is None or self.joules <= 0 or images <= 0 or self.seconds <= 0:
            return {}
        return {
            "energy_per_image": (self.joules / images, "J"),
            "images_per_joule": (images / self.joules, "img/J"),
            "power_mean": (self.joules / self.seconds, "W"),
        }


def pci_bus_id(device: torch.device) -> str:
    """The GPU's PCI address as NVML spells it ('00000000:19:00.0'), from CUDA's properties."""
    props = torch.cuda.get_device_properties(device)
    domain, bus, slot = (int(getattr(props, f"pci_{part}_id", 0)) for part in ("domain", "bus", "device"))
    return f"{domain:08X}:{bus:02X}:{slot:02X}.0"


class EnergyMeter:
    """NVML's counter of the GPU ``device`` is (matched by PCI bus id, so CUDA_VISIBLE_DEVICES
    cannot point it at another GPU); ``why_not`` says why there is none."""

    def __init__(self, device: torch.device):
        self.handle: Any = None
        self.why_not = ""
        if device.type != "cuda":
            self.why_not = f"energy is read from NVIDIA GPUs only (NVML); this ran on the {device.type}"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id(device))
            pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle)
        except ImportError:
            self.why_not = "nvidia-ml-py is not installed"
        except Exception as exc:  # noqa: BLE001 - NVMLError_* of every kind: no counter here
            self.handle = None
            self.why_not = f"NVML has no energy counter here ({type(exc).__name__}: {exc})"

    def millijoules(self) -> float | None:
        if self.handle is None:
            return None
        import pynvml

        return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def window(self, start_mj: float | None, seconds: float) -> Energy:
        """The energy since ``start_mj`` (a ``millijoules`` reading) over ``seconds``."""
        end = self.millijoules()
        if start_mj is None or end is None:
            return Energy(None, seconds, self.why_not)
        return Energy((end - start_mj) / 1e3, seconds)


def nvml_state(device: torch.device) -> dict[str, Any]:
    """Clocks (now and at most), the enforced power limit, persistence, MIG and ECC modes of the
    GPU as NVML reports them: what decides how fast and how hot a measurement ran. A key NVML
    cannot answer is left out; without NVML, ``nvml`` says why."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id(device))
    except Exception as exc:  # noqa: BLE001 - no NVML, no such GPU: the fingerprint says so
        return {"nvml": f"unavailable ({type(exc).__name__})"}
    readers: dict[str, Callable[[], Any]] = {
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
        "sm_clock_max_mhz": lambda: pynvml.nvmlDeviceGetMaxClockInfo(handle, pynvml.NVML_CLOCK_SM),
        "memory_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
        "power_limit_w": lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(handle) / 1000,
        "persistence_mode": lambda: bool(pynvml.nvmlDeviceGetPersistenceMode(handle)),
        "mig_mode": lambda: bool(pynvml.nvmlDeviceGetMigMode(handle)[0]),
        "ecc_mode": lambda: bool(pynvml.nvmlDeviceGetEccMode(handle)[0]),
    }
    state = {}
    for key, read in readers.items():
        with contextlib.suppress(Exception):  # a GPU without MIG or ECC raises NotSupported: left out
            state[key] = read()
    return state
