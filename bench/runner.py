"""What the command line needs around the library: result lines, size notices, and scoring
of any tool's prediction files against labels."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.data import IMAGE_SUFFIXES, DataError, binary_mask, read_image, to_unit_float
from bench.instance_metrics import score_instance_stack
from bench.metrics import CHALLENGE_THRESHOLDS, METRICS, RESULT_METRICS, score_stack
from variants.registry import ModelConfig
from variants.sizes import InvalidInputSize


def format_metrics(metrics: dict[str, float]) -> str:
    """One line with the headline metrics and the thresholds they were taken at, then the
    instance metrics where the result has them."""
    parts = []
    for key in RESULT_METRICS:
        if key in metrics:
            threshold = metrics.get(f"threshold_{key}")
            at = f" (t={threshold:.1f})" if threshold is not None else ""
            parts.append(f"{METRICS[key].label} {metrics[key]:.4f}{at}")
    return "  ".join(parts)


def size_notice(config: ModelConfig, requested: int, what: str) -> str | None:
    """A line saying that ``requested`` is not a size the network takes and which one is used
    instead (train and profile round to the nearest valid size; the model itself refuses)."""
    used = config.valid_input_size(requested)
    if used == requested:
        return None
    try:
        config.output_size(requested)
        reason = "not a size this network takes"
    except InvalidInputSize as exc:
        reason = str(exc)
    return f"note: {what} {requested}: {reason}; using {used}"


def _prediction_map(path: Path) -> np.ndarray:
    """P(interior) in [0, 1] from a mask (0/1 or 0/255), an 8/16-bit map (by its type's range) or a float map. What
    the values say decides: a 0/1 integer image is a mask (not a nearly black map), and float
    values outside [0, 1] are refused (logits are not probabilities; rescaling them would score
    a number that means nothing)."""
    array = read_image(path)
    if np.issubdtype(array.dtype, np.integer):
        if array.min(initial=0) < 0:
            raise DataError(f"{path}: prediction has negative values; expected a mask or a map of P(interior)")
        if array.max(initial=0) <= 1:
            return array.astype(np.float32)
        # a map's type is its scale: a 16-bit map of low probabilities is not 8-bit or 12-bit data
        return array.astype(np.float32) / np.iinfo(array.dtype).max
    elif array.size and np.isfinite(array).all() and (array.min() < 0 or array.max() > 1):
        raise DataError(f"{path}: prediction values run from {array.min():.3g} to {array.max():.3g}; a "
                        "probability map lies in [0, 1] (logits? apply a sigmoid or softmax first)")  # fmt: skip
    return to_unit_float(array, path)


def _image_files(folder: Path, what: str) -> dict[str, Path]:
    """The PNG and TIFF files in ``folder`` by name without suffix; a missing folder is named."""
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: no such {what} folder")
    return {p.stem: p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def _paired_files(pred_dir: Path, truth_dir: Path) -> list[tuple[Path, Path]]:
    """(prediction, label) files with the same name; no labels, or a label without prediction, is named."""
    truth_files, pred_files = _image_files(truth_dir, "label"), _image_files(pred_dir, "prediction")
    missing = sorted(truth_files.keys() - pred_files.keys())
    if not truth_files:
        raise DataError(f"{truth_dir}: no label images")
    if missing:
        raise DataError(f"{pred_dir}: no prediction for {missing[:5]}")
    return [(pred_files[stem], truth_path) for stem, truth_path in truth_files.items()]


def _same_shape(pred: np.ndarray, truth: np.ndarray, pred_path: Path, truth_path: Path) -> None:
    if pred.shape != truth.shape:
        raise DataError(f"{pred_path}: prediction is {pred.shape} but {truth_path.name} is {truth.shape}")


def score_folders(
    pred_dir: Path, truth_dir: Path, thresholds: Sequence[float] = CHALLENGE_THRESHOLDS
) -> dict[str, float]:
    """Score any tool's predictions (bright = interior) against labels with the same file names.
    A label without interior pixels is named on stderr: the foreground-restricted V_rand and
    V_info have nothing to count there and score 1.0 whatever the prediction."""
    probs, masks, empty = [], [], []
    for pred_path, truth_path in _paired_files(pred_dir, truth_dir):
        prob = _prediction_map(pred_path)
        mask = binary_mask(read_image(truth_path), truth_path)
        _same_shape(prob, mask, pred_path, truth_path)
        probs.append(prob)
        masks.append(mask)
        if not mask.any():
            empty.append(truth_path.name)
    if empty:
        print(f"warning: {len(empty)} of {len(masks)} labels have no interior pixel ({', '.join(empty[:5])}): V_rand "
              "and V_info count them as 1.0 whatever the prediction", file=sys.stderr)  # fmt: skip
    return score_stack(probs, masks, thresholds, warping=True)


def _label_image(path: Path) -> np.ndarray:
    """An instance label image (0 = background, any integer id per object); refuses float images."""
    labels = read_image(path)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: not a label image (pixel type {labels.dtype}, expected integer ids)")
    return labels


def score_instance_folders(pred_dir: Path, truth_dir: Path) -> dict[str, float]:
    """Score any tool's instance label images against true instance labels with the same file
    names: the mean over images of each instance metric (``bench.instance_metrics``)."""
    preds, truths = [], []
    for pred_path, truth_path in _paired_files(pred_dir, truth_dir):
        pred, truth = _label_image(pred_path), _label_image(truth_path)
        _same_shape(pred, truth, pred_path, truth_path)
        preds.append(pred)
        truths.append(truth)
    return score_instance_stack(preds, truths)[0]
