"""`unet-bench compare`: sorted, filtered, noise-aware, and an exit code CI can gate on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench.aggregate import IMPROVED, NO_DIRECTION, NOISE, REGRESSED, compare_runs
from bench.metrics import higher_is_better
from bench.rows import RowFactory
from bench.store import ResultWriter, read_results
from tests.conftest import REPO, run_cli_many

QUICK = max(p for p in (REPO / "results" / "quick").iterdir() if p.is_dir())


def frame(tmp_path: Path, name: str, values: dict[str, tuple[float, float, float]]) -> pd.DataFrame:
    """A run of profile rows, metric -> (value, ci_low, ci_high), read back as the CLI reads it."""
    factory = RowFactory(name, "adhoc", torch.device("cpu")).bind(variant="unet-16", stage="profile", mode="infer")
    rows = [factory.row(m, v, ci_low=lo, ci_high=hi) for m, (v, lo, hi) in values.items()]
    ResultWriter(tmp_path / name).append(rows)
    return read_results(tmp_path / name)


def test_verdicts_follow_direction_threshold_and_intervals(tmp_path: Path) -> None:
    nan = float("nan")
    a = frame(tmp_path, "a", {
        "throughput": (100, 95, 105), "latency_p50": (10, 9, 11), "latency_p99": (10, nan, nan),
        "params": (1000, nan, nan), "time_share_conv": (0.5, nan, nan), "mfu": (0.1, 0.09, 0.11),
    })  # fmt: skip
    b = frame(tmp_path, "b", {
        "throughput": (80, 78, 82),  # -20 %, intervals apart: worse
        "latency_p50": (8, 7, 9.5),  # -20 %, intervals overlap (9 .. 9.5): noise
        "latency_p99": (10.3, nan, nan),  # +3 %: under the threshold
        "params": (500, nan, nan),  # -50 %, fewer parameters: better
        "time_share_conv": (0.9, nan, nan),  # no direction
        "mfu": (0.2, 0.19, 0.21),  # +100 %: better
    })  # fmt: skip
    table = compare_runs(a, b, threshold_pct=5).set_index("metric")
    assert table["verdict"].to_dict() == {
        "throughput": REGRESSED, "latency_p50": NOISE, "latency_p99": NOISE, "params": IMPROVED,
        "time_share_conv": NO_DIRECTION, "mfu": IMPROVED,
    }  # fmt: skip
    assert table.loc["throughput", "change_pct"] == pytest.approx(-20.0)
    # largest relative change first: mfu +100, time share +80, params -50, then the 20s, then 3
    assert list(table.index[:3]) == ["mfu", "time_share_conv", "params"] and table.index[-1] == "latency_p99"
    assert compare_runs(a, b, threshold_pct=25).set_index("metric").loc["throughput", "verdict"] == NOISE


def test_directions_cover_every_committed_metric_that_has_one() -> None:
    metrics = set(read_results(QUICK)["metric"])
    assert higher_is_better("throughput") and not higher_is_better("latency_p50")
    assert not higher_is_better("peak_memory_rss_increase") and higher_is_better("threshold_v_rand")
    assert higher_is_better("param_importance") is None
    undirected = {m for m in metrics if higher_is_better(m) is None}
    assert undirected <= {"param_importance", "prediction_std"}, undirected


def worsen(run: Path, variant: str, metric: str, factor: float) -> None:
    """Scale one metric's value and interval in the profile part of a copied run, with pandas,
    leaving every other cell's text as it was."""
    part = run / f"rows-profile-{variant}.csv"
    rows = pd.read_csv(part, dtype=str, keep_default_na=False)
    hit = rows["metric"] == metric
    assert hit.sum() == 1
    for column in ("value", "ci_low", "ci_high"):
        rows.loc[hit, column] = str(float(rows.loc[hit, column].iloc[0]) * factor)
    rows.to_csv(part, index=False)


def test_compare_a_run_with_itself_and_with_a_regression(tmp_path: Path) -> None:
    copy = tmp_path / QUICK.name
    shutil.copytree(QUICK, copy)
    worsen(copy, "resunet", "throughput", 0.5)
    results = run_cli_many({  # independent commands, side by side
        "same": ["compare", str(QUICK), str(QUICK), "--fail-on-regression"],
        "worse": ["compare", str(QUICK), str(copy), "--fail-on-regression"],
        "filtered": ["compare", str(QUICK), str(copy), "--metric", "v_*", "--fail-on-regression"],
        "loose": ["compare", str(QUICK), str(copy), "--threshold", "60", "--fail-on-regression"],
    })  # fmt: skip
    same = results["same"]
    assert same.returncode == 0, same.stderr
    assert "search" not in {line.split()[1] for line in same.stdout.splitlines()[2:] if line.strip()[:1].isalpha()}
    assert "regressed" not in same.stdout.splitlines()[-1]

    worse = results["worse"]
    assert worse.returncode == 3, worse.stderr
    last = worse.stdout.strip().splitlines()[-1]
    assert last.startswith("regressed: resunet throughput (infer eager") and "," not in last.split("(")[0]
    first_row = worse.stdout.splitlines()[2].split()
    assert first_row[:3] == ["resunet", "profile", "throughput"] and "-50.0" in first_row

    filtered = results["filtered"]
    assert filtered.returncode == 0, filtered.stderr
    assert {line.split()[2] for line in filtered.stdout.splitlines()[2:-2] if line.strip()} == {"v_rand", "v_info"}
    loose = results["loose"]
    assert loose.returncode == 0 and "regressed:" not in loose.stdout
