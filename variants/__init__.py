"""The unetbench model zoo: one registry of U-Net variants (see ``variants.registry``).

The names below are loaded on first use, so that importing ``variants.errors`` (the base class of
every user error, which light harness modules such as the results store derive from) does not
import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from variants.errors import UserError
    from variants.overrides import ConfigError
    from variants.registry import (
        ModelConfig,
        UnknownVariantError,
        VariantSpec,
        count_parameters,
        create_model,
        forward_flops,
        get_variant,
        list_variants,
        register_variant,
        resolve_config,
        summarize_variant,
    )
    from variants.sizes import InvalidInputSize

__all__ = [
    "ConfigError",
    "InvalidInputSize",
    "ModelConfig",
    "UnknownVariantError",
    "UserError",
    "VariantSpec",
    "count_parameters",
    "create_model",
    "forward_flops",
    "get_variant",
    "list_variants",
    "register_variant",
    "resolve_config",
    "summarize_variant",
]


# where the exported names live, the modules that import no torch first
_HOMES = ("variants.errors", "variants.overrides", "variants.sizes", "variants.registry")


def __getattr__(name: str) -> Any:
    """``from variants import X`` imports X's module now, not when the package is imported."""
    if name in __all__:
        for home in _HOMES:
            module = importlib.import_module(home)
            if hasattr(module, name):
                return getattr(module, name)
    raise AttributeError(f"module 'variants' has no attribute {name!r}")
