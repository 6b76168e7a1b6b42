"""The configurable U-Net family; ``unet-original`` is the exact network of Ronneberger et al. 2015.

Every design axis is a field of ``UNetConfig``; the plain, residual and inception U-Nets differ
only in ``block``. The module ``__init__`` only assembles parts, as in segmentation-models-pytorch.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from variants.blocks import (
    BLOCKS,
    Activation,
    Attention,
    AttentionGate,
    BlockKind,
    ConvSpec,
    Norm,
    Padding,
    Upsample,
    center_crop,
    init_he_normal,
    make_upsample,
)
from variants.concat_buffers import ConcatBuffers
from variants.overrides import ConfigError, apply_overrides
from variants.registry import register_config, scale_width
from variants.sizes import closest_accepted, encoder_decoder_input, encoder_decoder_output, refuse

_FAMILY_OF_BLOCK = {"plain": "unet", "residual": "residual", "inception": "inception"}


@dataclass(frozen=True)
class UNetConfig:
    """One U-Net. The defaults are the paper's network (572x572 -> 388x388, 31,030,658 params).

    ``attention="additive"`` puts an attention gate (Oktay et al. 2018, ``blocks.AttentionGate``)
    on every skip: the skip, cropped to the decoder's size, is scaled by coefficients computed from
    it and the coarser decoder level. ``"none"`` is the paper's crop-and-copy.
    """

    in_channels: int = 1
    num_classes: int = 2
    base_width: int = 64
    width_multiplier: float = 2.0  # channels grow by this factor at every level
    depth: int = 4  # number of 2x2 max-pools
    kernel_size: int = 3
    activation: Activation = "relu"
    norm: Norm = "none"
    padding: Padding = "valid"
    upsample: Upsample = "transpose"
    block: BlockKind = "plain"
    attention: Attention = "none"  # gate on the skip connections
    dropout: float = 0.5  # at the end of the contracting path
    group_norm_groups: int = 8

    def __post_init__(self) -> None:
        problems = []  # (key, problem): the first key is the one a suite's error line names
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            problems.append(("kernel_size", f"kernel_size must be odd and positive, got {self.kernel_size}"))
        if self.depth < 1:
            problems.append(("depth", f"depth must be at least 1, got {self.depth}"))
        for name in ("base_width", "in_channels", "num_classes"):
            if getattr(self, name) < 1:
                problems.append((name, f"{name} must be positive, got {getattr(self, name)}"))
        if not (math.isfinite(self.width_multiplier) and self.width_multiplier > 0):
            problems.append(("width_multiplier", f"width_multiplier must be positive, got {self.width_multiplier}"))
        if not 0.0 <= self.dropout < 1.0:
            problems.append(("dropout", f"dropout must be in [0, 1), got {self.dropout}"))
        if problems:
            raise ConfigError("; ".join(problem for _, problem in problems), key=problems[0][0])

    @property
    def family(self) -> str:
        return _FAMILY_OF_BLOCK[self.block]

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels at each level, from the full-resolution level down to the bottleneck."""
        return tuple(max(1, round(self.base_width * self.width_multiplier**i)) for i in range(self.depth + 1))

    @property
    def conv_spec(self) -> ConvSpec:
        return ConvSpec(self.kernel_size, self.padding, self.activation, self.norm, self.group_norm_groups)

    def _accepts(self, size: int) -> bool:
        if self.padding == "same":
            return size > 0 and size % 2**self.depth == 0
        return encoder_decoder_output(size, self.depth, self.conv_spec.block_shrink) is not None

    def output_size(self, input_size: int) -> int:
        if not self._accepts(input_size):
            why = (
                f"the side must be divisible by 2**depth = {2**self.depth}"
                if self.padding == "same"
                else "every 2x2 max-pool needs an even side after the unpadded convolutions"
            )
            raise refuse(f"this U-Net (padding={self.padding}, depth={self.depth})", input_size, self._accepts, why)
        if self.padding == "same":
            return input_size
        return encoder_decoder_output(input_size, self.depth, self.conv_spec.block_shrink)  # type: ignore[return-value]

    def valid_input_size(self, near: int) -> int:
        return closest_accepted(near, self._accepts)

    def input_size(self, output_size: int) -> int:
        if self.padding == "same":
            self.output_size(output_size)  # raises with the nearest sizes if refused
            return output_size
        shrink = self.conv_spec.block_shrink

        def gives(size: int) -> bool:
            return encoder_decoder_input(size, self.depth, shrink) is not None

        if not gives(output_size):
            raise refuse(
                f"this U-Net (padding=valid, depth={self.depth})", output_size, gives, "no input maps to it", "output"
            )
        return encoder_decoder_input(output_size, self.depth, shrink)  # type: ignore[return-value]

    def tiny(self) -> UNetConfig:
        return dataclasses.replace(self, base_width=min(self.base_width, 4 if self.block != "inception" else 8))

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """The base width scaled; every level's width follows it through ``width_multiplier``."""
        return {"base_width": scale_width(self.base_width, width_scale)}

    def build(self) -> nn.Module:
        return UNet(self)


class UNet(nn.Module):
    """Contracting path, bottleneck, expanding path with crop-and-copy skips (optionally gated), 1x1 head."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        spec = config.conv_spec
        block = BLOCKS[config.block]
        w = config.widths
        self.encoder = nn.ModuleList(
            block(config.in_channels if i == 0 else w[i - 1], w[i], spec) for i in range(config.depth)
        )
        self.pool = nn.MaxPool2d(2, stride=2)
        self.bottleneck = block(w[-2], w[-1], spec)
        self.dropout = nn.Dropout(config.dropout)
        self.up = nn.ModuleList(make_upsample(config.upsample, w[i + 1], w[i]) for i in reversed(range(config.depth)))
        self.decoder = nn.ModuleList(block(2 * w[i], w[i], spec) for i in reversed(range(config.depth)))
        self.gates = (
            nn.ModuleList(AttentionGate(w[i], w[i + 1]) for i in reversed(range(config.depth)))
            if config.attention == "additive"
            else None
        )
        self.head = nn.Conv2d(w[0], config.num_classes, kernel_size=1)
        init_he_normal(self)
        self.concat_buffers: ConcatBuffers | None = None  # the fast path's preallocated skips, when on

    def use_concat_buffers(self, on: bool = True) -> None:
        """Write each skip and its up-sampled map into a buffer kept across steps instead of a
        new ``torch.cat`` output (same values and gradients; a profile setting, issue 20)."""
        self.concat_buffers = ConcatBuffers() if on else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for level, (up, dec, skip) in enumerate(zip(self.up, self.decoder, reversed(skips))):
            coarse = x
            x = up(x)
            skip = center_crop(skip, x.shape[-2], x.shape[-1])
            if self.gates is not None:
                skip = self.gates[level](skip, coarse)
            x = dec(self.concat_buffers.cat(level, skip, x) if self.concat_buffers else torch.cat([skip, x], dim=1))
        return self.head(x)


# --- registered variants: each changes one axis of the paper's network -----------------------

PAPER_VARIANTS = Path(__file__).with_name("paper_variants.toml")


def register_paper_variants(family_module: str) -> None:
    """Register the variants that ``paper_variants.toml`` lists under ``family_module``: each the
    paper's network with the fields its table gives (checked like any override)."""
    with PAPER_VARIANTS.open("rb") as handle:
        tables = tomllib.load(handle)[family_module]
    for name, fields in tables.items():
        description, citation = fields.pop("description"), fields.pop("citation", None)
        register_config(name, apply_overrides(UNetConfig(), fields, owner=name), description, citation)


register_paper_variants("unet")
