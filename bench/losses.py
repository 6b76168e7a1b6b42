"""The paper's loss: a pixel-wise softmax cross-entropy weighted by the border weight map.

w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2)), with d1, d2 the distances to the
nearest and second-nearest cell (Ronneberger et al. 2015, Eq. 2). It makes the network learn
the thin membranes between touching cells. Dice and CE + Dice are offered as alternatives.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from bench.metrics import label_cells

PAPER_W0 = 10.0
PAPER_SIGMA = 5.0


def class_balance_weights(mask: np.ndarray) -> np.ndarray:
    """w_c: each class weighted by N / (2 N_class), so both classes carry equal total weight."""
    mask = mask.astype(bool)
    n = mask.size
    n_fg = int(mask.sum())
    n_bg = n - n_fg
    w_fg = n / (2 * n_fg) if n_fg else 0.0
    w_bg = n / (2 * n_bg) if n_bg else 0.0
    return np.where(mask, w_fg, w_bg).astype(np.float32)


def two_nearest_cell_distances(instances: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """d1, d2: Euclidean distances from every pixel to the nearest and second-nearest cell.

    Each cell's distance transform is computed only inside its bounding box grown by ``cutoff``
    (beyond it the border term is negligible) and distances past the cutoff are left infinite.
    That makes the map linear in the number of cells instead of cells x image size.
    """
    h, w = instances.shape
    d1 = np.full((h, w), np.inf)
    d2 = np.full((h, w), np.inf)
    margin = math.ceil(cutoff)
    for index, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is None:
            continue
        ys = slice(max(box[0].start - margin, 0), min(box[0].stop + margin, h))
        xs = slice(max(box[1].start - margin, 0), min(box[1].stop + margin, w))
        distance = ndimage.distance_transform_edt(instances[ys, xs] != index)
        distance[distance > cutoff] = np.inf
        near1, near2 = d1[ys, xs], d2[ys, xs]
        d2[ys, xs] = np.minimum(near2, np.maximum(near1, distance))
        d1[ys, xs] = np.minimum(near1, distance)
    return d1, d2


def border_weight_map(
    instances: np.ndarray, w0: float = PAPER_W0, sigma: float = PAPER_SIGMA, class_mask: np.ndarray | None = None
) -> np.ndarray:
    """The paper's weight map for an instance label image (0 = boundary / background).

    The border term applies to boundary pixels only (inside a cell d1 = 0 and it would reward
    nothing). ``class_mask`` (1 = interior) sets w_c; by default, the instances' foreground.
    """
    mask = instances > 0 if class_mask is None else class_mask.astype(bool)
    weights = class_balance_weights(mask).astype(np.float64)
    weights += np.where(instances == 0, border_term(instances, w0, sigma), 0.0)
    return weights.astype(np.float32)


def border_term(instances: np.ndarray, w0: float, sigma: float) -> np.ndarray:
    """w0 * exp(-(d1 + d2)^2 / (2 sigma^2)) at every pixel (float64; 0 far from two cells)."""
    # beyond this d1 + d2 the border term is below 1e-8 * w0
    cutoff = sigma * math.sqrt(2 * math.log(1e8))
    d1, d2 = two_nearest_cell_distances(instances, cutoff)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    border[~np.isfinite(border)] = 0.0
    return border


_WEIGHT_MAPS: OrderedDict[tuple[bytes, tuple[int, ...], float, float], np.ndarray] = OrderedDict()
WEIGHT_CACHE_SIZE = 64  # masks; a 512x512 map is 1 MiB


def weight_map_for_mask(mask: np.ndarray, w0: float = PAPER_W0, sigma: float = PAPER_SIGMA) -> np.ndarray:
    """Weight map of a binary membrane mask: the cells are its 4-connected interior regions.

    Cached per mask content (a read-only array comes back): every search trial and every seed
    of a suite trains on the same masks, and a map costs ~50 ms per 512x512 image.
    """
    key = (hashlib.blake2b(np.ascontiguousarray(mask).tobytes(), digest_size=16).digest(), mask.shape, w0, sigma)
    cached = _WEIGHT_MAPS.get(key)
    if cached is not None:
        _WEIGHT_MAPS.move_to_end(key)
        return cached
    weights = border_weight_map(label_cells(mask), w0=w0, sigma=sigma, class_mask=mask)
    weights.setflags(write=False)
    _WEIGHT_MAPS[key] = weights
    if len(_WEIGHT_MAPS) > WEIGHT_CACHE_SIZE:
        _WEIGHT_MAPS.popitem(last=False)
    return weights


LossName = Literal["weighted_ce", "ce", "dice", "ce_dice"]


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over pixels of w(x) * -log softmax(logits)_{target(x)}(x)."""
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    if weight is None:
        return per_pixel.mean()
    return (per_pixel * weight).mean()


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice of the foreground class (class 1), averaged over the batch."""
    prob = logits.softmax(dim=1)[:, 1]
    fg = (target == 1).float()
    intersection = (prob * fg).flatten(1).sum(1)
    total = prob.flatten(1).sum(1) + fg.flatten(1).sum(1)
    return (1 - (2 * intersection + eps) / (total + eps)).mean()


def segmentation_loss(
    name: LossName, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """The training loss by name; ``weighted_ce`` is the paper's."""
    if name == "weighted_ce":
        return weighted_cross_entropy(logits, target, weight)
    if name == "ce":
        return weighted_cross_entropy(logits, target, None)
    if name == "dice":
        return soft_dice_loss(logits, target)
    if name == "ce_dice":
        return weighted_cross_entropy(logits, target, weight) + soft_dice_loss(logits, target)
    raise ValueError(f"unknown loss {name!r}; choose weighted_ce, ce, dice or ce_dice")
