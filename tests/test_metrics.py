"""ISBI / CTC metrics against skimage's reference implementations and hand-made cases."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from skimage.metrics import adapted_rand_error, variation_of_information

from bench import metrics
from tests.conftest import SHARED_DATA

LABELS = SHARED_DATA / "isbi2012" / "train" / "labels"


def isbi_mask(index: int) -> np.ndarray:
    return np.asarray(Image.open(LABELS / f"{index:02d}.png")) > 0


def perturbations() -> dict[str, np.ndarray]:
    truth = isbi_mask(0)
    return {
        "eroded": ndimage.binary_erosion(truth, iterations=2),
        "dilated": ndimage.binary_dilation(truth, iterations=1),
        "shifted": np.roll(truth, 3, axis=1),
        "another-section": isbi_mask(5),
        "identical": truth.copy(),
        # an untrained net: thousands of fragments and background pixels (singletons) in cells
        "speckled": truth & (np.random.default_rng(0).random(truth.shape) > 0.4),
    }


def skimage_reference(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """skimage on the same foreground-restricted problem, proposal background as singletons."""
    true_labels, pred_labels = metrics.label_cells(truth), metrics.label_cells(pred)
    fg = true_labels > 0
    relabelled = pred_labels.copy()
    background = (relabelled == 0) & fg
    relabelled[background] = relabelled.max() + 1 + np.arange(background.sum())
    error, precision, recall = adapted_rand_error(true_labels, relabelled, ignore_labels=(0,))
    # skimage divides by the *truth* marginals for "precision": that is our split score.
    vi = variation_of_information(true_labels[fg], relabelled[fg])
    return 1 - error, precision, recall, vi


@pytest.mark.parametrize("case", sorted(perturbations()))
def test_v_rand_and_v_info_agree_with_skimage(case: str) -> None:
    truth, pred = isbi_mask(0), perturbations()[case]
    ours_rand = metrics.rand_scores(metrics.label_cells(pred), metrics.label_cells(truth))
    ours_info = metrics.info_scores(metrics.label_cells(pred), metrics.label_cells(truth))
    v_rand, split, merge, (vi_split, vi_merge) = skimage_reference(pred, truth)
    assert ours_rand["v_rand"] == pytest.approx(v_rand, abs=1e-6)
    assert ours_rand["rand_split"] == pytest.approx(split, abs=1e-6)
    assert ours_rand["rand_merge"] == pytest.approx(merge, abs=1e-6)
    assert ours_info["vi_split"] == pytest.approx(vi_split, abs=1e-6)
    assert ours_info["vi_merge"] == pytest.approx(vi_merge, abs=1e-6)
    if case == "identical":
        assert ours_rand["v_rand"] == 1.0 and ours_info["v_info"] == pytest.approx(1.0)
    else:
        assert ours_rand["v_rand"] < 1.0 and ours_info["v_info"] < 1.0


def test_label_values_do_not_matter_only_the_partition() -> None:
    """Labels from another tool (sparse, huge) score as their compact renumbering."""
    truth, pred = metrics.label_cells(isbi_mask(0)), metrics.label_cells(perturbations()["shifted"])
    sparse_pred = np.where(pred > 0, pred.astype(np.int64) * 7919 + 10**12, 0)
    for name in ("rand_scores", "info_scores"):
        score = getattr(metrics, name)
        assert score(sparse_pred, truth) == pytest.approx(score(pred, truth), abs=1e-12)
    assert metrics.rand_scores(pred, np.where(truth > 0, truth + 10**9, 0)) == metrics.rand_scores(pred, truth)


def test_erosion_splits_but_never_merges() -> None:
    truth = isbi_mask(0)
    scores = metrics.rand_scores(metrics.label_cells(perturbations()["eroded"]), metrics.label_cells(truth))
    assert scores["rand_merge"] == pytest.approx(1.0) and scores["rand_split"] < 0.95


def two_cells(membrane_col: int, size: int = 40) -> np.ndarray:
    """A frame of membrane around two cells split by a vertical membrane two pixels wide."""
    mask = np.zeros((size, size), dtype=bool)
    mask[3:-3, 3:-3] = True
    mask[:, membrane_col : membrane_col + 2] = False
    return mask


def test_warping_error_ignores_boundary_shifts() -> None:
    """Shifts up to the membrane's width: Jain et al.'s greedy warp is a local search, so a
    membrane jumping further than its own width can strand (their definition, not a bug here)."""
    truth = two_cells(18)
    for shifted in (two_cells(16), two_cells(17), two_cells(19), two_cells(20)):
        assert metrics.pixel_error(shifted, truth) > 0
        assert metrics.warping_error(shifted, truth) == 0.0


def test_warping_error_counts_splits_and_merges() -> None:
    truth = two_cells(18)
    merged = truth.copy()
    merged[3:-3, 18:20] = True  # the membrane between the cells is gone
    split = truth.copy()
    split[20, :] = False  # a new membrane cuts both cells
    assert metrics.warping_error(merged, truth) > 0
    assert metrics.warping_error(split, truth) > 0


def test_warp_keeps_topology() -> None:
    truth = two_cells(18)
    merged = truth.copy()
    merged[3:-3, 18:20] = True
    warped = metrics.warp_to(truth, merged)
    assert ndimage.label(warped, structure=metrics.FOUR_CONNECTED)[1] == 2


def test_pixel_error_iou_dice_by_hand() -> None:
    truth = np.array([[1, 1, 0, 0]], dtype=bool)
    pred = np.array([[1, 0, 0, 1]], dtype=bool)
    assert metrics.pixel_error(pred, truth) == 0.5
    assert metrics.iou(pred, truth) == pytest.approx(1 / 3)
    assert metrics.dice(pred, truth) == pytest.approx(0.5)


def test_best_threshold_is_picked_per_metric() -> None:
    truth = two_cells(18)
    prob = truth * 0.6 + 0.2  # interior 0.8, membrane 0.2
    fixed = metrics.score_probabilities(prob, truth, thresholds=(0.9,), warping=False)
    best = metrics.score_probabilities(prob, truth, thresholds=metrics.CHALLENGE_THRESHOLDS, warping=False)
    assert fixed["pixel_error"] > 0.5
    assert best["pixel_error"] == 0.0 and 0.2 < best["threshold_pixel_error"] <= 0.8
    assert best["v_rand"] == pytest.approx(1.0)


def test_the_metric_table_holds_every_score_with_its_direction() -> None:
    truth = two_cells(18)
    noisy = truth ^ (np.random.default_rng(0).random(truth.shape) > 0.9)  # flipped pixels: splits and holes
    noisy[10:12, 18:20] = True  # a bridge across the membrane: a merge
    perfect = metrics.score_stack([truth.astype(float)], [truth], warping=True)
    poor = metrics.score_stack([noisy.astype(float)], [truth], warping=True)
    scores = {k for k in perfect if not k.startswith("threshold_")}
    assert scores == set(get_args(metrics.ScoreName)) and scores <= set(metrics.METRICS)
    assert set(get_args(metrics.MetricName)) == set(metrics.METRICS), "one row per name a config may use"
    assert set(metrics.HEADLINES) <= scores and set(get_args(metrics.CostName)) <= set(metrics.METRICS)
    for name in scores:  # the perfect prediction scores better on every metric, whichever way that is
        assert perfect[name] != poor[name], name
        assert (perfect[name] > poor[name]) == (name in metrics.HIGHER_IS_BETTER), name
    assert set(metrics.RANKED_METRICS) < set(metrics.RESULT_METRICS) < set(metrics.ROW_METRICS)
    assert set(metrics.ROW_METRICS) <= scores | set(metrics.INSTANCE_METRICS), "a stored score is a membrane or an instance score"


def test_result_lines_keep_their_labels_and_order() -> None:
    from bench.runner import format_metrics

    scores = {"v_rand": 0.9, "dice": 0.7, "iou": 0.8, "pixel_error": 0.1, "threshold_pixel_error": 0.5, "v_info": 0.6}
    assert format_metrics(scores) == "pixel error 0.1000 (t=0.5)  V_rand 0.9000  V_info 0.6000  IoU 0.8000"
