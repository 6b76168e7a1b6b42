"""Instance metrics against StarDist's published matching code on real DSB 2018 labels, against
literal per-object definitions, and on hand-made cases (empty images, ties, non-consecutive ids)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage, sparse
from scipy.optimize import linear_sum_assignment
from stardist.matching import matching as stardist_matching  # the [test] extra; imports no TensorFlow

from bench.data import read_image
from bench.instance_metrics import (
    DSB_THRESHOLDS,
    INSTANCE_SCORES,
    InstanceMatch,
    match_instances,
    score_instance_stack,
    score_instances,
)
from tests.conftest import SHARED_DATA

LABELS = SHARED_DATA / "dsb2018" / "train" / "labels"


def touching_pairs(labels: np.ndarray) -> dict[tuple[int, int], int]:
    """Pairs of nuclei that share a 4-adjacent boundary, with the number of adjacent pixel pairs."""
    pairs: dict[tuple[int, int], int] = {}
    for a, b in ((labels[:, 1:], labels[:, :-1]), (labels[1:, :], labels[:-1, :])):
        touch = (a > 0) & (b > 0) & (a != b)
        for x, y in zip(a[touch], b[touch]):
            key = (int(min(x, y)), int(max(x, y)))
            pairs[key] = pairs.get(key, 0) + 1
    return pairs


@cache
def touching_images(count: int = 2) -> tuple[tuple[Path, tuple[int, int]], ...]:
    """The first DSB label images (by name) of a size not seen before, with at least 10 nuclei two
    of which touch along 5+ pixels: each with its most touching pair."""
    found: dict[tuple[int, ...], tuple[Path, tuple[int, int]]] = {}
    for path in sorted(LABELS.glob("*.png")):
        labels = read_image(path)
        pairs = {k: n for k, n in touching_pairs(labels).items() if n >= 5}
        if pairs and len(np.unique(labels)) > 10 and labels.shape not in found:
            found[labels.shape] = (path, max(pairs, key=lambda k: pairs[k]))
        if len(found) == count:
            return tuple(found.values())
    raise AssertionError("too few DSB images with touching nuclei")


def touching_image() -> tuple[Path, tuple[int, int]]:
    return touching_images()[0]


def merged(labels: np.ndarray, pair: tuple[int, int]) -> np.ndarray:
    return np.where(labels == pair[1], pair[0], labels)


def perturbations(truth: np.ndarray, pair: tuple[int, int]) -> dict[str, np.ndarray]:
    """Predictions made from the truth: eroded, merged, dropped, a false object, shifted, all."""
    ids = [i for i in np.unique(truth) if i > 0 and i not in pair]
    padded = np.pad(truth, 1, mode="edge")
    boundary = np.zeros(truth.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        boundary |= padded[dy : dy + truth.shape[0], dx : dx + truth.shape[1]] != truth
    eroded = np.where(np.isin(truth, ids[::3]) & boundary, 0, truth)  # every third nucleus loses its rim
    dropped = np.where(truth == ids[1], 0, truth)
    far = ndimage.distance_transform_edt(truth == 0)
    cy, cx = np.unravel_index(np.argmax(far), truth.shape)
    yy, xx = np.ogrid[: truth.shape[0], : truth.shape[1]]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= min(6.0, far.max() - 1) ** 2
    false = np.where(disk, truth.max() + 1, truth)
    shifted = np.roll(truth, (1, 2), axis=(0, 1))
    everything = np.roll(np.where(disk, truth.max() + 1, merged(np.where(truth == ids[1], 0, eroded), pair)), 1, axis=0)
    return {"eroded": eroded, "merged": merged(truth, pair), "dropped": dropped, "false": false,
            "shifted": shifted, "all": everything}  # fmt: skip


def scattered_ids(labels: np.ndarray, seed: int) -> np.ndarray:
    """The same objects under random, non-consecutive ids (background stays 0)."""
    ids = np.unique(labels)
    new = np.random.default_rng(seed).choice(np.arange(1, 60_000), size=ids.size, replace=False)
    new[ids == 0] = 0
    return new[np.searchsorted(ids, labels)].astype(np.int32)


def cases() -> list[str]:
    return ["eroded", "merged", "dropped", "false", "shifted", "all"]


def exact_ties(m: InstanceMatch, threshold: float) -> int:
    """Assigned pairs whose IoU is exactly ``threshold`` = k / 20, in integers: 20 |A n B| = k |A u B|."""
    rows, cols = m.pairs[:, 0], m.pairs[:, 1]
    inter = sparse.coo_array((m.intersection, (m.rows, m.cols)), shape=(m.n_pred, m.n_true)).toarray()[rows, cols]
    union = m.pred_sizes[rows] + m.true_sizes[cols] - inter
    return int(np.sum(20 * inter == round(20 * threshold) * union))


@pytest.mark.parametrize("image", [0, 1])
@pytest.mark.parametrize("case", cases())
def test_agrees_with_stardist_on_real_dsb_labels(case: str, image: int) -> None:
    path, pair = touching_images()[image]
    truth = read_image(path)
    pred = scattered_ids(perturbations(truth, pair)[case], seed=1)
    m = match_instances(pred, truth)
    ties = [exact_ties(m, t) for t in DSB_THRESHOLDS]  # StarDist matches at IoU >= t, the DSB at IoU > t
    reference = stardist_matching(truth, pred, thresh=DSB_THRESHOLDS)
    for threshold, ref, tied in zip(DSB_THRESHOLDS, reference, ties):
        assert (m.true_positives(threshold), m.n_pred, m.n_true) == (ref.tp - tied, ref.n_pred, ref.n_true), threshold
    ours = score_instances(pred, truth)
    tp = [r.tp - tied for r, tied in zip(reference, ties)]
    expected = np.mean([k / (r.n_pred + r.n_true - k) for r, k in zip(reference, tp)])  # StarDist's counts, '>'
    assert ours["dsb_ap"] == pytest.approx(expected, abs=1e-6)
    if not any(ties):
        assert ours["dsb_ap"] == pytest.approx(np.mean([r.accuracy for r in reference]), abs=1e-6)
    if ties[0] == 0:
        at_half = reference[0]
        assert (ours["precision_50"], ours["recall_50"], ours["f1_50"]) == pytest.approx(
            (at_half.precision, at_half.recall, at_half.f1), abs=1e-6
        )
    assert ours["dsb_ap"] < 1.0 and ours["aji"] < 1.0  # every perturbation costs


def literal_seg_and_aji(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """SEG and AJI written out object by object with boolean masks, as the papers state them."""
    true_ids, pred_ids = [i for i in np.unique(truth) if i], [i for i in np.unique(pred) if i]
    seg, inter_total, union_total, used = [], 0, 0, set()
    for t in true_ids:
        obj = truth == t
        jaccards = {p: (obj & (pred == p)).sum() / (obj | (pred == p)).sum() for p in pred_ids}
        cover = [p for p in pred_ids if (obj & (pred == p)).sum() > obj.sum() / 2]
        seg.append(jaccards[cover[0]] if cover else 0.0)
        best = max(pred_ids, key=lambda p: jaccards[p])  # max keeps the first (lowest id) of ties
        if jaccards[best] > 0:
            inter_total += (obj & (pred == best)).sum()
            union_total += (obj | (pred == best)).sum()
            used.add(best)
        else:
            union_total += obj.sum()
    union_total += sum((pred == p).sum() for p in pred_ids if p not in used)
    return float(np.mean(seg)), inter_total / union_total


@pytest.mark.parametrize("case", ["eroded", "merged", "all"])
def test_seg_and_aji_match_their_literal_definitions(case: str) -> None:
    path, pair = touching_image()
    truth = read_image(path)
    pred = perturbations(truth, pair)[case]
    seg, aji = literal_seg_and_aji(pred, truth)
    ours = score_instances(pred, truth)
    assert ours["seg"] == pytest.approx(seg, abs=1e-12) and ours["aji"] == pytest.approx(aji, abs=1e-12)
    if case == "merged":  # the merged object covers more than half of only one of the pair
        assert seg < 1.0 and aji < 1.0


def test_the_iou_matrix_and_the_assignment_match_per_object_definitions() -> None:
    path, pair = touching_image()
    truth = read_image(path)
    pred = scattered_ids(perturbations(truth, pair)["all"], seed=5)
    m = match_instances(pred, truth)
    literal = np.array([[(pred == p) & (truth == t) for t in m.true_ids] for p in m.pred_ids])
    inter = literal.sum(axis=(2, 3))
    sizes_p, sizes_t = (
        (pred[..., None] == m.pred_ids).sum(axis=(0, 1)),
        (truth[..., None] == m.true_ids).sum(axis=(0, 1)),
    )
    assert np.allclose(m.iou, inter / (sizes_p[:, None] + sizes_t[None, :] - inter), atol=1e-12)
    best = linear_sum_assignment(m.iou, maximize=True)
    assert m.assigned_iou.sum() == pytest.approx(m.iou[best].sum(), abs=1e-12)
    assert np.allclose(m.iou[m.pairs[:, 0], m.pairs[:, 1]], m.assigned_iou)
    assert len(set(m.pairs[:, 0])) == len(m.pairs) == len(set(m.pairs[:, 1])), "one-to-one"


def test_the_truth_scores_one_and_a_merge_scores_less() -> None:
    path, pair = touching_image()
    truth = read_image(path)
    perfect = score_instances(scattered_ids(truth, seed=2), truth)
    assert perfect == dict.fromkeys(INSTANCE_SCORES, 1.0)
    merge = score_instances(merged(truth, pair), truth)
    assert merge["dsb_ap"] < perfect["dsb_ap"] and merge["f1_50"] < perfect["f1_50"]
    n, sizes = len(np.unique(truth)) - 1, [(truth == i).sum() for i in pair]
    tp = n - 2 + (sizes[0] != sizes[1])  # the merged object matches the larger of the two (IoU > 0.5)
    assert merge["f1_50"] == pytest.approx(2 * tp / (n - 1 + n))


def test_ids_need_not_be_consecutive() -> None:
    path, pair = touching_image()
    truth = read_image(path)
    pred = perturbations(truth, pair)["all"]
    renamed = score_instances(scattered_ids(pred, 3), scattered_ids(truth, 4))
    assert renamed == pytest.approx(score_instances(pred, truth), abs=1e-12)  # only the summation order differs


def test_empty_cases_are_defined() -> None:
    empty, one = np.zeros((8, 8), np.uint16), np.zeros((8, 8), np.uint16)
    one[2:5, 2:5] = 9
    assert score_instances(empty, empty) == dict.fromkeys(INSTANCE_SCORES, 1.0)
    assert score_instances(empty, one) == dict.fromkeys(INSTANCE_SCORES, 0.0)  # truth, no prediction
    assert score_instances(one, empty) == dict.fromkeys(INSTANCE_SCORES, 0.0)  # prediction, no truth


def test_seg_on_a_hand_made_case() -> None:
    truth = np.zeros((10, 10), dtype=int)
    truth[1:5, 1:5] = 1  # 16 px
    truth[6:9, 6:9] = 2  # 9 px
    pred = np.zeros_like(truth)
    pred[1:5, 1:6] = 7  # covers object 1 fully, 20 px -> J = 16/20
    pred[6:7, 6:9] = 3  # covers 3 of 9 px of object 2 -> no match
    assert score_instances(pred, truth)["seg"] == pytest.approx((16 / 20 + 0) / 2)


def test_an_iou_of_exactly_the_threshold_is_no_match() -> None:
    truth = np.zeros((4, 4), np.int32)
    truth[0, :4] = 5
    pred = np.zeros_like(truth)
    pred[0, :2] = 1  # IoU 2/4 = 0.5: not > 0.5, so no match (DSB rule); StarDist (>=) would match it
    pred[2, :] = 2
    scores = score_instances(pred, truth)
    assert scores["f1_50"] == 0.0 and scores["dsb_ap"] == 0.0
    assert scores["seg"] == 0.0  # covers exactly half, not more
    assert scores["aji"] == pytest.approx(2 / (4 + 4)), "intersection 2; union 4, plus the unused object's 4"
    with pytest.raises(ValueError, match="0.5"):
        match_instances(pred, truth).true_positives(0.3)


def test_a_stack_scores_the_mean_over_images() -> None:
    path, pair = touching_image()
    truth = read_image(path)
    preds = [perturbations(truth, pair)[c] for c in ("merged", "dropped")]
    mean, per_image = score_instance_stack(preds, [truth, truth])
    assert per_image == [score_instances(p, truth) for p in preds]
    assert mean["dsb_ap"] == pytest.approx((per_image[0]["dsb_ap"] + per_image[1]["dsb_ap"]) / 2)
    with pytest.raises(ValueError):
        score_instance_stack(preds, [truth])
    with pytest.raises(ValueError):
        match_instances(truth[1:], truth)
