"""Inception U-Nets: the paper's network with multi-branch blocks (see ``blocks.InceptionBlock``)."""

from __future__ import annotations

from typing import Any

from variants.unet import register_paper_variants

# name -> (description, the fields that differ from the paper's network)
INCEPTION_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "inception-unet": (
        "The paper's net with inception blocks: 1x1, 3x3, 3x3-3x3 and pool-1x1 branches.",
        {"block": "inception"},
    ),
    "inception-unet-bn-same": (
        "Inception blocks with batch norm and same padding.",
        {"block": "inception", "norm": "batch", "padding": "same"},
    ),
}

register_paper_variants(INCEPTION_VARIANTS)
