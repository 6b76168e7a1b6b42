"""The border weight map against brute force, and the losses' basic properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from bench import losses
from tests.conftest import SHARED_DATA


def two_touching_cells() -> np.ndarray:
    instances = np.zeros((48, 64), dtype=np.int32)
    instances[10:38, 6:30] = 1
    instances[10:38, 33:58] = 2  # a 3-pixel gap between the cells at columns 30..32
    return instances


def brute_force_weight_map(instances: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    ids = [i for i in np.unique(instances) if i > 0]
    distances = np.sort(np.stack([ndimage.distance_transform_edt(instances != i) for i in ids]), axis=0)
    d1, d2 = distances[0], distances[1]
    mask = instances > 0
    wc = np.where(mask, mask.size / (2 * mask.sum()), mask.size / (2 * (~mask).sum()))
    return wc + np.where(instances == 0, w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)), 0.0)


def test_weight_map_matches_brute_force() -> None:
    instances = two_touching_cells()
    ours = losses.border_weight_map(instances, w0=10, sigma=5)
    assert np.allclose(ours, brute_force_weight_map(instances, 10, 5), atol=1e-5)


def test_weight_map_peaks_in_the_gap_between_cells() -> None:
    instances = two_touching_cells()
    weights = losses.border_weight_map(instances)
    peak = np.unravel_index(np.argmax(weights), weights.shape)
    assert 10 <= peak[0] < 38 and 30 <= peak[1] <= 32, peak
    # in the gap d1 + d2 is at most 4 px, so the border term is close to w0 = 10
    assert weights[24, 31] > weights[24, 2] + 7


def test_weight_map_of_a_real_isbi_label_is_sane() -> None:
    """Its speed is measured in bench/benchmarks/test_micro.py, not asserted here."""
    mask = np.asarray(Image.open(SHARED_DATA / "isbi2012/train/labels/00.png")) > 0
    weights = losses.weight_map_for_mask(mask)
    assert weights.shape == mask.shape and np.isfinite(weights).all()
    assert weights[~mask].mean() > weights[mask].mean()  # membranes carry the weight
    assert weights.max() <= 10 + weights.min() * 10  # w0 bounds the border term


def test_weighted_cross_entropy_weights_pixels() -> None:
    logits = torch.zeros(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    weight = torch.tensor([[[1.0, 3.0]]])
    # each pixel's CE is log 2; weighted mean = (1 + 3) / 2 * log 2
    assert losses.weighted_cross_entropy(logits, target, weight).item() == pytest.approx(2 * np.log(2))
    assert losses.segmentation_loss("ce", logits, target).item() == pytest.approx(np.log(2))


def test_dice_loss_is_zero_for_a_confident_correct_prediction() -> None:
    target = torch.tensor([[[0, 1], [1, 0]]])
    logits = torch.stack([(target == 0).float(), (target == 1).float()], dim=1) * 50
    assert losses.segmentation_loss("dice", logits, target).item() == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.segmentation_loss("focal", logits, target)  # type: ignore[arg-type]


def test_weight_maps_are_computed_once_per_mask_and_settings() -> None:
    """Search trials and seeds share masks: the second request is the cached (read-only) map,
    equal to a fresh computation; other settings or another mask compute anew."""
    mask = np.asarray(Image.open(SHARED_DATA / "isbi2012/train/labels/01.png")) > 0
    first = losses.weight_map_for_mask(mask)
    again = losses.weight_map_for_mask(mask.copy())  # same content, another array
    assert again is first and not first.flags.writeable
    fresh = losses.border_weight_map(losses.label_cells(mask), class_mask=mask)
    assert np.array_equal(first, fresh)
    other_w0 = losses.weight_map_for_mask(mask, w0=5.0)
    assert other_w0 is not first and not np.array_equal(other_w0, first)
    flipped = losses.weight_map_for_mask(mask[::-1])
    assert flipped is not first and np.array_equal(flipped, first[::-1])
