"""Did a run train? A run whose prediction is (near-)constant, that scores no better than a
trivial prediction of the same images, or whose training loss stayed flat has learnt nothing
worth ranking: its rows say so, and reports leave it out of rankings, deltas and Pareto fronts
instead of comparing it with runs that trained."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.data import Dataset
from bench.metrics import HIGHER_IS_BETTER, METRICS, score_stack

# the trivial predictions: every pixel interior (one segment), every pixel membrane (none)
TRIVIAL = {"all interior": 1.0, "all membrane": 0.0}
CONSTANT_STD = 1e-3  # a prediction whose P(interior) varies less than this over an image is constant
FLAT_LOSS = 0.98  # a last epoch's loss above this fraction of the first's went flat


def trivial_scores(data: Dataset) -> dict[str, dict[str, float]]:
    """The scores of each trivial prediction on ``data``. A constant prediction is the same mask
    at every threshold between 0 and 1, so one threshold scores it as the challenge's nine would;
    instance data scores its instances."""
    if data.instance_task:  # all interior: one object covering the image; all membrane: no object
        from bench.instance_metrics import score_instance_stack

        truths = data.instance_labels()
        return {name: score_instance_stack([np.full(t.shape, int(value), np.int32) for t in truths], truths)[0]
                for name, value in TRIVIAL.items()}  # fmt: skip
    masks = [s.mask for s in data.samples]
    return {
        name: score_stack([np.full(m.shape, value, np.float32) for m in masks], masks, (0.5,), warping=False)
        for name, value in TRIVIAL.items()
    }


def why_not_trained(
    final: dict[str, float], trivial: dict[str, dict[str, float]], history: list[dict[str, Any]], metric: str
) -> str | None:
    """Why the run did not train, or None when it did."""
    if final.get("prediction_std", 1.0) < CONSTANT_STD:
        return f"its test prediction is constant (std of P(interior) {final['prediction_std']:.1e})"
    higher = metric in HIGHER_IS_BETTER
    name, scores = max(trivial.items(), key=lambda item: item[1][metric] * (1 if higher else -1))
    if (final[metric] <= scores[metric]) if higher else (final[metric] >= scores[metric]):
        label = METRICS[metric].label
        return f"{label} {final[metric]:.4f} does not beat the trivial '{name}' prediction ({scores[metric]:.4f})"
    losses = [h["train_loss"] for h in history]
    if len(losses) >= 2 and not losses[-1] < FLAT_LOSS * losses[0]:
        return f"its training loss stayed flat ({losses[0]:.4f} in the first epoch, {losses[-1]:.4f} in the last)"
    return None
