"""U-Nets from segmentation-models-pytorch, with any smp encoder or any timm encoder (``tu-...``).

Encoders start from random weights: nothing may download at run time, so the config refuses any
``encoder_weights`` other than None (smp would fetch pretrained weights when the model is built).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from variants.overrides import ConfigError, near_matches
from variants.registry import build_off_meta, register_variant, scale_width
from variants.sizes import closest_accepted, refuse


def _encoder_names() -> list[str]:
    import segmentation_models_pytorch as smp

    return list(smp.encoders.get_encoder_names())


def _check_encoder(name: str) -> None:
    """Fail early, with near matches, on an encoder that neither smp nor timm knows."""
    if name.startswith("tu-"):
        import timm

        model = name[3:]
        if not timm.is_model(model):
            close = near_matches(model, timm.list_models(), n=3)
            hint = f" Did you mean {', '.join('tu-' + c for c in close)}?" if close else ""
            raise ConfigError(f"unknown timm encoder {name!r}.{hint}")
        return
    names = _encoder_names()
    if name not in names:
        close = near_matches(name, names, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown smp encoder {name!r}.{hint} Prefix a timm model name with 'tu-'.")


@dataclass(frozen=True)
class SmpConfig:
    """A segmentation-models-pytorch decoder over an encoder; same-size output."""

    arch: Literal["Unet", "UnetPlusPlus", "MAnet"] = "Unet"
    encoder: str = "resnet18"
    encoder_depth: int = 5
    encoder_weights: str | None = None
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    in_channels: int = 1
    num_classes: int = 2

    family = "smp"

    def __post_init__(self) -> None:
        if self.encoder_weights is not None:
            raise ConfigError(
                f"encoder_weights={self.encoder_weights!r}: pretrained weights would be downloaded when the model "
                "is built, and nothing downloads at run time; leave encoder_weights unset (random init)",
                key="encoder_weights",
            )
        if len(self.decoder_channels) != self.encoder_depth:
            raise ConfigError(
                f"decoder_channels needs one entry per encoder level: {len(self.decoder_channels)} "
                f"given for encoder_depth={self.encoder_depth}",
                key="decoder_channels",
            )

    def _accepts(self, size: int) -> bool:
        return size > 0 and size % 2**self.encoder_depth == 0

    def output_size(self, input_size: int) -> int:
        if not self._accepts(input_size):
            why = f"the side must be divisible by 2**encoder_depth = {2**self.encoder_depth}"
            raise refuse(f"smp {self.arch}({self.encoder})", input_size, self._accepts, why)
        return input_size

    def valid_input_size(self, near: int) -> int:
        return closest_accepted(near, self._accepts)

    def input_size(self, output_size: int) -> int:
        return self.output_size(output_size)  # same size in and out

    def tiny(self) -> SmpConfig:
        return dataclasses.replace(self, decoder_channels=tuple(max(4, c // 16) for c in self.decoder_channels))

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """The decoder's channels scaled, at least 4 each (what ``tiny`` trains with, MA-Net's
        attention reductions included); the encoder is a fixed published network and keeps its widths."""
        return {"decoder_channels": tuple(scale_width(c, width_scale, minimum=4) for c in self.decoder_channels)}

    def build(self) -> nn.Module:
        import segmentation_models_pytorch as smp

        _check_encoder(self.encoder)
        return build_off_meta(  # the Mix Transformer encoders cannot be built on the meta device
            lambda: smp.create_model(
                self.arch,
                encoder_name=self.encoder,
                encoder_depth=self.encoder_depth,
                encoder_weights=self.encoder_weights,
                decoder_channels=self.decoder_channels,
                in_channels=self.in_channels,
                classes=self.num_classes,
            )
        )


@register_variant("smp-resnet18-unet", citation="Ronneberger et al. 2015; He et al. 2016")
def smp_resnet18_unet() -> SmpConfig:
    """smp Unet with a ResNet-18 encoder (random init)."""
    return SmpConfig(encoder="resnet18")


@register_variant("smp-resnet18-unetplusplus", citation="Zhou et al. 2018; He et al. 2016")
def smp_resnet18_unetplusplus() -> SmpConfig:
    """smp UNet++ (nested dense skips) with a ResNet-18 encoder (random init)."""
    return SmpConfig(arch="UnetPlusPlus", encoder="resnet18")


@register_variant("smp-tu-mobilenetv3-unet", citation="Ronneberger et al. 2015; Howard et al. 2019")
def smp_tu_mobilenetv3_unet() -> SmpConfig:
    """smp Unet with timm's MobileNetV3-Small encoder (random init), a light, fast variant."""
    return SmpConfig(encoder="tu-mobilenetv3_small_100")


@register_variant("smp-tu-efficientnet-b0-unet", citation="Ronneberger et al. 2015; Tan & Le 2019")
def smp_tu_efficientnet_b0_unet() -> SmpConfig:
    """smp Unet with timm's EfficientNet-B0 encoder (random init)."""
    return SmpConfig(encoder="tu-efficientnet_b0")


@register_variant("smp-resnet18-manet", citation="Fan et al. 2020; He et al. 2016")
def smp_resnet18_manet() -> SmpConfig:
    """smp MA-Net (position and multi-scale attention blocks in a U-shaped decoder), ResNet-18 encoder."""
    return SmpConfig(arch="MAnet", encoder="resnet18")


@register_variant("smp-tu-convnext-atto-unet", citation="Ronneberger et al. 2015; Liu et al. 2022")
def smp_tu_convnext_atto_unet() -> SmpConfig:
    """smp Unet with timm's ConvNeXt-Atto encoder (7x7 depthwise convs, LayerNorm; random init)."""
    return SmpConfig(encoder="tu-convnext_atto")


@register_variant("smp-tu-convnext-atto-unetplusplus", citation="Zhou et al. 2018; Liu et al. 2022")
def smp_tu_convnext_atto_unetplusplus() -> SmpConfig:
    """smp UNet++ with timm's ConvNeXt-Atto encoder (random init)."""
    return SmpConfig(arch="UnetPlusPlus", encoder="tu-convnext_atto")


@register_variant("smp-mit-b0-unet", citation="Ronneberger et al. 2015; Xie et al. 2021")
def smp_mit_b0_unet() -> SmpConfig:
    """smp Unet with SegFormer's Mix Transformer B0 encoder (a transformer U-Net; random init)."""
    return SmpConfig(encoder="mit_b0")
