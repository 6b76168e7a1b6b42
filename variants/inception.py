"""Inception U-Nets: the paper's network with multi-branch blocks (see ``blocks.InceptionBlock``)."""

from __future__ import annotations

from variants.unet import register_paper_variants

register_paper_variants("inception")
