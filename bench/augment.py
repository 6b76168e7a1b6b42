"""Batched, on-device data augmentation: the paper's elastic deformation and friends.

The paper deforms each training tile with random displacement vectors on a coarse 3x3 grid,
drawn from a Gaussian with a 10-pixel standard deviation, and interpolated bicubically to a
per-pixel field. Here the whole batch gets its fields at once: the coarse grid is upsampled with
``F.interpolate(mode="bicubic")`` and applied with one ``grid_sample`` per tensor (image
bilinear or bicubic, labels nearest, weights bilinear), mirrored at the borders, on whatever
device the batch lives on. Every draw comes from the given ``torch.Generator``: seeded runs
repeat exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentCfg:
    """Augmentation strengths; the defaults are the paper's elastic deformation plus flips."""

    elastic_sigma: float = 10.0  # px, std of the coarse displacements (0 disables)
    elastic_points: int = 3  # the coarse grid is points x points
    dihedral: bool = True  # random 90-degree rotations and flips
    max_shift: float = 0.0  # px, uniform random translation
    grey: float = 0.1  # contrast factor in [1-grey, 1+grey], brightness offset in [-grey, grey]
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"  # for the image


def elastic_displacements(
    batch: int, height: int, width: int, sigma: float, points: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """Dense displacement fields in pixels, shape (B, 2, H, W): (dx, dy) per pixel."""
    coarse = torch.randn(batch, 2, points, points, generator=generator, device=device) * sigma
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)


def sampling_grid(displacement: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """The ``grid_sample`` grid (B, H, W, 2) for per-pixel displacements in pixels."""
    batch, _, height, width = displacement.shape
    device, dtype = displacement.device, displacement.dtype
    ys = torch.linspace(-1, 1, height, device=device, dtype=dtype)
    xs = torch.linspace(-1, 1, width, device=device, dtype=dtype)
    base_y, base_x = torch.meshgrid(ys, xs, indexing="ij")
    dx = displacement[:, 0]
    dy = displacement[:, 1]
    if shift is not None:
        dx = dx + shift[:, 0, None, None]
        dy = dy + shift[:, 1, None, None]
    # align_corners=True: pixel i sits at -1 + 2 i / (n - 1)
    grid_x = base_x + dx * (2.0 / max(width - 1, 1))
    grid_y = base_y + dy * (2.0 / max(height - 1, 1))
    return torch.stack([grid_x, grid_y], dim=-1)


def _dihedral(tensor: torch.Tensor, k: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Rotate each sample by k[i] quarter turns and flip it if flip[i] (square tiles only)."""
    out = []
    for i in range(tensor.shape[0]):
        t = torch.rot90(tensor[i], int(k[i]), dims=(-2, -1))
        out.append(torch.flip(t, dims=(-1,)) if flip[i] else t)
    return torch.stack(out)


def augment_batch(
    images: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    cfg: AugmentCfg,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Augment a batch: images (B, C, H, W) float, labels (B, H, W) int, weights (B, H, W).

    The same geometric transform moves image, labels and weights, so they stay aligned; labels
    are sampled with nearest-neighbour and so keep their values.
    """
    batch, _, height, width = images.shape
    device = images.device
    if cfg.dihedral and height == width:
        k = torch.randint(0, 4, (batch,), generator=generator, device=device)
        flip = torch.randint(0, 2, (batch,), generator=generator, device=device).bool()
        images = _dihedral(images, k, flip)
        labels = _dihedral(labels, k, flip)
        weights = None if weights is None else _dihedral(weights, k, flip)

    if cfg.elastic_sigma > 0 or cfg.max_shift > 0:
        displacement = elastic_displacements(
            batch, height, width, cfg.elastic_sigma, cfg.elastic_points, generator, device
        ).to(images.dtype)
        shift = None
        if cfg.max_shift > 0:
            shift = (torch.rand(batch, 2, generator=generator, device=device) * 2 - 1) * cfg.max_shift
        grid = sampling_grid(displacement, shift)
        images = F.grid_sample(images, grid, mode=cfg.interpolation, padding_mode="reflection", align_corners=True)
        labels = (
            F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode="reflection", align_corners=True)[
                :, 0
            ]
            .round()
            .to(labels.dtype)
        )
        if weights is not None:
            weights = F.grid_sample(
                weights[:, None], grid, mode="bilinear", padding_mode="reflection", align_corners=True
            )[:, 0]

    if cfg.grey > 0:
        contrast = 1 + (torch.rand(batch, 1, 1, 1, generator=generator, device=device) * 2 - 1) * cfg.grey
        brightness = (torch.rand(batch, 1, 1, 1, generator=generator, device=device) * 2 - 1) * cfg.grey
        mean = images.mean(dim=(-3, -2, -1), keepdim=True)
        images = (images - mean) * contrast + mean + brightness
    return images, labels, weights
