"""The configurable U-Net family; ``unet-original`` is the exact network of Ronneberger et al. 2015.

Every design axis is a field of ``UNetConfig``; the plain, residual and inception U-Nets differ
only in ``block``. The module ``__init__`` only assembles parts, as in segmentation-models-pytorch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from variants.blocks import (
    BLOCKS,
    Activation,
    BlockKind,
    ConvSpec,
    Norm,
    Padding,
    Upsample,
    center_crop,
    init_he_normal,
    make_upsample,
)
from variants.overrides import ConfigError
from variants.registry import register_config
from variants.sizes import closest_accepted, encoder_decoder_input, encoder_decoder_output, refuse

_FAMILY_OF_BLOCK = {"plain": "unet", "residual": "residual", "inception": "inception"}


@dataclass(frozen=True)
class UNetConfig:
    """One U-Net. The defaults are the paper's network (572x572 -> 388x388, 31,030,658 params)."""

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
    dropout: float = 0.5  # at the end of the contracting path
    group_norm_groups: int = 8

    def __post_init__(self) -> None:
        problems = []
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            problems.append(f"kernel_size must be odd and positive, got {self.kernel_size}")
        if self.depth < 1:
            problems.append(f"depth must be at least 1, got {self.depth}")
        if self.base_width < 1 or self.in_channels < 1 or self.num_classes < 1:
            problems.append("base_width, in_channels and num_classes must be positive")
        if self.width_multiplier <= 0:
            problems.append(f"width_multiplier must be positive, got {self.width_multiplier}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if problems:
            raise ConfigError("; ".join(problems))

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

    def build(self) -> nn.Module:
        return UNet(self)


class UNet(nn.Module):
    """Contracting path, bottleneck, expanding path with crop-and-copy skips, 1x1 head."""

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
        self.head = nn.Conv2d(w[0], config.num_classes, kernel_size=1)
        init_he_normal(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for up, dec, skip in zip(self.up, self.decoder, reversed(skips)):
            x = up(x)
            x = dec(torch.cat([center_crop(skip, x.shape[-2], x.shape[-1]), x], dim=1))
        return self.head(x)


# --- registered variants: each changes one axis of the paper's network -----------------------

# name -> (description, the fields that differ from the paper's network)
PAPER_AXES: dict[str, tuple[str, dict[str, Any]]] = {
    "unet-original": ("Ronneberger et al. 2015, exactly: valid 3x3 convs + ReLU, 64..1024 filters, 572 -> 388.", {}),
    "unet-same": (
        'The paper\'s net with zero-padded ("same") convolutions: output size = input size.',
        {"padding": "same"},
    ),
    "unet-16": ("The paper's net with 16 base filters (16..256), about 1/16 of the parameters.", {"base_width": 16}),
    "unet-32": ("The paper's net with 32 base filters (32..512).", {"base_width": 32}),
    "unet-depth3": ("The paper's net with three max-pools instead of four.", {"depth": 3}),
    "unet-k5": (
        "The paper's net with 5x5 convolutions (same padding, so any size divisible by 16 fits).",
        {"kernel_size": 5, "padding": "same"},
    ),
    "unet-leakyrelu": ("The paper's net with LeakyReLU (slope 0.01) instead of ReLU.", {"activation": "leaky_relu"}),
    "unet-elu": ("The paper's net with ELU instead of ReLU.", {"activation": "elu"}),
    "unet-gelu": ("The paper's net with GELU instead of ReLU.", {"activation": "gelu"}),
    "unet-silu": ("The paper's net with SiLU (swish) instead of ReLU.", {"activation": "silu"}),
    "unet-mish": ("The paper's net with Mish instead of ReLU.", {"activation": "mish"}),
    "unet-prelu": (
        "The paper's net with PReLU (one learned slope per layer) instead of ReLU.",
        {"activation": "prelu"},
    ),
    "unet-bn": ("The paper's net with batch normalisation after every convolution.", {"norm": "batch"}),
    "unet-gn": ("The paper's net with group normalisation (8 groups) after every convolution.", {"norm": "group"}),
    "unet-in": ("The paper's net with instance normalisation after every convolution.", {"norm": "instance"}),
    "unet-bilinear": (
        "The paper's net with bilinear up-sampling + 1x1 conv instead of 2x2 up-convolution.",
        {"upsample": "bilinear"},
    ),
}


def register_paper_variants(table: dict[str, tuple[str, dict[str, Any]]]) -> None:
    """Register each variant of ``table``: the paper's network with a few fields changed."""
    for name, (description, fields) in table.items():
        register_config(name, UNetConfig(**fields), description)


register_paper_variants(PAPER_AXES)
