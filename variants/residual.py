"""Residual U-Nets: the paper's network with ResNet-style blocks (see ``blocks.ResidualBlock``)."""

from __future__ import annotations

from variants.registry import register_variant
from variants.unet import UNetConfig


@register_variant("resunet")
def resunet() -> UNetConfig:
    """The paper's net with residual blocks (1x1 projection shortcuts when channels change)."""
    return UNetConfig(block="residual")


@register_variant("resunet-bn-same")
def resunet_bn_same() -> UNetConfig:
    """Residual blocks with batch norm and same padding, the common modern ResUNet recipe."""
    return UNetConfig(block="residual", norm="batch", padding="same")
