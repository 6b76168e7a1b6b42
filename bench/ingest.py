"""Turn pytest-benchmark JSON into result rows, so micro-benchmarks land in the same store and
reports as everything else."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import torch

from bench.environment import row_environment
from bench.rows import RowFactory
from bench.schema import ResultRow, make_extra


def benchmark_rows(path: Path, suite: str = "micro") -> list[ResultRow]:
    """One row per benchmark: the median time in ms, with the interquartile range in ``extra``."""
    try:
        report = json.loads(Path(path).read_text())
        benchmarks = report["benchmarks"]
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a pytest-benchmark JSON file ({exc})") from None
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    factory = RowFactory(f"micro-{uuid.uuid4().hex[:8]}", suite, device).bind(stage="profile", unit="ms")
    rows = []
    for bench in benchmarks:
        stats, info = bench["stats"], bench.get("extra_info", {})
        rows.append(factory.row(
            f"micro_{bench['name'].split('[')[0].removeprefix('test_')}", stats["median"] * 1e3,
            variant=info.get("variant", ""), mode=info.get("mode", ""), batch_size=int(info.get("batch_size", 0)),
            input_size=int(info.get("input_size", 0)), n=int(stats["rounds"]),
            extra=make_extra(
                iqr_ms=stats["iqr"] * 1e3, mean_ms=stats["mean"] * 1e3, fullname=bench["fullname"],
                env=row_environment(device),
            ),
        ))  # fmt: skip
    return rows
