"""Elastic deformation and friends: identity at sigma 0, aligned outputs, binary labels, seeding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.augment import AugmentCfg, augment_batch, displacement_grid, mirror_margin, random_displacements


def blobs(batch: int = 3, side: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 1, 8, 8, generator=gen)
    labels = (F.interpolate(coarse, size=(side, side), mode="bilinear") > 0.5).long()[:, 0]
    return labels[:, None].float(), labels


def elastic_grid(batch: int, height: int, width: int, sigma: float, seed: int, shift=None) -> torch.Tensor:
    coarse = random_displacements(batch, sigma, 3, torch.Generator().manual_seed(seed), torch.device("cpu"), shift)
    return displacement_grid(coarse, height, width)


def test_zero_displacement_grid_is_the_identity() -> None:
    images, _labels = blobs()
    grid = elastic_grid(3, 64, 64, 0.0, 0)
    for mode in ("bilinear", "bicubic", "nearest"):
        out = F.grid_sample(images, grid, mode=mode, padding_mode="reflection", align_corners=True)
        assert torch.allclose(out, images, atol=1e-5), mode


def test_sigma_zero_changes_nothing() -> None:
    images, labels = blobs()
    weights = torch.rand(3, 64, 64)
    cfg = AugmentCfg(elastic_sigma=0.0, dihedral=False, grey=0.0)
    out_i, out_l, out_w = augment_batch(images, labels, weights, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(out_i, images) and torch.equal(out_l, labels) and torch.equal(out_w, weights)


def test_deformation_keeps_labels_binary_and_aligned_with_the_image() -> None:
    images, labels = blobs()
    cfg = AugmentCfg(elastic_sigma=10.0, grey=0.0, max_shift=4.0)
    out_i, out_l, out_w = augment_batch(images, labels, labels.float(), cfg, torch.Generator().manual_seed(2))
    assert set(out_l.unique().tolist()) <= {0, 1}
    assert not torch.equal(out_l, labels), "sigma 10 must move something"
    agreement = ((out_i[:, 0] > 0.5).long() == out_l).float().mean()
    assert agreement > 0.98, f"image and labels drifted apart: {agreement:.3f}"
    assert ((out_w > 0.5).long() == out_l).float().mean() > 0.98


def test_same_seed_same_augmentation() -> None:
    images, labels = blobs()
    cfg = AugmentCfg()
    a = augment_batch(images, labels, None, cfg, torch.Generator().manual_seed(5))
    b = augment_batch(images, labels, None, cfg, torch.Generator().manual_seed(5))
    c = augment_batch(images, labels, None, cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_separable_field_equals_bicubic_interpolation_of_the_coarse_grid() -> None:
    """The grid is the identity plus F.interpolate(bicubic) of the coarse displacements."""
    grid = elastic_grid(2, 57, 43, 10.0, 3)
    coarse = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(3)) * 10.0
    pixels = F.interpolate(coarse, size=(57, 43), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
    identity = elastic_grid(1, 57, 43, 0.0, 0)
    reference = identity + pixels * torch.tensor([2 / 42, 2 / 56])
    assert torch.allclose(grid, reference, atol=1e-5)


def test_shift_moves_the_image_by_that_many_pixels() -> None:
    image = torch.zeros(1, 1, 32, 32)
    image[0, 0, 16, 10] = 1.0
    grid = elastic_grid(1, 32, 32, 0.0, 0, shift=torch.tensor([[3.0, -2.0]]))
    moved = F.grid_sample(image, grid, mode="nearest", align_corners=True)
    # output pixel p samples input p + shift: the bright pixel appears at (16 + 2, 10 - 3)
    assert moved[0, 0, 18, 7] == 1.0 and moved.sum() == 1.0


def test_padding_the_mirror_once_equals_grid_samples_reflection() -> None:
    """The fast path (mirror-pad by a margin, sample inside) gives what reflection sampling gives,
    and the margin really contains every tap, even for the largest of many random draws."""
    images, _labels = blobs(batch=8, side=96)
    coarse = random_displacements(8, 10.0, 3, torch.Generator().manual_seed(7), torch.device("cpu"))
    margin = mirror_margin(coarse, 96, 96)
    assert 0 < margin < 96
    padded_grid = displacement_grid(coarse, 96, 96, margin)
    plain_grid = displacement_grid(coarse, 96, 96)
    # every bicubic tap (floor - 1 .. floor + 2) lies inside the padded frame
    pixels = (padded_grid + 1) / 2 * (96 + 2 * margin - 1)
    assert pixels.floor().min() - 1 >= 0 and pixels.floor().max() + 2 <= 96 + 2 * margin - 1
    padded = F.pad(images, (margin,) * 4, mode="reflect")
    for mode in ("bilinear", "bicubic", "nearest"):
        fast = F.grid_sample(padded, padded_grid, mode=mode, padding_mode="zeros", align_corners=True)
        slow = F.grid_sample(images, plain_grid, mode=mode, padding_mode="reflection", align_corners=True)
        mismatch = (fast - slow).abs() > 1e-4
        # nearest may round a coordinate that sits on a pixel boundary either way
        assert mismatch.float().mean() < (1e-4 if mode == "nearest" else 1e-12), mode


def test_margin_falls_back_to_reflection_when_the_mirror_cannot_hold_it() -> None:
    huge = torch.full((1, 2, 3, 3), 500.0)
    assert mirror_margin(huge, 64, 64) == 0
    images, labels = blobs(batch=1)
    cfg = AugmentCfg(elastic_sigma=300.0, dihedral=False, grey=0.0)
    out_i, out_l, _ = augment_batch(images, labels, None, cfg, torch.Generator().manual_seed(0))
    assert out_i.shape == images.shape and set(out_l.unique().tolist()) <= {0, 1}
