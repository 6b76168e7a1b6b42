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

import functools
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


@functools.lru_cache(maxsize=32)
def _bicubic_weights(points: int, size: int) -> torch.Tensor:
    """(size, points) matrix of 1D bicubic interpolation from ``points`` control points to
    ``size`` pixels (align_corners=True): exactly what ``F.interpolate(mode="bicubic")`` does
    along one axis, since bicubic interpolation is separable."""
    basis = torch.eye(points, dtype=torch.float64).reshape(points, 1, 1, points)
    rows = F.interpolate(basis, size=(1, size), mode="bicubic", align_corners=True)
    return rows.reshape(points, size).T.contiguous()


def _upsample(coarse: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 2, P, P) control displacements -> (B, H, W, 2), with no copy of the dense field:
    interpolate along x on the small grid first, then one matrix product along y writes the
    output in its final layout."""
    batch, channels, points, _ = coarse.shape
    wy = _bicubic_weights(points, height).to(device=coarse.device, dtype=coarse.dtype)
    wx = _bicubic_weights(points, width).to(device=coarse.device, dtype=coarse.dtype)
    along_x = torch.einsum("bcij,xj->bixc", coarse, wx).reshape(batch, points, width * channels)
    return torch.matmul(wy, along_x).view(batch, height, width, channels)


@functools.lru_cache(maxsize=32)
def _identity_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    ys = torch.linspace(-1, 1, height, device=device, dtype=dtype)
    xs = torch.linspace(-1, 1, width, device=device, dtype=dtype)
    base_y, base_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([base_x, base_y], dim=-1)


def elastic_grid(
    batch: int,
    height: int,
    width: int,
    sigma: float,
    points: int,
    generator: torch.Generator,
    device: torch.device,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """The ``grid_sample`` grid (B, H, W, 2) of a random elastic deformation plus a shift (px).

    Displacements are scaled into grid units on the 3x3 control points, before upsampling, and
    a shift is added there too (bicubic weights sum to one, so a constant stays constant): the
    dense field is then made once and the identity grid added in place.
    """
    coarse = torch.randn(batch, 2, points, points, generator=generator, device=device) * sigma
    if shift is not None:
        coarse = coarse + shift[:, :, None, None]
    # align_corners=True: pixel i sits at -1 + 2 i / (n - 1)
    scale = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)], device=device)
    grid = _upsample(coarse * scale[None, :, None, None], height, width)
    return grid.add_(_identity_grid(height, width, device, grid.dtype))


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
    """Augment a batch: images (B, C, H, W) float, labels (B, H, W), weights (B, H, W).

    Labels may be integer or float (float avoids two conversions of the full tile; the caller
    converts after cropping).

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
        shift = None
        if cfg.max_shift > 0:
            shift = (torch.rand(batch, 2, generator=generator, device=device) * 2 - 1) * cfg.max_shift
        grid = elastic_grid(batch, height, width, cfg.elastic_sigma, cfg.elastic_points, generator, device, shift)
        grid = grid.to(images.dtype)
        images = F.grid_sample(images, grid, mode=cfg.interpolation, padding_mode="reflection", align_corners=True)
        # nearest sampling copies label values exactly, so the cast back loses nothing
        float_labels = labels if labels.is_floating_point() else labels.to(grid.dtype)
        sampled = F.grid_sample(float_labels[:, None], grid, mode="nearest", padding_mode="reflection", align_corners=True)
        labels = sampled[:, 0].to(labels.dtype)
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
