"""The U-Nets nnU-Net plans, built by its own library, ``dynamic-network-architectures``.

nnU-Net (Isensee et al. 2021, Nature Methods) configures a plain convolutional U-Net per dataset;
"nnU-Net Revisited" (Isensee et al. 2024, MICCAI) adds residual-encoder presets (ResEnc M/L/XL)
and asks new methods to be compared with them. The registered variants are the 2D networks nnU-Net
plans for a 512 x 512 single-channel image such as an ISBI 2012 slice, derived from the planners
in MIC-DKFZ/nnUNet (``experiment_planners/default_experiment_planner.py``, ``network_topology.py``,
``residual_unets/residual_encoder_unet_planners.py``):

- Topology: with isotropic spacing every axis is pooled while the feature map is at least
  2 x 4 pixels (``UNet_featuremap_min_edge_length = 4``): 512 -> 4 takes 7 stride-2 stages, so
  8 stages with strides (1, 2, 2, 2, 2, 2, 2, 2) and 3x3 kernels everywhere.
- Features: 32 * 2**stage capped at 512 in 2D (``UNet_max_features_2d``; 320 is the 3D cap).
- Plain: 2 convs per encoder and per decoder stage. ResEnc: (1, 3, 4, 6, 6, 6, 6, 6) residual
  blocks per encoder stage, 1 conv per decoder stage.
- The 512 x 512 patch fits every preset's memory reference, so ResEnc M and L plan the same 2D
  network here (they differ in batch size only); one variant stands for both.
- Conv bias, InstanceNorm (eps 1e-5, affine), LeakyReLU(0.01), He init with slope 0.01, as nnU-Net
  builds them. Deep supervision is off: the benchmark trains one output like every other variant
  (the coarser stages' output heads stay in the network, frozen, so checkpoints match nnU-Net's).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from variants.overrides import ConfigError
from variants.registry import register_variant, scale_width
from variants.sizes import SameSizeNet

PLAN_2D_512_FEATURES = (32, 64, 128, 256, 512, 512, 512, 512)
PLAN_2D_512_STRIDES = (1, 2, 2, 2, 2, 2, 2, 2)
RESENC_BLOCKS = (1, 3, 4, 6, 6, 6, 6, 6)  # ResEncUNetPlanner.UNet_blocks_per_stage_encoder, first 8


@dataclass(frozen=True)
class NnUNetConfig(SameSizeNet):
    """A dynamic-network-architectures U-Net as nnU-Net's plans describe it (2D)."""

    arch: Literal["PlainConvUNet", "ResidualEncoderUNet"] = "PlainConvUNet"
    features_per_stage: tuple[int, ...] = PLAN_2D_512_FEATURES
    strides: tuple[int, ...] = PLAN_2D_512_STRIDES
    # convs (PlainConvUNet) or residual blocks (ResidualEncoderUNet) in each encoder stage
    blocks_per_stage: tuple[int, ...] = (2,) * 8
    decoder_convs_per_stage: tuple[int, ...] = (2,) * 7
    kernel_size: int = 3
    in_channels: int = 1
    num_classes: int = 2

    family = "nnunet"

    def __post_init__(self) -> None:
        n = len(self.features_per_stage)
        if len(self.strides) != n or len(self.blocks_per_stage) != n or len(self.decoder_convs_per_stage) != n - 1:
            raise ConfigError(
                f"{n} stages need {n} strides and blocks_per_stage and {n - 1} decoder_convs_per_stage",
                key="features_per_stage",
            )
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd and positive, got {self.kernel_size}", key="kernel_size")

    def _accepts(self, size: int) -> bool:
        multiple = math.prod(self.strides)
        return size >= 2 * multiple and size % multiple == 0  # instance norm needs a bottleneck over 1x1

    def _size_rule(self) -> tuple[str, str]:
        multiple = math.prod(self.strides)
        why = f"the side must be a multiple of the product of the strides, {multiple}, at least {2 * multiple}"
        return f"nnU-Net {self.arch}", why

    def tiny(self) -> NnUNetConfig:
        return dataclasses.replace(
            self,
            features_per_stage=(4, 8, 16, 16),
            strides=self.strides[:4],
            blocks_per_stage=self.blocks_per_stage[:4],
            decoder_convs_per_stage=self.decoder_convs_per_stage[:3],
        )

    def scaled(self, width_scale: float) -> dict[str, Any]:
        """Every stage's features scaled (instance norm has no groups to respect); stages, strides
        and blocks stay the plan's, so the size rule does not change."""
        return {"features_per_stage": tuple(scale_width(f, width_scale) for f in self.features_per_stage)}

    def build(self) -> nn.Module:
        from dynamic_network_architectures.architectures import unet

        n = len(self.features_per_stage)
        blocks = {"n_conv_per_stage" if self.arch == "PlainConvUNet" else "n_blocks_per_stage": self.blocks_per_stage}
        network = getattr(unet, self.arch)
        model = network(
            input_channels=self.in_channels,
            n_stages=n,
            features_per_stage=self.features_per_stage,
            conv_op=nn.Conv2d,
            kernel_sizes=[[self.kernel_size] * 2] * n,
            strides=[[s] * 2 for s in self.strides],
            num_classes=self.num_classes,
            n_conv_per_stage_decoder=self.decoder_convs_per_stage,
            conv_bias=True,
            norm_op=nn.InstanceNorm2d,
            norm_op_kwargs={"eps": 1e-5, "affine": True},
            nonlin=nn.LeakyReLU,
            nonlin_kwargs={"inplace": True},
            deep_supervision=False,
            **blocks,
        )
        model.apply(network.initialize)  # nnU-Net's He init (slope 1e-2); ResEnc zeroes each block's last norm
        # the deep-supervision heads of the coarser decoder stages are unused with it off: frozen, so
        # no optimizer holds them, while the state_dict (and parameter count) stay nnU-Net's
        for head in model.decoder.seg_layers[:-1]:
            head.requires_grad_(False)
        return model


@register_variant("nnunet-plain-2d", citation="Isensee et al. 2021")
def nnunet_plain_2d() -> NnUNetConfig:
    """nnU-Net's default 2D PlainConvUNet for a 512x512 image: 8 stages, 32..512 features, 2 convs each."""
    return NnUNetConfig()


@register_variant("nnunet-resenc-2d", citation="Isensee et al. 2024 (nnU-Net Revisited)")
def nnunet_resenc_2d() -> NnUNetConfig:
    """nnU-Net ResEnc M/L 2D plan for 512x512: residual encoder, (1,3,4,6,6,6,6,6) blocks, 1 conv per decoder stage."""
    return NnUNetConfig(arch="ResidualEncoderUNet", blocks_per_stage=RESENC_BLOCKS, decoder_convs_per_stage=(1,) * 7)
