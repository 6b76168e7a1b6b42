"""Instance segmentation on top of a semantic network: training targets from instance labels,
and instances decoded from the network's class probabilities.

Two targets (``TrainCfg.target``):

- ``binary``: the paper's. Foreground is 1, background 0, and touching objects are kept apart by
  a one-pixel background line (``instances_to_mask``); the border weight map (``w0``, ``sigma``)
  makes the network learn those thin separating lines. Decoding labels the connected
  components of the thresholded foreground.
- ``three_class``: background 0, interior 1, boundary 2 (each object's outermost pixels, so two
  touching nuclei are parted by two boundary pixels). Decoding labels the connected components
  of the interior and grows them into the predicted foreground (interior or boundary) with a
  seeded watershed, so boundary pixels go back to the object they surround.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import ndimage

from bench.losses import border_term

TargetName = Literal["binary", "three_class"]
NUM_CLASSES: dict[str, int] = {"binary": 2, "three_class": 3}
BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
# the decoding thresholds validation chooses from (TrainCfg.decode_threshold); decoding is
# milliseconds per image, so trying them all costs nothing next to the prediction
DECODE_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def instances_to_mask(instances: np.ndarray) -> np.ndarray:
    """Interior mask of an instance image with background between touching objects: every
    object pixel with another object among its 8 neighbours is dropped, so the two sides of a
    contact leave a line that parts them even where it meets the background (the connected
    components of the mask are the objects again)."""
    grown = ndimage.grey_dilation(instances, size=(3, 3))  # the largest label around
    objects_only = np.where(instances > 0, instances, np.iinfo(np.int32).max).astype(np.int32)
    shrunk = ndimage.grey_erosion(objects_only, size=(3, 3))  # the smallest object label around
    touching = (instances > 0) & ((grown != instances) | (shrunk != instances))
    return ((instances > 0) & ~touching).astype(np.uint8)


def three_class_target(instances: np.ndarray) -> np.ndarray:
    """0 background, 1 interior, 2 boundary: an object's pixels with a 4-neighbour of another
    label (background or another object)."""
    from skimage.segmentation import find_boundaries

    edge = find_boundaries(instances, connectivity=1, mode="inner") & (instances > 0)
    return np.where(instances > 0, np.where(edge, BOUNDARY, INTERIOR), BACKGROUND).astype(np.uint8)


def class_weights(target: np.ndarray, num_classes: int) -> np.ndarray:
    """w_c: each class present weighted by N / (K N_class), so every present class carries the
    same total weight (for two classes the paper's balancing, ``class_balance_weights``)."""
    counts = np.bincount(target.ravel(), minlength=num_classes).astype(np.float64)
    present = counts > 0
    per_class = np.zeros(num_classes)
    per_class[present] = target.size / (present.sum() * counts[present])
    return per_class[target].astype(np.float32)


def instance_target(
    instances: np.ndarray, target: TargetName, w0: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels (uint8) and the per-pixel loss weights for one instance label image: class
    weights plus, with ``w0 > 0``, the paper's border term on every pixel that is not an object's
    interior, measured from the objects' interiors (so w0 = 0 leaves the class weights alone)."""
    instances = instances.astype(np.int32, copy=False)
    if target == "binary":
        labels = instances_to_mask(instances)
    else:
        labels = three_class_target(instances)
    weights = class_weights(labels, NUM_CLASSES[target]).astype(np.float64)
    if w0 > 0:
        cores = np.where(labels == INTERIOR, instances, 0)
        weights += np.where(labels == INTERIOR, 0.0, border_term(cores, w0, sigma))
    return labels, weights.astype(np.float32)


def decode_instances(probs: np.ndarray, threshold: float = 0.5, min_size: int = 0) -> np.ndarray:
    """Instance labels (int32, 0 = background) from (K, H, W) class probabilities.

    Two classes: connected components of P(foreground) >= ``threshold``. Three classes: seeds
    are the connected components of the interior (interior the most likely class); each grows
    by a watershed on the distance to the seeds into the foreground (P(background) <
    1 - ``threshold``), so a boundary pixel joins the nearest interior;
    foreground that no seed reaches becomes objects of its own. Objects smaller than
    ``min_size`` pixels are dropped.
    """
    from skimage.segmentation import watershed

    if probs.shape[0] == 2:
        labels, _ = ndimage.label(probs[1] >= threshold)
    else:
        foreground = probs[BACKGROUND] < 1 - threshold
        seeds, count = ndimage.label((probs.argmax(axis=0) == INTERIOR) & foreground)
        # each foreground pixel joins the seed nearest to it (boundaries are a pixel or two thick)
        labels = watershed(ndimage.distance_transform_edt(seeds == 0), seeds, mask=foreground)
        unreached, _ = ndimage.label(foreground & (labels == 0))
        labels = np.where(unreached > 0, unreached + count, labels)
    if min_size > 0:
        sizes = np.bincount(labels.ravel())
        labels = np.where(sizes[labels] >= min_size, labels, 0)
    return labels.astype(np.int32)


def target_probabilities(instances: np.ndarray, target: TargetName) -> np.ndarray:
    """The (K, H, W) one-hot probabilities of a perfect prediction of ``target`` (a test oracle
    and the trivial predictions' shape)."""
    labels, _ = instance_target(instances, target, 0.0, 1.0)
    return np.eye(NUM_CLASSES[target], dtype=np.float32)[labels].transpose(2, 0, 1)
