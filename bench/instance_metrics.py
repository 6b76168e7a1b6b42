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
    """Overlaps of the predicted with the true instances, and the IoU-maximising assignment.

    Predicted instances are indexed by row (ids ``pred_ids``), true ones by column (``true_ids``),
    both in increasing id order. Only overlapping pairs are stored (``rows``, ``cols`` and their
    ``intersection`` and ``pair_iou``): a noisy prediction has 10^5 fragments, and a dense table of
    them against every nucleus would take gigabytes. ``iou`` builds the dense matrix on demand.
    ``pairs`` holds (row, column) of the assignment's pairs, all with IoU > 0.
    """

    pred_ids: np.ndarray
    true_ids: np.ndarray
    pred_sizes: np.ndarray  # (n_pred,) pixels of each predicted instance
    true_sizes: np.ndarray  # (n_true,)
    rows: np.ndarray  # (n_overlaps,) predicted index of each overlapping pair
    cols: np.ndarray  # (n_overlaps,) true index
    intersection: np.ndarray  # (n_overlaps,) pixels in both
    pair_iou: np.ndarray  # (n_overlaps,) > 0
    pairs: np.ndarray  # (n_assigned, 2) row and column indices
    assigned_iou: np.ndarray  # (n_assigned,)

    @property
    def n_pred(self) -> int:
        return int(self.pred_ids.size)

    @property
    def n_true(self) -> int:
        return int(self.true_ids.size)

    @property
    def iou(self) -> np.ndarray:
        """The (n_pred, n_true) IoU matrix, zero where two instances do not overlap."""
        dense = np.zeros((self.n_pred, self.n_true))
        dense[self.rows, self.cols] = self.pair_iou
        return dense

    def true_positives(self, threshold: float) -> int:
        """Assigned pairs with IoU > ``threshold`` (the DSB rule). For thresholds >= 0.5 this is
        the largest number of one-to-one matches: an object overlaps at most one other by IoU > 0.5."""
        if threshold < 0.5:
            raise ValueError(f"threshold {threshold}: matching by maximal IoU counts matches only from 0.5 up")
        return int(np.count_nonzero(self.assigned_iou > threshold))


def _ids_and_index(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The object ids (every value but 0, increasing) and each pixel's object index, -1 on background.
    Ids that fit a count table are counted (linear); others (negative, huge) are sorted."""
    flat = labels.ravel().astype(np.int64, copy=False)
    if flat.size and flat.min() >= 0 and flat.max() <= 4 * flat.size:
        present = np.bincount(flat) > 0
        present[0] = False
        index = (np.cumsum(present) - 1)[flat]
        index[flat == 0] = -1
        return np.flatnonzero(present), index
    ids, inverse = np.unique(flat, return_inverse=True)
    objects = ids != 0
    index = (np.cumsum(objects) - 1)[inverse]
    index[~objects[inverse]] = -1
    return ids[objects], index


def _assign(rows: np.ndarray, cols: np.ndarray, iou: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The one-to-one pairs maximising total IoU (``linear_sum_assignment``), solved on the
    instances that overlap anything (the others can only be paired at IoU 0), with their IoUs."""
    used_rows, r = np.unique(rows, return_inverse=True)
    used_cols, c = np.unique(cols, return_inverse=True)
    table = np.zeros((used_rows.size, used_cols.size))
    table[r, c] = iou
    best_r, best_c = linear_sum_assignment(table, maximize=True)
    values = table[best_r, best_c]
    keep = values > 0
    return np.stack([used_rows[best_r[keep]], used_cols[best_c[keep]]], axis=1).reshape(-1, 2), values[keep]


def match_instances(pred_labels: np.ndarray, true_labels: np.ndarray) -> InstanceMatch:
    """IoU of every overlapping predicted and true instance from one contingency of the two label
    images, and the one-to-one assignment maximising total IoU (``linear_sum_assignment``)."""
    if pred_labels.shape != true_labels.shape:
        raise ValueError(f"prediction is {pred_labels.shape} but the truth is {true_labels.shape}")
    pred_ids, p = _ids_and_index(pred_labels)
    true_ids, t = _ids_and_index(true_labels)
    pred_sizes = np.bincount(p[p >= 0], minlength=pred_ids.size).astype(np.int64)
    true_sizes = np.bincount(t[t >= 0], minlength=true_ids.size).astype(np.int64)
    both = (p >= 0) & (t >= 0)
    ones = np.ones(int(both.sum()), np.int64)
    counts = sparse.coo_array((ones, (p[both], t[both])), shape=(pred_ids.size, true_ids.size)).tocsr().tocoo()
    rows, cols, inter = counts.row.astype(np.intp), counts.col.astype(np.intp), counts.data  # duplicates summed
    iou = inter / (pred_sizes[rows] + true_sizes[cols] - inter)
    pairs, assigned_iou = _assign(rows, cols, iou)
    return InstanceMatch(pred_ids, true_ids, pred_sizes, true_sizes, rows, cols, inter, iou, pairs, assigned_iou)


def seg_score(m: InstanceMatch) -> float:
    """Cell Tracking Challenge SEG: mean over true objects of the IoU with the predicted object
    covering more than half of it (at most one can), 0 for a true object without one."""
    covering = 2 * m.intersection > m.true_sizes[m.cols]
    per_true = np.zeros(m.n_true)
    per_true[m.cols[covering]] = m.pair_iou[covering]
    return float(per_true.mean())


def aji_score(m: InstanceMatch) -> float:
    """Aggregated Jaccard index (Kumar et al. 2017): each true object adds its intersection and
    union with the predicted object of highest IoU with it (a predicted object may serve several;
    ties go to the lowest id); a true object overlapping none adds its own size to the union;
    every predicted object chosen by none adds its size to the union."""
    order = np.lexsort((m.rows, -m.pair_iou, m.cols))  # by true object, best IoU first, lowest id first
    first = order[np.unique(m.cols[order], return_index=True)[1]]  # each overlapped true object's best
    inter = m.intersection[first]
    union = m.pred_sizes[m.rows[first]] + m.true_sizes[m.cols[first]] - inter
    lonely_true = np.ones(m.n_true, dtype=bool)
    lonely_true[m.cols[first]] = False
    unused = np.ones(m.n_pred, dtype=bool)
    unused[m.rows[first]] = False
    total = union.sum() + m.true_sizes[lonely_true].sum() + m.pred_sizes[unused].sum()
    return float(inter.sum() / total)


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
