"""Elastic deformation and friends: identity at sigma 0, aligned outputs, binary labels, seeding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.augment import AugmentCfg, augment_batch, sampling_grid


def blobs(batch: int = 3, side: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch, 1, 8, 8, generator=gen)
    labels = (F.interpolate(coarse, size=(side, side), mode="bilinear") > 0.5).long()[:, 0]
    return labels[:, None].float(), labels


def test_zero_displacement_grid_is_the_identity() -> None:
    images, labels = blobs()
    grid = sampling_grid(torch.zeros(3, 2, 64, 64))
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
