"""The one registry of U-Net variants.

A variant is a *named config*: a short function returning a frozen config dataclass of some
family. The config knows how to build its model and which input sizes it accepts, so the registry
itself stays family-agnostic::

    @register_variant("unet-gelu")
    def unet_gelu() -> UNetConfig:
        "The paper's U-Net with GELU instead of ReLU."
        return UNetConfig(padding="same", activation="gelu")
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from variants.errors import UserError
from variants.overrides import apply_overrides, near_matches


@runtime_checkable
class ModelConfig(Protocol):
    """What every family's frozen config dataclass provides."""

    # read-only members: every family's config is a frozen dataclass
    @property
    def family(self) -> str:
        """ "unet", "residual", "inception", "smp", ..."""

    @property
    def in_channels(self) -> int: ...

    @property
    def num_classes(self) -> int: ...

    def build(self) -> nn.Module:
        """Assemble the network (weights initialised; nothing downloaded)."""

    def output_size(self, input_size: int) -> int:
        """Output side length for a square input; raises InvalidInputSize if not accepted."""

    def valid_input_size(self, near: int) -> int:
        """The accepted input side length closest to ``near`` (ties go up)."""

    def input_size(self, output_size: int) -> int:
        """The input side giving ``output_size`` (overlap-tile needs it); raises InvalidInputSize."""

    def tiny(self) -> ModelConfig:
        """A copy small enough to train in seconds on a CPU, for tests and smoke runs."""

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """Overrides that multiply every channel width by ``width_scale`` within the library's
        rules (a suite's ``[model] width_scale``: variants compared at CPU size keep their ratios)."""


class UnknownVariantError(UserError):
    """A variant name not in the registry; the message suggests the nearest names."""


@dataclass(frozen=True)
class VariantSpec:
    """A registered variant: its name, a one-line description, its default config, the library its
    network comes from ("ours" for the in-house families) and the paper(s) it implements."""

    name: str
    config: ModelConfig
    description: str
    source: str
    citation: str

    @property
    def family(self) -> str:
        return self.config.family


_REGISTRY: dict[str, VariantSpec] = {}

# Each family's source library and the paper its variants implement unless a variant names its own
# (a library family's variants do: the architecture's paper). A new family adds its line here.
FAMILY_SOURCES: dict[str, tuple[str, str]] = {
    "unet": ("ours", "Ronneberger et al. 2015"),
    "residual": ("ours", "He et al. 2016; Zhang et al. 2018 (ResUNet)"),
    "inception": ("ours", "Szegedy et al. 2015"),
    "smp": ("segmentation_models_pytorch", "Iakubovskii 2019"),
    "monai": ("monai", "Cardoso et al. 2022"),
    "nnunet": ("dynamic-network-architectures", "Isensee et al. 2021"),
}


def scale_width(width: int, scale: float, multiple: int = 1, minimum: int = 1) -> int:
    """``width * scale`` rounded to a multiple of ``multiple``, at least ``minimum`` (which a
    library's own rule sets: SwinUNETR's 12, an attention gate's 2)."""
    return max(minimum, multiple * round(width * scale / multiple))


def register_variant(
    name: str, citation: str | None = None
) -> Callable[[Callable[[], ModelConfig]], Callable[[], ModelConfig]]:
    """Register the config returned by the decorated function under ``name``.

    The function's docstring is the variant's description; ``citation`` replaces the family's.
    Registering a name twice is an error: silently replacing a variant would make two results with
    the same name mean different nets.
    """

    def decorator(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
        description = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        register_config(name, fn(), description, citation)
        return fn

    return decorator


def register_config(name: str, config: ModelConfig, description: str, citation: str | None = None) -> None:
    """Register ``config`` under ``name`` (what ``register_variant`` does with its function's
    result; a family's table of one-line variants calls it directly)."""
    if name in _REGISTRY:
        raise ValueError(f"variant {name!r} is already registered")
    if not isinstance(config, ModelConfig):
        raise TypeError(f"variant {name!r}: {config!r} is not a family config")
    if config.family not in FAMILY_SOURCES:
        raise ValueError(f"variant {name!r}: family {config.family!r} needs a line in FAMILY_SOURCES")
    source, family_citation = FAMILY_SOURCES[config.family]
    _REGISTRY[name] = VariantSpec(name, config, description, source, citation or family_citation)


# Importing a family module registers its variants. A new family adds its module here.
FAMILY_MODULES = (
    "variants.unet",
    "variants.residual",
    "variants.inception",
    "variants.smp",
    "variants.monai",
    "variants.nnunet",
)


def _ensure_families_loaded() -> None:
    # Done lazily, on first look-up, because the family modules import this one.
    for module in FAMILY_MODULES:
        importlib.import_module(module)


def get_variant(name: str) -> VariantSpec:
    """The spec registered under ``name``; an unknown name lists the nearest ones."""
    _ensure_families_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = near_matches(name, _REGISTRY, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownVariantError(
            f"unknown variant {name!r}.{hint} `unet-bench list` shows all {len(_REGISTRY)} variants."
        ) from None


def list_variants(pattern: str | None = None) -> list[str]:
    """Registered names, sorted, optionally filtered by a shell-style pattern such as ``'res*'``."""
    _ensure_families_loaded()
    names = sorted(_REGISTRY)
    if pattern:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def resolve_config(name: str, **overrides: Any) -> ModelConfig:
    """The variant's config with type-checked overrides applied (errors name the bad key)."""
    return apply_overrides(get_variant(name).config, overrides, owner=name)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build variant ``name``, e.g. ``create_model('unet-original', base_width=16)``."""
    return resolve_config(name, **overrides).build()


def build_off_meta(build: Callable[[], nn.Module]) -> nn.Module:
    """``build()``, run on the CPU when the default device is meta, then moved there.

    Some libraries read their drop-path rates with ``.item()`` while building (SwinUNETR, smp's
    Mix Transformer), which the meta device, where parameters and FLOPs are counted, cannot answer.
    """
    device = torch.get_default_device()
    if device.type != "meta":
        return build()
    with torch.device("cpu"):
        model = build()
    return model.to(device)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def forward_flops(config: ModelConfig, input_size: int) -> int:
    """Forward FLOPs for one image, counted by ``torch.utils.flop_counter`` on the meta device.

    The meta device runs shape logic only, so counting a 31M-parameter net at 572x572 is instant.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = config.build().eval()
        x = torch.empty(1, config.in_channels, input_size, input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


REFERENCE_INPUT = 572  # the paper's tile side; each variant reports at its nearest accepted size


def summarize_variant(name: str, near_input: int = REFERENCE_INPUT) -> dict[str, Any]:
    """Name, family, source library, citation, parameters, forward GFLOPs and output size at the accepted input nearest
    ``near_input`` - the row of ``unet-bench list``. Built on the meta device: nothing allocated.
    """
    spec = get_variant(name)
    config = spec.config
    input_size = config.valid_input_size(near_input)
    with torch.device("meta"):
        params = count_parameters(config.build())
    return {
        "name": name,
        "family": spec.family,
        "source": spec.source,
        "citation": spec.citation,
        "params": params,
        "gflops": round(forward_flops(config, input_size) / 1e9, 3),
        "input_size": input_size,
        "output_size": config.output_size(input_size),
        "description": spec.description,
    }
