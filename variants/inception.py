"""Inception U-Nets: the paper's network with multi-branch blocks (see ``blocks.InceptionBlock``)."""

from __future__ import annotations

from variants.registry import register_variant
from variants.unet import UNetConfig


@register_variant("inception-unet")
def inception_unet() -> UNetConfig:
    """The paper's net with inception blocks: 1x1, 3x3, 3x3-3x3 and pool-1x1 branches."""
    return UNetConfig(block="inception")


@register_variant("inception-unet-bn-same")
def inception_unet_bn_same() -> UNetConfig:
    """Inception blocks with batch norm and same padding."""
    return UNetConfig(block="inception", norm="batch", padding="same")
