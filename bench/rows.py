"""The one row factory: every identity column of a result row filled the same way, whoever
writes it (search trial, suite evaluation, profiler, micro-benchmark ingest).

A ``RowFactory`` is made for one run on one device; ``bind`` fixes more columns (variant, stage,
split, ...) for a group of rows, and ``row`` adds the measured value. The environment columns
(device name, torch, CUDA, git sha, host) always come from ``bench.environment`` for the device
that did the work, so an evaluation after GPU training says ``cuda``, and no writer can leave
the git sha or host blank.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import torch

from bench.environment import row_identity
from bench.schema import ResultRow, make_extra

if TYPE_CHECKING:
    from bench.job import TrainJob


@dataclass(frozen=True)
class RowFactory:
    run_id: str
    suite: str
    device: torch.device
    fixed: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)  # added to every row's ``extra``

    def bind(self, **columns: Any) -> RowFactory:
        """A factory whose rows also carry ``columns``."""
        return replace(self, fixed={**self.fixed, **columns})

    def tag(self, **values: Any) -> RowFactory:
        """A factory whose rows also carry ``values`` in ``extra`` (a cross-validation fold): set
        once for a job, so no writer of its rows can leave them out."""
        return replace(self, tags={**self.tags, **values})

    def for_job(self, job: TrainJob, stage: str, split: str, **columns: Any) -> RowFactory:
        """The columns every row of a training job shares."""
        return self.bind(
            variant=job.shown_as, config_hash=job.key(), seed=job.train.seed, stage=stage, dataset=str(job.data),
            split=split, **columns,
        )  # fmt: skip

    def row(self, metric: str, value: float, **columns: Any) -> ResultRow:
        values = {"config_hash": "", "seed": 0, **self.fixed, **columns}
        if self.tags:
            values["extra"] = make_extra(**{**json.loads(values.get("extra", "{}")), **self.tags})
        return ResultRow(
            run_id=self.run_id, suite=self.suite, metric=metric, value=float(value), **values,
            **row_identity(self.device),
        )  # fmt: skip
