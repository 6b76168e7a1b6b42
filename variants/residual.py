"""Residual U-Nets: the paper's network with ResNet-style blocks (see ``blocks.ResidualBlock``)."""

from __future__ import annotations

from variants.unet import register_paper_variants

register_paper_variants("residual")
