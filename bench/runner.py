"""Train one variant on one data set, evaluate a checkpoint, score prediction files.

The glue between the command line and the library: it resolves names into configs, splits the
data, calls ``bench.train.fit`` and stores what is needed to evaluate the checkpoint later
(variant, overrides, training config, data source and held-out sections) inside the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from bench.checkpoint import CheckpointError, load_checkpoint
from bench.config import TrainCfg
from bench.data import (
    IMAGE_SUFFIXES,
    DataError,
    Dataset,
    binary_mask,
    load_data,
    parse_synthetic,
    read_image,
    split_by_index,
    to_unit_float,
)
from bench.metrics import CHALLENGE_THRESHOLDS, LABELS, score_stack
from bench.train import Callback, FitResult, evaluate, fit, resolve_device
from variants import resolve_config
from variants.registry import ModelConfig
from variants.sizes import InvalidInputSize


def format_metrics(metrics: dict[str, float]) -> str:
    """One line with the headline metrics and the thresholds they were taken at."""
    parts = []
    for key, label in LABELS.items():
        if key in metrics:
            threshold = metrics.get(f"threshold_{key}")
            at = f" (t={threshold:.1f})" if threshold is not None else ""
            parts.append(f"{label} {metrics[key]:.4f}{at}")
    return "  ".join(parts)


@dataclass
class TrainRun:
    fit: FitResult
    final: dict[str, float]  # full evaluation (warping error included) of the best checkpoint
    checkpoint: Path | None
    split: str  # what ``final`` scored: "test 10-11", or the held-out validation sections "8-9"


def train_variant(
    variant: str,
    data_spec: str,
    val_sections: Sequence[int] | None,
    cfg: TrainCfg,
    out_dir: Path | None,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    callbacks: tuple[Callback, ...] = (),
    test_sections: Sequence[int] = (),
) -> TrainRun:
    """Train ``variant`` on ``data_spec`` holding out ``val_sections`` (default: the last sixth)
    to choose the checkpoint, then evaluate the best checkpoint exactly as
    ``evaluate_checkpoint`` will: on ``test_sections`` when given (never seen by training or
    selection), else on the validation sections."""
    overrides = overrides or {}
    config = resolve_config(variant, **overrides)
    data = load_data(data_spec)
    test = sorted(test_sections)
    if val_sections is None:
        val_sections = default_val_sections(len(data), exclude=test)
    train_data, val_data = split_by_index(data, val_sections, exclude=test)
    torch.manual_seed(cfg.seed)
    model = config.build()
    meta = {
        "variant": variant,
        "overrides": overrides,
        "train_cfg": cfg.to_dict(),
        "data": data_key(data_spec),
        "data_source": data.source,
        "val_sections": list(val_sections),
        "test_sections": test,
    }
    result = fit(model, config, train_data, val_data, cfg, callbacks, out_dir, resume, meta=meta)
    best_path = out_dir / "best.pt" if out_dir is not None else None
    if best_path is not None and best_path.exists():
        final = evaluate_checkpoint(best_path)
    else:
        scored = data.subset(test, "test") if test else val_data
        final = evaluate(model, config, scored, cfg, resolve_device(cfg.device), warping=True)
    split = f"test {format_sections(test)}" if test else format_sections(val_sections)
    return TrainRun(result, final, best_path, split)


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


def data_key(data_spec: str) -> str:
    """How a data set is named in checkpoints: 'synthetic' or the folder's absolute path."""
    from bench.fetch import DATASETS

    if parse_synthetic(data_spec) is not None or data_spec in DATASETS:
        return data_spec
    return str(Path(data_spec).expanduser().resolve())


def format_sections(indices: Sequence[int]) -> str:
    """[25, 26, 27, 29] -> '25-27,29' (the form --val-sections takes)."""
    parts, run = [], []
    for i in sorted(indices):
        if run and i != run[-1] + 1:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(i)
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def default_val_sections(count: int, exclude: Sequence[int] = ()) -> list[int]:
    """The last sixth of the sections (at least one) that are not in ``exclude`` (a test
    split): serial sections next to each other are alike, so a contiguous block is the honest
    held-out set."""
    held_out = set(exclude)
    pool = [i for i in range(count) if i not in held_out]
    held = max(1, len(pool) // 6)
    return pool[len(pool) - held :]


def evaluate_checkpoint(
    path: Path, data_spec: str | None = None, val_sections: Sequence[int] | None = None
) -> dict[str, float]:
    """Metrics of a checkpoint: by default on the held-out sections stored with it (its test
    sections when it has them, else its validation sections); on every image of ``data_spec``
    when that is another data set."""
    state = load_checkpoint(path)
    meta = state.get("meta")
    if not meta:
        raise CheckpointError(f"{path}: no run metadata; it was not written by `unet-bench train`")
    cfg = TrainCfg.from_dict(meta["train_cfg"])
    config = resolve_config(meta["variant"], **meta["overrides"])
    model = config.build()
    model.load_state_dict(state["model"])
    device = resolve_device(cfg.device)
    model.to(device)
    data = load_data(data_spec or meta["data"])
    same_data = data_spec is None or data_key(data_spec) == meta["data"]
    if val_sections is None and same_data:
        val_sections = meta.get("test_sections") or meta["val_sections"]
    target: Dataset = data if val_sections is None else split_by_index(data, val_sections)[1]
    return evaluate(model, config, target, cfg, device, warping=True)


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
