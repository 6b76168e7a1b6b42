"""Segmentation metrics as the challenges scored them (numpy / scipy, vectorised).

Convention: a *mask* is 1 for cell interior (foreground) and 0 for membrane / boundary, as the
ISBI 2012 labels (255 interior, 0 membrane). A *probability map* is P(interior) in [0, 1].
Cells are the 4-connected components of the interior, so one-pixel membranes separate them.
Definitions and sources are in docs/metrics.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import Literal, get_args

import numpy as np
from scipy import ndimage, sparse

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
EIGHT_CONNECTED = ndimage.generate_binary_structure(2, 2)
CHALLENGE_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))  # 0.1 ... 0.9


def label_cells(mask: np.ndarray) -> np.ndarray:
    """Instance labels 1..n of the 4-connected interior regions; 0 on the boundary."""
    labels, _ = ndimage.label(mask.astype(bool), structure=FOUR_CONNECTED)
    return labels


def pixel_error(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """Fraction of pixels whose binary label differs from the truth."""
    return float(np.mean(pred_mask.astype(bool) != true_mask.astype(bool)))


def iou(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """Intersection over union of the foreground (1.0 when both are empty)."""
    p, t = pred_mask.astype(bool), true_mask.astype(bool)
    union = np.logical_or(p, t).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, t).sum() / union)


def dice(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """Dice coefficient (F1) of the foreground (1.0 when both are empty)."""
    p, t = pred_mask.astype(bool), true_mask.astype(bool)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(p, t).sum() / total)


@dataclass(frozen=True)
class Contingency:
    """The joint counts of a proposal and a truth segmentation over the true foreground.

    Proposal background (pred label 0) inside the true foreground counts as one singleton
    segment per pixel, as the ISBI 2012 scoring does: an unlabelled pixel is split from all.
    Singletons are only counted, not stored: each adds a joint count and a proposal size of 1.
    """

    joint: np.ndarray  # non-zero n_ij between labelled proposal segments and true segments
    proposal: np.ndarray  # sizes s_i of the labelled proposal segments
    truth: np.ndarray  # sizes t_j of the true segments
    singletons: int  # proposal-background pixels inside the true foreground
    n: int  # true-foreground pixels

    @classmethod
    def of(cls, pred_labels: np.ndarray, true_labels: np.ndarray) -> Contingency:
        """One counting pass: sparse joint counts, linear in the pixels (no sort)."""
        fg = true_labels.ravel() > 0
        t = _consecutive(true_labels.ravel()[fg])
        p = pred_labels.ravel()[fg]
        labelled = p > 0
        p_in, t_in = _consecutive(p[labelled]), t[labelled]
        shape = (int(p_in.max(initial=0)) + 1, int(t.max(initial=0)) + 1)
        counts = sparse.coo_matrix((np.ones(p_in.size), (p_in, t_in)), shape=shape).tocsr()  # sums duplicates
        proposal, truth = np.bincount(p_in).astype(np.float64), np.bincount(t).astype(np.float64)
        singletons = int(p.size - p_in.size)
        return cls(counts.data, proposal[proposal > 0], truth[truth > 0], singletons, int(p.size))


def _consecutive(labels: np.ndarray) -> np.ndarray:
    """Labels as small non-negative integers, so they can index counts: kept as they are when
    already compact (``label_cells`` output), renumbered in order otherwise."""
    labels = labels.astype(np.int64, copy=False)
    if labels.size and (labels.min() < 0 or labels.max() > 2 * labels.size):
        return np.unique(labels, return_inverse=True)[1].reshape(-1)
    return labels


def rand_scores(pred_labels: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    """Rand scores of a proposal against the truth (see ``rand_from_counts``)."""
    return rand_from_counts(Contingency.of(pred_labels, true_labels))


def rand_from_counts(c: Contingency) -> dict[str, float]:
    """Foreground-restricted Rand scores (Arganda-Carreras et al. 2015), counted over pixel pairs.

    With n_ij the joint counts and s_i, t_j the proposal and truth segment sizes, and pairs
    counted without a pixel paired to itself (x(x-1) instead of x^2, as ``skimage`` does):
    ``rand_split = sum n_ij(n_ij-1) / sum t_j(t_j-1)`` (1 when no true cell is split),
    ``rand_merge = sum n_ij(n_ij-1) / sum s_i(s_i-1)`` (1 when no two cells are merged),
    ``v_rand`` is their harmonic mean and ``rand_error = 1 - v_rand``. Singletons pair with
    nothing, so they add no pairs.
    """
    pairs_joint = float(np.sum(c.joint * (c.joint - 1)))
    pairs_s = float(np.sum(c.proposal * (c.proposal - 1)))
    pairs_t = float(np.sum(c.truth * (c.truth - 1)))
    if c.n == 0 or pairs_s + pairs_t == 0:
        perfect = pairs_s == pairs_t == 0
        value = 1.0 if perfect else 0.0
        return {"v_rand": value, "rand_split": value, "rand_merge": value, "rand_error": 1.0 - value}
    split = pairs_joint / pairs_t if pairs_t else 1.0
    merge = pairs_joint / pairs_s if pairs_s else 1.0
    v_rand = 2 * pairs_joint / (pairs_s + pairs_t)
    return {"v_rand": v_rand, "rand_split": split, "rand_merge": merge, "rand_error": 1.0 - v_rand}


def _entropy(probabilities: np.ndarray) -> float:
    probabilities = probabilities[probabilities > 0]
    return float(-np.sum(probabilities * np.log2(probabilities)))


def info_scores(pred_labels: np.ndarray, true_labels: np.ndarray) -> dict[str, float]:
    """Information scores of a proposal against the truth (see ``info_from_counts``)."""
    return info_from_counts(Contingency.of(pred_labels, true_labels))


def info_from_counts(c: Contingency) -> dict[str, float]:
    """Foreground-restricted information scores (Arganda-Carreras et al. 2015), in bits.

    ``vi_split = H(S|T)`` and ``vi_merge = H(T|S)`` are the variation-of-information parts;
    ``info_split = I(S;T)/H(S)``, ``info_merge = I(S;T)/H(T)`` and
    ``v_info = 2 I(S;T) / (H(S) + H(T))`` their normalised forms (1 = perfect).
    """
    n = c.n
    if n == 0:
        return {"v_info": 1.0, "info_split": 1.0, "info_merge": 1.0, "vi_split": 0.0, "vi_merge": 0.0}
    singleton_entropy = c.singletons * math.log2(n) / n  # each singleton: -(1/n) log2(1/n)
    h_joint = _entropy(c.joint / n) + singleton_entropy
    h_s, h_t = _entropy(c.proposal / n) + singleton_entropy, _entropy(c.truth / n)
    mutual = h_s + h_t - h_joint
    denominator = h_s + h_t
    return {
        "v_info": float(2 * mutual / denominator) if denominator > 0 else 1.0,
        "info_split": float(mutual / h_s) if h_s > 0 else 1.0,
        "info_merge": float(mutual / h_t) if h_t > 0 else 1.0,
        "vi_split": float(h_joint - h_t),
        "vi_merge": float(h_joint - h_s),
    }


# --- warping error (Jain et al. 2010) ---------------------------------------------------------
# A pixel is *simple* when flipping it changes no topology: with 4-connected foreground and
# 8-connected background, exactly one foreground 4-component of its 8-neighbourhood touches it
# 4-adjacently and exactly one background 8-component exists in that neighbourhood.
_NEIGHBOUR_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1)]


@lru_cache(maxsize=1)
def _simple_point_table() -> np.ndarray:
    """Lookup table: neighbourhood code (8 bits, clockwise from top-left) -> simple or not."""
    table = np.zeros(256, dtype=bool)
    for code in range(256):
        patch = np.zeros((3, 3), dtype=bool)
        for bit, (dy, dx) in enumerate(_NEIGHBOUR_OFFSETS):
            patch[1 + dy, 1 + dx] = bool(code >> bit & 1)
        fg_labels, _ = ndimage.label(patch, structure=FOUR_CONNECTED)
        touching_fg = {fg_labels[y, x] for y, x in ((0, 1), (1, 0), (1, 2), (2, 1))} - {0}
        background = ~patch
        background[1, 1] = False
        _, n_bg = ndimage.label(background, structure=EIGHT_CONNECTED)
        table[code] = len(touching_fg) == 1 and n_bg == 1
    return table


def _codes_at(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Neighbourhood codes of pixels (ys, xs) of an image held with a one-pixel zero border."""
    code = np.zeros(ys.shape, dtype=np.int32)
    for bit, (dy, dx) in enumerate(_NEIGHBOUR_OFFSETS):
        code |= padded[ys + 1 + dy, xs + 1 + dx].astype(np.int32) << bit
    return code


def _flip_simple(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray, remove: bool) -> tuple[np.ndarray, np.ndarray]:
    """Flip the simple pixels among candidates (ys, xs), phase by phase of the 3x3 sub-lattice.

    Pixels of one phase have disjoint neighbourhoods, so they flip at once without interacting:
    topology-preserving, yet vectorised. Returns the coordinates that flipped.
    """
    table = _simple_point_table()
    phase = (ys % 3) * 3 + xs % 3
    flipped_y, flipped_x = [], []
    for p in np.unique(phase):
        py, px = ys[phase == p], xs[phase == p]
        simple = table[_codes_at(padded, py, px)]
        if simple.any():
            padded[py[simple] + 1, px[simple] + 1] = not remove
            flipped_y.append(py[simple])
            flipped_x.append(px[simple])
    if not flipped_y:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    return np.concatenate(flipped_y), np.concatenate(flipped_x)


def _neighbours(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct pixels within the 3x3 neighbourhoods of (ys, xs)."""
    ny = (ys[:, None] + np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1])).ravel()
    nx = (xs[:, None] + np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1])).ravel()
    inside = (ny >= 0) & (ny < shape[0]) & (nx >= 0) & (nx < shape[1])
    flat = np.unique(ny[inside] * shape[1] + nx[inside])
    return flat // shape[1], flat % shape[1]


def _flip_all(padded: np.ndarray, target: np.ndarray, remove: bool) -> bool:
    """Flip simple differing pixels in one direction (foreground to background if ``remove``)
    until none is left. Simpleness depends only on the 3x3 neighbourhood, so after the first
    sweep only the neighbours of what just flipped need another look: the work is proportional
    to the flips, not to image size x sweeps (a long thin error is peeled pixel by pixel)."""
    warped = padded[1:-1, 1:-1]
    ys, xs = np.nonzero((warped != target) & (warped == remove))
    changed = False
    while ys.size:
        fy, fx = _flip_simple(padded, ys, xs, remove)
        if fy.size == 0:
            break
        changed = True
        ys, xs = _neighbours(fy, fx, target.shape)
        keep = (warped[ys, xs] != target[ys, xs]) & (warped[ys, xs] == remove)
        ys, xs = ys[keep], xs[keep]
    return changed


def warp_to(source: np.ndarray, target: np.ndarray, max_rounds: int = 10_000) -> np.ndarray:
    """Flip simple pixels of ``source`` towards ``target`` until none is left: the warped mask.

    Removals and additions alternate, each run to exhaustion: moving a boundary first widens it,
    then lets the other side grow in. Flipping both at once can strand a boundary half-way (a
    cell would have to split to finish), which would count a mere shift as a topology error.
    """
    padded = np.pad(source.astype(bool), 1)
    target = target.astype(bool)
    for _ in range(max_rounds):
        removed = _flip_all(padded, target, remove=True)
        added = _flip_all(padded, target, remove=False)
        if not (removed or added):
            break
    return padded[1:-1, 1:-1].copy()


def warping_error(pred_mask: np.ndarray, true_mask: np.ndarray) -> float:
    """Fraction of pixels where the prediction differs from the truth warped towards it.

    Boundary shifts are absorbed by the warp; splits, merges and holes are not, so this counts
    topological errors only (Jain et al. 2010, as used by the ISBI 2012 challenge).
    """
    warped = warp_to(true_mask, pred_mask)
    return float(np.mean(warped != pred_mask.astype(bool)))


def score_masks(pred_mask: np.ndarray, true_mask: np.ndarray, warping: bool = True) -> dict[str, float]:
    """Every binary metric of one prediction against one truth mask."""
    pred_labels, true_labels = label_cells(pred_mask), label_cells(true_mask)
    scores = {
        "pixel_error": pixel_error(pred_mask, true_mask),
        "iou": iou(pred_mask, true_mask),
        "dice": dice(pred_mask, true_mask),
    }
    counts = Contingency.of(pred_labels, true_labels)  # counted once for both: most of the cost
    scores |= rand_from_counts(counts) | info_from_counts(counts)
    if warping:
        scores["warping_error"] = warping_error(pred_mask, true_mask)
    return scores


# --- the metric table ---------------------------------------------------------------------------
# Every metric the harness names, in one place: which way is better, how printed lines name it,
# its unit and where it is shown. Configs take the names as Literal types, so a misspelt objective
# or monitor fails when a suite or --set is read, not after the first epoch of the first trial.

# What ``score_stack`` returns (warping_error only when asked): an objective or a monitor
ScoreName = Literal[
    "pixel_error", "v_rand", "v_info", "warping_error", "iou", "dice", "rand_split", "rand_merge", "rand_error",
    "info_split", "info_merge", "vi_split", "vi_merge",
]  # fmt: skip
# What a search trial can cost, each minimised: inference latency (batch 1, the training tile,
# this machine), parameters, forward GFLOP per image, peak memory of the latency measurement
CostName = Literal["latency_ms", "params", "gflops", "peak_memory_mib"]
# What a training run measures besides its scores: the loss of its steps, and with budget = "target"
# the wall-clock seconds and the steps until validation first reached the target
TrainingName = Literal["train_loss", "time_to_target", "steps_to_target"]
# What ``bench.instance_metrics.score_instances`` returns for instance label images
InstanceName = Literal["dsb_ap", "precision_50", "recall_50", "f1_50", "seg", "aji"]
MetricName = Literal[ScoreName, CostName, TrainingName, InstanceName]


class Shown(IntEnum):
    """Where a metric is shown; each place shows the metrics of the places above it too."""

    RANKED = 1  # the two the ISBI 2012 challenge ranked by: epoch lines and the report's summary
    RESULT = 2  # result lines of train / eval / score, and the report's quality tables
    ROWS = 3  # the eval rows `unet-bench run` stores
    NOWHERE = 4  # none of those (a score can still be an objective or a monitor)


@dataclass(frozen=True)
class Metric:
    name: MetricName
    higher_is_better: bool
    label: str  # how printed lines and tables name it
    unit: str = ""
    shown: Shown = Shown.NOWHERE


METRICS: dict[str, Metric] = {m.name: m for m in (  # in the order printed lines show them
    Metric("pixel_error", False, "pixel error", shown=Shown.RANKED),
    Metric("v_rand", True, "V_rand", shown=Shown.RANKED),
    Metric("v_info", True, "V_info", shown=Shown.RESULT),
    Metric("warping_error", False, "warping error", shown=Shown.RESULT),
    Metric("iou", True, "IoU", shown=Shown.RESULT),
    Metric("dice", True, "Dice", shown=Shown.ROWS),
    Metric("rand_split", True, "Rand split", shown=Shown.ROWS),
    Metric("rand_merge", True, "Rand merge", shown=Shown.ROWS),
    Metric("rand_error", False, "Rand error"),
    Metric("info_split", True, "information split"),
    Metric("info_merge", True, "information merge"),
    Metric("vi_split", False, "VI split", "bit"),
    Metric("vi_merge", False, "VI merge", "bit"),
    # instance metrics (bench.instance_metrics), not part of score_stack: an instance result has
    # these instead of the membrane ones, shown in the same places (DSB AP and F1 ranked)
    Metric("dsb_ap", True, "DSB AP", shown=Shown.RANKED),  # mean over IoU 0.5 ... 0.95 of TP / (TP + FP + FN)
    Metric("precision_50", True, "precision@0.5", shown=Shown.RESULT),
    Metric("recall_50", True, "recall@0.5", shown=Shown.RESULT),
    Metric("f1_50", True, "F1@0.5", shown=Shown.RANKED),
    Metric("seg", True, "SEG", shown=Shown.RESULT),  # Cell Tracking Challenge
    Metric("aji", True, "AJI", shown=Shown.RESULT),  # aggregated Jaccard index
    Metric("latency_ms", False, "latency", "ms"),
    Metric("params", False, "parameters"),
    Metric("gflops", False, "forward GFLOP", "GFLOP"),
    Metric("peak_memory_mib", False, "peak memory", "MiB"),
    Metric("train_loss", False, "training loss"),
    Metric("time_to_target", False, "time to target", "s"),
    Metric("steps_to_target", False, "steps to target", "steps"),
)}  # fmt: skip

HIGHER_IS_BETTER = frozenset(name for name, m in METRICS.items() if m.higher_is_better)

# What ``bench.profile`` measures (the mode is a column of its own), by direction. Kept apart from
# METRICS: no objective, monitor or cost can name these. Operation time shares have no direction.
PROFILE_HIGHER_IS_BETTER = {
    "throughput": True, "throughput_mpix": True, "tflops_achieved": True, "mfu": True,
    "latency_p50": False, "latency_p90": False, "latency_p99": False, "params": False, "gflops_per_image": False,
    "peak_memory_rss": False, "peak_memory_rss_increase": False, "peak_memory_allocated": False,
    "energy_per_image": False, "images_per_joule": True,  # NVML's counter, GPUs only (bench.energy)
}  # fmt: skip


def higher_is_better(metric: str) -> bool | None:
    """Which way ``metric`` of any result row is better; None where no direction makes sense
    (a share of time, a parameter importance). Search rows prefix scores with ``threshold_``
    and ``epoch_``, learning-curve rows with ``val_``; micro-benchmarks are times; ``trained`` is 1 for a run that trained."""
    if metric in METRICS:
        return METRICS[metric].higher_is_better
    if metric in PROFILE_HIGHER_IS_BETTER:
        return PROFILE_HIGHER_IS_BETTER[metric]
    if metric.startswith("micro_") or metric == "wall_time":
        return False
    if metric == "trained":
        return True
    for prefix in ("threshold_", "epoch_", "val_"):
        if metric.startswith(prefix):
            return higher_is_better(metric.removeprefix(prefix))
    return None


def shown_in(place: Shown) -> tuple[str, ...]:
    """The metrics shown in ``place``, in the table's order."""
    return tuple(name for name, m in METRICS.items() if m.shown <= place)


RANKED_METRICS = shown_in(Shown.RANKED)
RESULT_METRICS = shown_in(Shown.RESULT)
ROW_METRICS = shown_in(Shown.ROWS)
INSTANCE_METRICS: tuple[str, ...] = get_args(InstanceName)

# Companion scores are reported at their headline metric's best threshold, so that e.g. the
# split and merge parts shown always belong to the V_rand shown.
HEADLINES = {
    "pixel_error": ("pixel_error", "iou", "dice"),
    "v_rand": ("v_rand", "rand_split", "rand_merge", "rand_error"),
    "v_info": ("v_info", "info_split", "info_merge", "vi_split", "vi_merge"),
    "warping_error": ("warping_error",),
}


def scores_per_threshold(
    prob: np.ndarray, true_mask: np.ndarray, thresholds: Iterable[float], warping: bool = True
) -> dict[float, dict[str, float]]:
    """Every metric of a P(interior) map thresholded at each of ``thresholds``."""
    return {float(t): score_masks(prob >= t, true_mask, warping=warping) for t in thresholds}


def pick_best_threshold(per_threshold: dict[float, dict[str, float]]) -> dict[str, float]:
    """Each headline metric at its best threshold, with its companions from that threshold."""
    best: dict[str, float] = {}
    for headline, members in HEADLINES.items():
        candidates = [(t, s) for t, s in per_threshold.items() if headline in s]
        if not candidates:
            continue
        sign = -1 if headline in HIGHER_IS_BETTER else 1
        threshold, scores = min(candidates, key=lambda item: (sign * item[1][headline], abs(item[0] - 0.5)))
        best.update({m: scores[m] for m in members})
        best[f"threshold_{headline}"] = threshold
    return best


def score_probabilities(
    prob: np.ndarray, true_mask: np.ndarray, thresholds: Iterable[float] = (0.5,), warping: bool = True
) -> dict[str, float]:
    """Score one P(interior) map at a fixed threshold, or at the best of several."""
    return pick_best_threshold(scores_per_threshold(prob, true_mask, thresholds, warping))


def score_stack(
    probs: Iterable[np.ndarray],
    true_masks: Iterable[np.ndarray],
    thresholds: Iterable[float] = (0.5,),
    warping: bool = True,
) -> dict[str, float]:
    """Score a stack of images as the challenge did: at each threshold the mean over images,
    then the best threshold for the whole stack (one threshold for all images, not per image)."""
    return score_stack_images(probs, true_masks, thresholds, warping)[0]


def score_stack_images(
    probs: Iterable[np.ndarray],
    true_masks: Iterable[np.ndarray],
    thresholds: Iterable[float] = (0.5,),
    warping: bool = True,
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """``score_stack`` and each image's scores at the thresholds the stack chose: the paired
    per-image values that comparisons of variants resample (``bench.stats``)."""
    thresholds = tuple(thresholds)
    per_image = [scores_per_threshold(p, m, thresholds, warping) for p, m in zip(probs, true_masks)]
    if not per_image:
        raise ValueError("no images to score")
    mean = {t: {k: float(np.mean([img[t][k] for img in per_image])) for k in per_image[0][t]} for t in thresholds}
    stack = pick_best_threshold(mean)
    chosen = {
        member: stack[f"threshold_{headline}"]
        for headline, members in HEADLINES.items() if f"threshold_{headline}" in stack for member in members
    }  # fmt: skip
    return stack, [{m: img[t][m] for m, t in chosen.items()} for img in per_image]


def headline_metric(measured: Iterable[str]) -> str:
    """The quality metric figures, deltas and rankings use: the first ranked metric measured
    (V_rand for membranes, DSB AP for instances), else the first by name."""
    names = set(measured)
    return next((m for m in RANKED_METRICS if m in names and m in HIGHER_IS_BETTER), str(min(names)))
