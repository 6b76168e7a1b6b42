"""The unetbench model zoo: one registry of U-Net variants (see ``variants.registry``)."""

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
