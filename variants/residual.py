"""Residual U-Nets: the paper's network with ResNet-style blocks (see ``blocks.ResidualBlock``)."""

from __future__ import annotations

from typing import Any

from variants.unet import register_paper_variants

# name -> (description, the fields that differ from the paper's network)
RESIDUAL_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "resunet": (
        "The paper's net with residual blocks (1x1 projection shortcuts when channels change).",
        {"block": "residual"},
    ),
    "resunet-bn-same": (
        "Residual blocks with batch norm and same padding, the common modern ResUNet recipe.",
        {"block": "residual", "norm": "batch", "padding": "same"},
    ),
}

register_paper_variants(RESIDUAL_VARIANTS)
