"""What the command line needs around the library: result lines, size notices, and scoring
of any tool's prediction files against labels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.data import IMAGE_SUFFIXES, DataError, binary_mask, read_image, to_unit_float
from bench.metrics import CHALLENGE_THRESHOLDS, INSTANCE_METRICS, METRICS, RESULT_METRICS, score_stack
from variants.registry import ModelConfig
from variants.sizes import InvalidInputSize


def format_metrics(metrics: dict[str, float]) -> str:
    """One line with the headline metrics and the thresholds they were taken at, then the
    instance metrics where the result has them."""
    parts = []
    for key in RESULT_METRICS + INSTANCE_METRICS:
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
    """A probability map (8/16-bit or float) or mask, as P(interior) in [0, 1]."""
    return to_unit_float(read_image(path), path)


def _image_files(folder: Path, what: str) -> dict[str, Path]:
    """The PNG and TIFF files in ``folder`` by name without suffix; a missing folder is named."""
    if not Path(folder).is_dir():
        raise DataError(f"{folder}: no such {what} folder")
    return {p.stem: p for p in sorted(Path(folder).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def score_folders(
    pred_dir: Path, truth_dir: Path, thresholds: Sequence[float] = CHALLENGE_THRESHOLDS
) -> dict[str, float]:
    """Score any tool's predictions (bright = interior) against labels with the same file names."""
    truth_files, pred_files = _image_files(truth_dir, "label"), _image_files(pred_dir, "prediction")
    missing = sorted(truth_files.keys() - pred_files.keys())
    if not truth_files:
        raise DataError(f"{truth_dir}: no label images")
    if missing:
        raise DataError(f"{pred_dir}: no prediction for {missing[:5]}")
    probs, masks = [], []
    for stem, truth_path in truth_files.items():
        prob = _prediction_map(pred_files[stem])
        mask = binary_mask(read_image(truth_path), truth_path)
        if prob.shape != mask.shape:
            raise DataError(f"{pred_files[stem]}: prediction is {prob.shape} but {truth_path.name} is {mask.shape}")
        probs.append(prob)
        masks.append(mask)
    return score_stack(probs, masks, thresholds, warping=True)
