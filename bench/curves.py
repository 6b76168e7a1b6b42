"""A retrained run's learning curve and its time to target, as result rows.

``fit`` keeps one record per epoch (step, training loss, clock, validation scores); these rows put
that history beside the run's scores, so a report draws learning curves from the rows alone and
a time-to-target comparison (``budget = "target"``) needs no checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

from bench.config import TrainCfg
from bench.metrics import METRICS
from bench.rows import RowFactory
from bench.schema import ResultRow, make_extra
from bench.train import at_target

VAL_PREFIX = "val_"  # a curve row of a validation score is named val_<score>: val_v_rand


def curve_rows(factory: RowFactory, history: list[dict[str, Any]], monitor: str, val_split: str) -> list[ResultRow]:
    """Stage ``curve``: per epoch, the validation ``monitor`` score (split: the validation
    sections) and the mean training loss of its steps (split ``train``). ``extra`` holds the epoch,
    the step count and the seconds on the clock (validation included) and in training steps."""
    val = factory.bind(stage="curve", split=val_split)
    train = factory.bind(stage="curve", split="train")
    rows = []
    for record in history:
        extra = make_extra(epoch=record["epoch"], step=record["step"], seconds=record.get("elapsed_seconds", math.nan),
                           train_seconds=record["train_seconds"])  # fmt: skip
        if monitor in record:
            rows.append(val.row(VAL_PREFIX + monitor, record[monitor], unit=METRICS[monitor].unit, extra=extra))
        rows.append(train.row("train_loss", record["train_loss"], extra=extra))
    return rows


def target_rows(factory: RowFactory, history: list[dict[str, Any]], cfg: TrainCfg) -> list[ResultRow]:
    """With ``budget = "target"``: ``target_reached`` 1 or 0, and when 1 the ``time_to_target``
    (seconds on the clock, validation included) and ``steps_to_target`` of the first validation
    that reached it. A run that never reached it has no time: reports say "not reached"."""
    if cfg.budget != "target":
        return []
    extra = make_extra(target=cfg.target, monitor=cfg.monitor)
    record = at_target(history, cfg)
    rows = [factory.row("target_reached", 0.0 if record is None else 1.0, extra=extra)]
    if record is not None:
        for metric, value in (("time_to_target", record["elapsed_seconds"]), ("steps_to_target", record["step"])):
            rows.append(factory.row(metric, value, unit=METRICS[metric].unit, extra=extra))
    return rows


def target_line(history: list[dict[str, Any]], cfg: TrainCfg) -> str:
    """What `unet-bench train` prints for a time-to-target run."""
    label = f"validation {METRICS[cfg.monitor].label} {cfg.target:g}"
    record = at_target(history, cfg)
    if record is None:
        return f"target {label}: not reached in {history[-1]['step'] if history else 0} steps"
    return f"target {label}: reached in {record['elapsed_seconds']:.1f} s, {record['step']} steps"
