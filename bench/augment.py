"""Batched, on-device data augmentation: the paper's elastic deformation and friends.

The paper deforms each training tile with random displacement vectors on a coarse 3x3 grid,
drawn from a Gaussian with a 10-pixel standard deviation, and interpolated bicubically to a
per-pixel field. Here the bicubic upsampling is two small matrix products that write
``grid_sample``'s grid directly, and each tensor is moved with one ``grid_sample`` (image
bilinear or bicubic, labels nearest, weights bilinear) over a mirror padded once, on whatever
device the batch lives on. Every draw comes from the given ``torch.Generator``: seeded runs
repeat exactly.
"""

from __future__ import annotations

import functools
import math
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


@functools.lru_cache(maxsize=32)
def _lebesgue(points: int, size: int) -> float:
    """Largest factor by which 1D bicubic interpolation can stretch a control value (it
    overshoots a little): bounds the dense displacement by the coarse one."""
    return float(_bicubic_weights(points, size).abs().sum(dim=1).max())


def random_displacements(
    batch: int,
    sigma: float,
    points: int,
    generator: torch.Generator,
    device: torch.device,
    shift: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, 2, P, P) control displacements in pixels (x then y): Gaussian with std ``sigma``,
    plus a per-sample shift (bicubic weights sum to one, so a constant stays constant)."""
    coarse = torch.randn(batch, 2, points, points, generator=generator, device=device) * sigma
    return coarse if shift is None else coarse + shift[:, :, None, None]


def mirror_margin(coarse: torch.Tensor, height: int, width: int) -> int:
    """Pixels of mirror padding that every bicubic tap of this deformation stays inside (the
    dense field is bounded by the coarse maximum times the interpolation's overshoot, plus the
    two-pixel reach of a bicubic kernel and one for rounding), rounded up to a multiple of 16 so
    that successive batches reuse buffers of the same size; 0 when padding that much is
    impossible (``F.pad`` mirrors at most size - 1 pixels)."""
    points = coarse.shape[-1]
    stretch = _lebesgue(points, height) * _lebesgue(points, width)
    margin = -(-(math.ceil(float(coarse.abs().max()) * stretch) + 3) // 16) * 16
    return margin if margin < min(height, width) else 0


def displacement_grid(coarse: torch.Tensor, height: int, width: int, margin: int = 0) -> torch.Tensor:
    """The ``grid_sample`` grid (B, H, W, 2) that moves output pixel p to p + displacement(p),
    in the coordinates of the image mirror-padded by ``margin`` (align_corners=True).

    The dense field is never built and then shifted: the coarse grid is interpolated along x,
    the identity ramps ride along as two extra rows, and one matrix product along y writes the
    final grid in grid_sample's layout.
    """
    batch, channels, points, _ = coarse.shape
    device, dtype = coarse.device, coarse.dtype
    # pixel i of the padded frame sits at -1 + 2 i / (n + 2 margin - 1)
    scale_x, scale_y = (2.0 / max(width + 2 * margin - 1, 1), 2.0 / max(height + 2 * margin - 1, 1))
    wx = _bicubic_weights(points, width).to(device=device, dtype=dtype)
    wy = _bicubic_weights(points, height).to(device=device, dtype=dtype)
    scaled = coarse * torch.tensor([scale_x, scale_y], device=device, dtype=dtype)[None, :, None, None]
    along_x = torch.empty(batch, points + 2, width, channels, device=device, dtype=dtype)
    along_x[:, :points] = torch.einsum("bcij,xj->bixc", scaled, wx)
    along_x[:, points, :, 0] = (torch.arange(width, device=device, dtype=dtype) + margin) * scale_x - 1
    along_x[:, points, :, 1] = 0
    along_x[:, points + 1, :, 0] = 0
    along_x[:, points + 1, :, 1] = 1
    ramp_y = (torch.arange(height, device=device, dtype=dtype) + margin) * scale_y - 1
    wy_ramps = torch.cat([wy, torch.ones(height, 1, device=device, dtype=dtype), ramp_y[:, None]], dim=1)
    grid = torch.matmul(wy_ramps, along_x.view(batch, points + 2, width * channels))
    return grid.view(batch, height, width, channels)


def _warp(tensor: torch.Tensor, grid: torch.Tensor, mode: str, margin: int) -> torch.Tensor:
    """Sample (B, C, H, W) at ``grid`` with mirrored borders. With a margin the mirror is padded
    once, so grid_sample never leaves the image and skips its per-tap reflection (a third of a
    bicubic sample's cost on a CPU); the result is the same."""
    if margin:
        padded = F.pad(tensor, (margin,) * 4, mode="reflect")
        return F.grid_sample(padded, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return F.grid_sample(tensor, grid, mode=mode, padding_mode="reflection", align_corners=True)


def elastic_warp(
    images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, coarse: torch.Tensor, interpolation: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Move image (bilinear or bicubic), labels (nearest) and weights (bilinear) by the dense
    field of ``coarse`` (B, 2, P, P) pixel displacements.

    On a CPU the batch goes through in chunks of one sample per thread: grid_sample spreads
    its work over samples, and a chunk's grids and padded copies stay in cache and in reused
    memory, which is ~1.5x faster than one pass over a large batch. A GPU takes the batch whole.
    """
    batch, _, height, width = images.shape
    chunk = batch if images.device.type != "cpu" else max(1, torch.get_num_threads())
    out_images, out_labels = torch.empty_like(images), torch.empty_like(labels)
    out_weights = None if weights is None else torch.empty_like(weights)
    for start in range(0, batch, chunk):
        part = slice(start, start + chunk)
        margin = mirror_margin(coarse[part], height, width)
        grid = displacement_grid(coarse[part], height, width, margin).to(images.dtype)
        out_images[part] = _warp(images[part], grid, interpolation, margin)
        # nearest sampling copies label values exactly, so the cast back loses nothing
        float_labels = labels[part] if labels.is_floating_point() else labels[part].to(grid.dtype)
        out_labels[part] = _warp(float_labels[:, None], grid, "nearest", margin)[:, 0].to(labels.dtype)
        if weights is not None and out_weights is not None:
            out_weights[part] = _warp(weights[part][:, None], grid, "bilinear", margin)[:, 0]
    return out_images, out_labels, out_weights


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
        coarse = random_displacements(batch, cfg.elastic_sigma, cfg.elastic_points, generator, device, shift)
        images, labels, weights = elastic_warp(images, labels, weights, coarse, cfg.interpolation)

    if cfg.grey > 0:
        contrast = 1 + (torch.rand(batch, 1, 1, 1, generator=generator, device=device) * 2 - 1) * cfg.grey
        brightness = (torch.rand(batch, 1, 1, 1, generator=generator, device=device) * 2 - 1) * cfg.grey
        mean = images.mean(dim=(-3, -2, -1), keepdim=True)
        images = (images - mean) * contrast + mean + brightness
    return images, labels, weights
