"""2D U-Nets from MONAI (``monai.networks.nets``), each behind a typed config; random init only.

MONAI ships convolutional U-Nets (BasicUNet, UNet with residual units, AttentionUnet, DynUNet, its
nnU-Net re-implementation) and transformer U-Nets (UNETR, SwinUNETR). Their size rules differ: a
stride-2 level needs an even side, instance norm needs a bottleneck wider than one pixel, UNETR's
positional embedding fixes its input to ``img_size``, SwinUNETR's 2x2 patch embedding and four
patch mergings need multiples of 32. Each config states its rule exactly
(``tests/test_library_variants.py`` runs the real network at the sides around the smallest
accepted one, on the meta device).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from variants.overrides import ConfigError
from variants.registry import build_off_meta, register_variant, scale_width
from variants.sizes import SameSizeNet

SPATIAL_DIMS = 2


def _multiple_of(size: int, multiple: int) -> bool:
    """A multiple of ``multiple`` that leaves the bottleneck more than one pixel: instance norm
    cannot normalise a 1x1 map, so the smallest multiple is refused."""
    return size >= 2 * multiple and size % multiple == 0


def _strides_rule(strides: tuple[int, ...]) -> str:
    multiple = math.prod(strides)
    return f"the side must be a multiple of the product of the strides, {multiple}, at least {2 * multiple}"


def _scaled(widths: tuple[int, ...], scale: float, minimum: int = 1) -> tuple[int, ...]:
    return tuple(scale_width(w, scale, minimum=minimum) for w in widths)


def _check_levels(channels: tuple[int, ...], strides: tuple[int, ...], key: str) -> None:
    if len(channels) != len(strides) + 1:
        raise ConfigError(
            f"{key} needs one entry more than strides (one per level): {len(channels)} and {len(strides)} given",
            key=key,
        )


@dataclass(frozen=True)
class BasicUNetConfig(SameSizeNet):
    """MONAI BasicUNet: two convs per level, four max-pools, features[5] channels at the top of the decoder."""

    features: tuple[int, ...] = (32, 32, 64, 128, 256, 32)
    upsample: Literal["deconv", "pixelshuffle", "nontrainable"] = "deconv"
    dropout: float = 0.0
    in_channels: int = 1
    num_classes: int = 2

    family = "monai"

    def __post_init__(self) -> None:
        if len(self.features) != 6:
            raise ConfigError(f"features needs 6 entries, got {len(self.features)}", key="features")

    def _accepts(self, size: int) -> bool:
        return size >= 32  # its decoder pads odd sides, so any side works whose bottleneck is 2x2 or more

    def _size_rule(self) -> tuple[str, str]:
        return (
            "MONAI BasicUNet",
            "after four 2x2 max-pools instance norm needs at least 2x2 pixels: the side must be >= 32",
        )

    def tiny(self) -> BasicUNetConfig:
        return dataclasses.replace(self, features=(4, 4, 8, 8, 16, 4))

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """Every level's features scaled (instance norm: no groups to respect)."""
        return {"features": _scaled(self.features, width_scale)}

    def build(self) -> nn.Module:
        from monai.networks.nets import BasicUNet

        return BasicUNet(
            spatial_dims=SPATIAL_DIMS,
            in_channels=self.in_channels,
            out_channels=self.num_classes,
            features=self.features,
            dropout=self.dropout,
            upsample=self.upsample,
        )


@dataclass(frozen=True)
class MonaiUNetConfig(SameSizeNet):
    """MONAI UNet: strided-conv down-sampling, transposed-conv up-sampling, optional residual units."""

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 2
    dropout: float = 0.0
    in_channels: int = 1
    num_classes: int = 2

    family = "monai"

    def __post_init__(self) -> None:
        _check_levels(self.channels, self.strides, "channels")

    def _accepts(self, size: int) -> bool:
        return _multiple_of(size, math.prod(self.strides))

    def _size_rule(self) -> tuple[str, str]:
        return "MONAI UNet", _strides_rule(self.strides)

    def tiny(self) -> MonaiUNetConfig:
        return dataclasses.replace(self, channels=(4, 8, 16), strides=(2, 2))

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """Every level's channels scaled (instance norm: no groups to respect)."""
        return {"channels": _scaled(self.channels, width_scale)}

    def build(self) -> nn.Module:
        from monai.networks.nets import UNet

        return UNet(
            spatial_dims=SPATIAL_DIMS,
            in_channels=self.in_channels,
            out_channels=self.num_classes,
            channels=self.channels,
            strides=self.strides,
            num_res_units=self.num_res_units,
            dropout=self.dropout,
        )


@dataclass(frozen=True)
class AttentionUnetConfig(SameSizeNet):
    """MONAI AttentionUnet: additive attention gates on the skip connections (Oktay et al. 2018)."""

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    dropout: float = 0.0
    in_channels: int = 1
    num_classes: int = 2

    family = "monai"

    def __post_init__(self) -> None:
        _check_levels(self.channels, self.strides, "channels")

    def _accepts(self, size: int) -> bool:
        # batch norm, not instance norm: a 1x1 bottleneck is fine (over a batch of two or more)
        return size > 0 and size % math.prod(self.strides) == 0

    def _size_rule(self) -> tuple[str, str]:
        return (
            "MONAI AttentionUnet",
            f"the side must be a multiple of the product of the strides, {math.prod(self.strides)}",
        )

    def tiny(self) -> AttentionUnetConfig:
        return dataclasses.replace(self, channels=(4, 8, 16), strides=(2, 2))

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """Every level's channels scaled, at least 2: each gate works at half its level's width."""
        return {"channels": _scaled(self.channels, width_scale, minimum=2)}

    def build(self) -> nn.Module:
        from monai.networks.nets import AttentionUnet

        return AttentionUnet(
            spatial_dims=SPATIAL_DIMS,
            in_channels=self.in_channels,
            out_channels=self.num_classes,
            channels=self.channels,
            strides=self.strides,
            dropout=self.dropout,
        )


NNUNET_2D_FILTERS = (32, 64, 128, 256, 512, 512, 512, 512)  # nnU-Net's 2D plan for 512x512, see variants.nnunet
NNUNET_2D_STRIDES = (1, 2, 2, 2, 2, 2, 2, 2)


@dataclass(frozen=True)
class DynUNetConfig(SameSizeNet):
    """MONAI DynUNet (MONAI's nnU-Net re-implementation): 3x3 convs, one stride per level, no deep supervision."""

    filters: tuple[int, ...] = NNUNET_2D_FILTERS
    strides: tuple[int, ...] = NNUNET_2D_STRIDES
    res_block: bool = False
    in_channels: int = 1
    num_classes: int = 2

    family = "monai"

    def __post_init__(self) -> None:
        if len(self.filters) != len(self.strides) or self.strides[:1] != (1,):
            raise ConfigError(
                "filters and strides need one entry per level, and the first level has stride 1", key="strides"
            )

    def _accepts(self, size: int) -> bool:
        return _multiple_of(size, math.prod(self.strides))

    def _size_rule(self) -> tuple[str, str]:
        return "MONAI DynUNet", _strides_rule(self.strides)

    def tiny(self) -> DynUNetConfig:
        return dataclasses.replace(self, filters=(4, 8, 16, 16), strides=(1, 2, 2, 2))

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """Every level's filters scaled (instance norm: no groups to respect)."""
        return {"filters": _scaled(self.filters, width_scale)}

    def build(self) -> nn.Module:
        from monai.networks.nets import DynUNet

        return DynUNet(
            spatial_dims=SPATIAL_DIMS,
            in_channels=self.in_channels,
            out_channels=self.num_classes,
            kernel_size=[3] * len(self.strides),
            strides=list(self.strides),
            upsample_kernel_size=list(self.strides[1:]),
            filters=list(self.filters),
            res_block=self.res_block,
        )


UNETR_PATCH = 16  # fixed in MONAI's UNETR


@dataclass(frozen=True)
class UNETRConfig(SameSizeNet):
    """MONAI UNETR: a 12-layer ViT on 16x16 patches as the encoder, convolutional decoder with skips."""

    img_size: int = 512
    feature_size: int = 16
    hidden_size: int = 768
    mlp_dim: int = 3072
    num_heads: int = 12
    dropout: float = 0.0
    in_channels: int = 1
    num_classes: int = 2

    family = "monai"

    def __post_init__(self) -> None:
        if self.img_size <= 0 or self.img_size % UNETR_PATCH:
            raise ConfigError(
                f"img_size must be a positive multiple of {UNETR_PATCH}, got {self.img_size}", key="img_size"
            )
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")

    def _accepts(self, size: int) -> bool:
        return size == self.img_size

    def _size_rule(self) -> tuple[str, str]:
        why = "its positional embedding is sized for img_size; set img_size to change it"
        return f"MONAI UNETR(img_size={self.img_size})", why

    def tiny(self) -> UNETRConfig:
        return dataclasses.replace(self, img_size=32, feature_size=4, hidden_size=24, mlp_dim=48, num_heads=2)

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """The decoder's feature size and the ViT's width and MLP scaled; the width stays a
        multiple of the head count (its rule), heads and depth stay the same."""
        return {
            "feature_size": scale_width(self.feature_size, width_scale),
            "hidden_size": scale_width(self.hidden_size, width_scale, self.num_heads, self.num_heads),
            "mlp_dim": scale_width(self.mlp_dim, width_scale),
        }

    def build(self) -> nn.Module:
        from monai.networks.nets import UNETR

        model = UNETR(
            in_channels=self.in_channels,
            out_channels=self.num_classes,
            img_size=(self.img_size, self.img_size),
            feature_size=self.feature_size,
            hidden_size=self.hidden_size,
            mlp_dim=self.mlp_dim,
            num_heads=self.num_heads,
            dropout_rate=self.dropout,
            spatial_dims=SPATIAL_DIMS,
        )
        # every ViT block carries a LayerNorm for cross-attention that UNETR never calls: frozen, so
        # no optimizer holds it, while the state_dict stays MONAI's
        for block in model.vit.blocks:
            block.norm_cross_attn.requires_grad_(False)
        return model


@dataclass(frozen=True)
class SwinUNETRConfig(SameSizeNet):
    """MONAI SwinUNETR: a shifted-window transformer encoder (4 stages) with a convolutional U-Net decoder."""

    feature_size: int = 24
    depths: tuple[int, ...] = (2, 2, 2, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    use_v2: bool = False
    in_channels: int = 1
    num_classes: int = 2

    family = "monai"

    def __post_init__(self) -> None:
        if self.feature_size <= 0 or self.feature_size % 12:
            raise ConfigError(f"feature_size must be a multiple of 12, got {self.feature_size}", key="feature_size")
        if len(self.depths) != 4 or len(self.num_heads) != 4:
            raise ConfigError("depths and num_heads need one entry per stage (4)", key="depths")

    def _accepts(self, size: int) -> bool:
        return _multiple_of(size, 32)

    def _size_rule(self) -> tuple[str, str]:
        return (
            "MONAI SwinUNETR",
            "a 2x2 patch embedding and four patch mergings: the side must be a multiple of 32, at least 64",
        )

    def tiny(self) -> SwinUNETRConfig:
        return dataclasses.replace(self, feature_size=12, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """The feature size scaled to a multiple of 12, MONAI's rule, so never below 12 (a scale
        under 0.5 leaves the default 24 at 12); every stage's width follows it."""
        return {"feature_size": scale_width(self.feature_size, width_scale, multiple=12, minimum=12)}

    def build(self) -> nn.Module:
        from monai.networks.nets import SwinUNETR

        return build_off_meta(
            lambda: SwinUNETR(
                in_channels=self.in_channels,
                out_channels=self.num_classes,
                feature_size=self.feature_size,
                depths=self.depths,
                num_heads=self.num_heads,
                window_size=self.window_size,
                use_v2=self.use_v2,
                spatial_dims=SPATIAL_DIMS,
            )
        )


@register_variant("monai-basicunet", citation="Falk et al. 2019; Ronneberger et al. 2015")
def monai_basicunet() -> BasicUNetConfig:
    """MONAI BasicUNet, 2D: 32..256 features, instance norm + LeakyReLU(0.1), transposed-conv up-sampling."""
    return BasicUNetConfig()


@register_variant("monai-unet", citation="Ronneberger et al. 2015")
def monai_unet() -> MonaiUNetConfig:
    """MONAI UNet, 2D: 16..256 channels, strided convs down, transposed convs up, no residual units."""
    return MonaiUNetConfig(num_res_units=0)


@register_variant("monai-unet-res", citation="Kerfoot et al. 2018")
def monai_unet_res() -> MonaiUNetConfig:
    """MONAI UNet, 2D, with two residual units per level (the MONAI tutorials' setting)."""
    return MonaiUNetConfig(num_res_units=2)


@register_variant("monai-attentionunet", citation="Oktay et al. 2018")
def monai_attentionunet() -> AttentionUnetConfig:
    """MONAI AttentionUnet, 2D: 16..256 channels with attention-gated skip connections."""
    return AttentionUnetConfig()


@register_variant("monai-dynunet", citation="Isensee et al. 2021")
def monai_dynunet() -> DynUNetConfig:
    """MONAI DynUNet laid out as nnU-Net's 2D plan for 512x512 (8 levels, 32..512 filters)."""
    return DynUNetConfig()


@register_variant("monai-dynunet-res", citation="Isensee et al. 2021")
def monai_dynunet_res() -> DynUNetConfig:
    """MONAI DynUNet as nnU-Net's 2D plan with residual blocks in every level."""
    return DynUNetConfig(res_block=True)


@register_variant("monai-unetr", citation="Hatamizadeh et al. 2022 (UNETR)")
def monai_unetr() -> UNETRConfig:
    """MONAI UNETR, 2D, for 512x512 images: ViT-B encoder (768 wide, 12 layers, 12 heads) on 16x16 patches."""
    return UNETRConfig()


@register_variant("monai-swinunetr", citation="Hatamizadeh et al. 2022 (Swin UNETR)")
def monai_swinunetr() -> SwinUNETRConfig:
    """MONAI SwinUNETR, 2D: Swin-T-like encoder (feature size 24, depths 2-2-2-2, 7x7 windows)."""
    return SwinUNETRConfig()


@register_variant("monai-swinunetr-v2", citation="He et al. 2023 (SwinUNETR-V2)")
def monai_swinunetr_v2() -> SwinUNETRConfig:
    """MONAI SwinUNETR-V2, 2D: SwinUNETR with a residual conv block before each Swin stage."""
    return SwinUNETRConfig(use_v2=True)
