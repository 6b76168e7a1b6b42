"""Instance segmentation metrics: the DSB 2018 score, detection P/R/F1, CTC SEG and AJI.

Inputs are label images: 0 is background, every other integer (any ids, not necessarily
consecutive) one object. Everything is computed from one contingency table of the two label
images (one sort of the pixels), never by looping over objects in the image. Definitions,
empty cases and sources are in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.optimize import linear_sum_assignment

# The Data Science Bowl 2018 thresholds: 0.5, 0.55, ..., 0.95 (a match needs IoU > threshold)
DSB_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
INSTANCE_SCORES = ("dsb_ap", "precision_50", "recall_50", "f1_50", "seg", "aji")


@dataclass(frozen=True)
class InstanceMatch:
    """Overlaps of every predicted with every true instance, and the IoU-maximising assignment.

    Rows are predicted instances (ids ``pred_ids``), columns true ones (``true_ids``), both in
    increasing id order. ``pairs`` holds (row, column) of the assignment's pairs with IoU > 0.
    """

    pred_ids: np.ndarray
    true_ids: np.ndarray
    intersection: np.ndarray  # (n_pred, n_true) pixels in both
    pred_sizes: np.ndarray  # (n_pred,) pixels of each predicted instance
    true_sizes: np.ndarray  # (n_true,)
    iou: np.ndarray  # (n_pred, n_true)
    pairs: np.ndarray  # (n_pairs, 2) row and column indices

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def n_true(self) -> int:
        return int(self.true_ids.size)

    def true_positives(self, threshold: float) -> int:
        """Assigned pairs with IoU > ``threshold`` (the DSB rule). For thresholds >= 0.5 this is
        the largest number of one-to-one matches: an object overlaps at most one other by IoU > 0.5."""
        if threshold < 0.5:
            raise ValueError(f"threshold {threshold}: matching by maximal IoU counts matches only from 0.5 up")
        return int(np.count_nonzero(self.iou[self.pairs[:, 0], self.pairs[:, 1]] > threshold))


def _ids_and_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object ids (every value but 0, increasing) and each pixel's object index, -1 on background."""
    ids, inverse = np.unique(labels.ravel(), return_inverse=True)
    objects = ids != 0
    index = (np.cumsum(objects) - 1)[inverse.reshape(-1)]
    index[~objects[inverse.reshape(-1)]] = -1
    return ids[objects], index


def match_instances(pred_labels: np.ndarray, true_labels: np.ndarray) -> InstanceMatch:
    """IoU of every predicted with every true instance from one contingency of the two label
    images, and the one-to-one assignment maximising total IoU (``linear_sum_assignment``)."""
    if pred_labels.shape != true_labels.shape:
        raise ValueError(f"prediction is {pred_labels.shape} but the truth is {true_labels.shape}")
    pred_ids, p = _ids_and_index(pred_labels)
    true_ids, t = _ids_and_index(true_labels)
    pred_sizes = np.bincount(p[p >= 0], minlength=pred_ids.size).astype(np.int64)
    true_sizes = np.bincount(t[t >= 0], minlength=true_ids.size).astype(np.int64)
    both = (p >= 0) & (t >= 0)
    shape = (pred_ids.size, true_ids.size)
    counts = sparse.coo_matrix((np.ones(int(both.sum()), np.int64), (p[both], t[both])), shape=shape)
    intersection = counts.toarray()  # duplicates summed
    union = pred_sizes[:, None] + true_sizes[None, :] - intersection
    iou = np.divide(intersection, union, out=np.zeros(shape), where=union > 0)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    keep = iou[rows, cols] > 0
    pairs = np.stack([rows[keep], cols[keep]], axis=1).astype(np.intp).reshape(-1, 2)
    return InstanceMatch(pred_ids, true_ids, intersection, pred_sizes, true_sizes, iou, pairs)


def seg_score(m: InstanceMatch) -> float:
    """Cell Tracking Challenge SEG: mean over true objects of the IoU with the predicted object
    covering more than half of it (at most one can), 0 for a true object without one."""
    covering = 2 * m.intersection > m.true_sizes[None, :]
    return float(np.where(covering, m.iou, 0.0).max(axis=0, initial=0.0).mean())


def aji_score(m: InstanceMatch) -> float:
    """Aggregated Jaccard index (Kumar et al. 2017): each true object adds its intersection and
    union with the predicted object of highest IoU with it (a predicted object may serve several;
    ties go to the lowest id); a true object overlapping none adds its own size to the union;
    every predicted object chosen by none adds its size to the union."""
    best = m.iou.argmax(axis=0)
    cols = np.arange(m.n_true)
    overlaps = m.iou[best, cols] > 0
    inter = m.intersection[best, cols] * overlaps
    union = np.where(overlaps, m.pred_sizes[best] + m.true_sizes - inter, m.true_sizes)
    unused = np.ones(m.n_pred, dtype=bool)
    unused[best[overlaps]] = False
    return float(inter.sum() / (union.sum() + m.pred_sizes[unused].sum()))


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def score_instances(pred_labels: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    """Every instance metric of one predicted label image against one true label image.

    Empty cases: no truth and no prediction scores 1.0 on every metric (nothing to find, nothing
    false); truth without prediction, or prediction without truth, scores 0.0 on every metric.
    """
    m = match_instances(pred_labels, true_labels)
    if m.n_true == 0 or m.n_pred == 0:
        value = 1.0 if m.n_true == m.n_pred == 0 else 0.0
        return dict.fromkeys(INSTANCE_SCORES, value)
    tp = np.array([m.true_positives(t) for t in DSB_THRESHOLDS])
    ap = tp / (m.n_pred + m.n_true - tp)  # TP / (TP + FP + FN)
    tp50 = m.true_positives(0.5)
    return {
        "dsb_ap": float(ap.mean()),
        "precision_50": _ratio(tp50, m.n_pred),
        "recall_50": _ratio(tp50, m.n_true),
        "f1_50": _ratio(2 * tp50, m.n_pred + m.n_true),
        "seg": seg_score(m),
        "aji": aji_score(m),
    }


def score_instance_stack(
    preds: Iterable[np.ndarray], truths: Iterable[np.ndarray]
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The mean over images of each metric (the DSB score is a mean over images), and each
    image's scores: the paired per-image values that comparisons resample (``bench.stats``)."""
    per_image = [score_instances(p, t) for p, t in zip(preds, truths, strict=True)]
    if not per_image:
        raise ValueError("no images to score")
    return {k: float(np.mean([img[k] for img in per_image])) for k in INSTANCE_SCORES}, per_image
