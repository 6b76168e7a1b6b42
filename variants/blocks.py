"""Building blocks shared by every U-Net family: conv + norm + activation, the block kinds
(plain / residual / inception) and the up-sampling step.

Every block maps ``in_ch -> out_ch`` channels and, with unpadded convolutions, loses exactly
``2 * (kernel_size - 1)`` pixels per side length, like the paper's two 3x3 convolutions. Keeping
that one invariant lets all block kinds share the size arithmetic in ``variants.sizes``.
Activation and normalisation layers come from timm's factories rather than a registry of our own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from variants.overrides import ConfigError

Activation = Literal["relu", "leaky_relu", "elu", "gelu", "silu", "mish", "prelu"]
Norm = Literal["none", "batch", "group", "instance"]
Padding = Literal["valid", "same"]
BlockKind = Literal["plain", "residual", "inception"]
Upsample = Literal["transpose", "bilinear"]
Attention = Literal["none", "additive"]


@dataclass(frozen=True)
class ConvSpec:
    """How every convolution of a network is made."""

    kernel_size: int = 3
    padding: Padding = "valid"
    activation: Activation = "relu"
    norm: Norm = "none"
    group_norm_groups: int = 8

    def pad(self, kernel_size: int) -> int:
        return kernel_size // 2 if self.padding == "same" else 0

    @property
    def block_shrink(self) -> int:
        """Pixels a block removes from a side length (0 when padded)."""
        return 0 if self.padding == "same" else 2 * (self.kernel_size - 1)


def make_activation(name: Activation) -> nn.Module:
    from timm.layers import get_act_layer  # imported on first use: timm takes ~2 s to import

    layer = get_act_layer(name)
    if layer is None:  # pragma: no cover - guarded by the Literal type
        raise ValueError(f"unknown activation {name!r}")
    return layer()


def make_norm(kind: Norm, channels: int, groups: int = 8) -> nn.Module:
    """A normalisation layer; instance norm is group norm with one channel per group."""
    from timm.layers import get_norm_layer

    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return get_norm_layer("batchnorm2d")(channels)
    num_groups = channels if kind == "instance" else math.gcd(groups, channels)
    return get_norm_layer("groupnorm")(channels, num_groups=num_groups)


def conv_norm_act(
    in_ch: int, out_ch: int, spec: ConvSpec, kernel_size: int | None = None, act: bool = True
) -> nn.Sequential:
    """Conv -> norm -> activation; the conv has a bias only when no norm follows it."""
    k = spec.kernel_size if kernel_size is None else kernel_size
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, k, padding=spec.pad(k), bias=spec.norm == "none"),
        make_norm(spec.norm, out_ch, spec.group_norm_groups),
    ]
    if act:
        layers.append(make_activation(spec.activation))
    return nn.Sequential(*layers)


def center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The central ``height x width`` window of ``x`` (the paper's "crop" before "copy")."""
    top = (x.shape[-2] - height) // 2
    left = (x.shape[-1] - width) // 2
    return x[..., top : top + height, left : left + width]


class PlainBlock(nn.Sequential):
    """Two conv + norm + activation layers: the paper's block."""

    def __init__(self, in_ch: int, out_ch: int, spec: ConvSpec):
        super().__init__(conv_norm_act(in_ch, out_ch, spec), conv_norm_act(out_ch, out_ch, spec))


class ResidualBlock(nn.Module):
    """Two convolutions plus a shortcut (1x1 projection when the channels change), as in ResNet.

    With valid convolutions the shortcut is centre-cropped to the body's output.
    """

    def __init__(self, in_ch: int, out_ch: int, spec: ConvSpec):
        super().__init__()
        self.body = nn.Sequential(conv_norm_act(in_ch, out_ch, spec), conv_norm_act(out_ch, out_ch, spec, act=False))
        self.shortcut = (
            nn.Identity() if in_ch == out_ch else conv_norm_act(in_ch, out_ch, spec, kernel_size=1, act=False)
        )
        self.act = make_activation(spec.activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        skip = center_crop(self.shortcut(x), out.shape[-2], out.shape[-1])
        return self.act(out + skip)


class InceptionBlock(nn.Module):
    """Four parallel branches, concatenated: 1x1; kxk; two stacked kxk; 3x3 max-pool + 1x1.

    With valid convolutions every branch is centre-cropped to the deepest branch, so the block
    shrinks like two stacked convolutions. Output channels are split evenly over the branches.
    """

    def __init__(self, in_ch: int, out_ch: int, spec: ConvSpec):
        super().__init__()
        if out_ch < 4:
            raise ConfigError(
                f"an inception block needs at least 4 output channels, got {out_ch}; use a larger base_width"
            )
        split = [out_ch // 4] * 4
        split[0] += out_ch - sum(split)
        pool_pad = 1 if spec.padding == "same" else 0
        self.branches = nn.ModuleList(
            [
                conv_norm_act(in_ch, split[0], spec, kernel_size=1),
                conv_norm_act(in_ch, split[1], spec),
                nn.Sequential(conv_norm_act(in_ch, split[2], spec), conv_norm_act(split[2], split[2], spec)),
                nn.Sequential(
                    nn.MaxPool2d(3, stride=1, padding=pool_pad), conv_norm_act(in_ch, split[3], spec, kernel_size=1)
                ),
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [branch(x) for branch in self.branches]
        h = min(o.shape[-2] for o in outs)
        w = min(o.shape[-1] for o in outs)
        return torch.cat([center_crop(o, h, w) for o in outs], dim=1)


BLOCKS: dict[str, Callable[[int, int, ConvSpec], nn.Module]] = {
    "plain": PlainBlock,
    "residual": ResidualBlock,
    "inception": InceptionBlock,
}


def make_upsample(kind: Upsample, in_ch: int, out_ch: int) -> nn.Module:
    """Double the side length and map ``in_ch -> out_ch`` channels.

    ``transpose`` is the paper's 2x2 up-convolution; ``bilinear`` interpolates, then a 1x1
    convolution changes the channels (same size arithmetic, no checkerboard artefacts).
    """
    if kind == "transpose":
        return nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(in_ch, out_ch, 1))


class AttentionGate(nn.Module):
    """Additive attention gate of Oktay et al. 2018 (Attention U-Net, Eq. 1-2 and Fig. 2).

    ``alpha = sigmoid(psi(relu(W_x x + W_g g + b_g)) + b_psi)`` and the gate returns ``alpha * x``.
    ``x`` is the skip (``F_l`` channels), ``g`` the gating signal from the next coarser decoder
    level (``F_g`` channels, half the skip's side). As in the paper, ``x`` is brought down to the
    gating grid rather than ``g`` up: ``W_x`` is a 1x1 convolution with stride 2 and no bias
    (``W_x`` in R^{F_l x F_int}); ``W_g`` (with ``b_g``) and ``psi`` (with ``b_psi``) are 1x1
    convolutions. The coefficients are resampled bilinearly to the skip's grid. The authors' code
    uses a 2x2 kernel for ``W_x`` and adds a 1x1 conv + batch norm after the product; we keep the
    paper's equations. No normalisation inside the gate, whatever the network's ``norm``.
    ``F_int = F_l``, as the authors' network sets ``inter_channels``. Parameters:
    ``F_l * F_int + (F_g + 1) * F_int + F_int + 1``.
    """

    def __init__(self, skip_ch: int, gate_ch: int, inter_ch: int | None = None):
        super().__init__()
        inter = skip_ch if inter_ch is None else inter_ch
        self.w_x = nn.Conv2d(skip_ch, inter, kernel_size=1, stride=2, bias=False)
        self.w_g = nn.Conv2d(gate_ch, inter, kernel_size=1)
        self.psi = nn.Conv2d(inter, 1, kernel_size=1)

    def coefficients(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """The attention coefficients in (0, 1), one per pixel of ``skip``."""
        q = self.psi(F.relu(self.w_x(skip) + self.w_g(gate)))
        return F.interpolate(torch.sigmoid(q), size=skip.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return self.coefficients(skip, gate) * skip


def init_he_normal(module: nn.Module) -> None:
    """The paper's initialisation: Gaussian weights with std sqrt(2 / fan_in), zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
