"""Turn pytest-benchmark JSON into result rows, so micro-benchmarks land in the same store and
reports as everything else."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import torch

from bench.environment import row_environment
from bench.rows import RowFactory
from bench.schema import ResultRow, make_extra
from bench.store import ResultsError


def benchmark_rows(path: Path, suite: str = "micro") -> list[ResultRow]:
    """One row per benchmark: the median time in ms, with the interquartile range in ``extra``."""
    try:
        benchmarks = list(json.loads(Path(path).read_text())["benchmarks"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ResultsError(f"{path}: not a pytest-benchmark JSON file ({type(exc).__name__}: {exc})") from None
    if not benchmarks:  # pytest-benchmark writes this when every benchmark was skipped or deselected
        raise ResultsError(f"{path}: no benchmarks in it: nothing to ingest")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    factory = RowFactory(f"micro-{uuid.uuid4().hex[:8]}", suite, device).bind(stage="profile", unit="ms")
    env = row_environment(device)
    rows = []
    for index, bench in enumerate(benchmarks):
        try:
            rows.append(_benchmark_row(bench, factory, env))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ResultsError(
                f"{path}: benchmark {index} is not a pytest-benchmark entry ({type(exc).__name__}: {exc})"
            ) from None
    return rows


def _benchmark_row(bench: dict[str, Any], factory: RowFactory, env: dict[str, Any]) -> ResultRow:
    """One pytest-benchmark entry as a row; a missing or ill-typed field raises KeyError or TypeError."""
    stats, info = bench["stats"], bench.get("extra_info", {})
    return factory.row(
        f"micro_{bench['name'].split('[')[0].removeprefix('test_')}", stats["median"] * 1e3,
        variant=info.get("variant", ""), mode=info.get("mode", ""), batch_size=int(info.get("batch_size", 0)),
        input_size=int(info.get("input_size", 0)), n=int(stats["rounds"]),
        extra=make_extra(iqr_ms=stats["iqr"] * 1e3, mean_ms=stats["mean"] * 1e3, fullname=bench["fullname"], env=env),
    )  # fmt: skip
