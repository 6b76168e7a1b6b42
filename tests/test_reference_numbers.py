"""reports/README.md restates the committed reports' numbers in hand-written tables, which a
reader meets first: each number there must be the report's own, to the digits it shows, so a
re-run or a change of statistics cannot leave the overview saying something the reports do not.
(The committed reports themselves are what `unet-bench report results -o reports` rebuilds.)"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from tests.conftest import REPO

README = (REPO / "reports" / "README.md").read_text()
NUMBER = r"[+-]?\d+(?:\.\d+)?"


def table(text: str, header_start: str) -> list[dict[str, str]]:
    """The Markdown table whose header line starts with ``header_start``, as dicts by column."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)))
    return rows


def interval(text: str) -> tuple[float, float, float]:
    """'0.560 [0.495, 0.624]' or '0.614 (n=2: no interval)' as (value, low, high), NaN bounds when none."""
    numbers = [float(n) for n in re.findall(NUMBER, text)]
    value, *bounds = numbers if "[" in text else numbers[:1]
    low, high = bounds or (math.nan, math.nan)
    return value, low, high


def report(suite: str) -> dict[str, list[dict[str, str]]]:
    """The tables of a committed report that the overview quotes."""
    text = (REPO / "reports" / suite / "report.md").read_text()
    untrained = table(text, "| variant | seed | why |") if "| variant | seed | why |" in text else []
    return {
        "quality": table(text, "| variant | metric | mean |"), "summary": table(text, "| rank | variant |"),
        "deltas": table(text, "| variant | baseline | metric | pairs |"), "untrained": untrained,
    }  # fmt: skip


def quality(tables: dict[str, list[dict[str, str]]], variant: str, metric: str) -> tuple[float, float, float]:
    (row,) = [r for r in tables["quality"] if r["variant"] == variant and r["metric"] == metric]
    return tuple(float(row[c]) if row[c] != "–" else math.nan for c in ("mean", "ci_low", "ci_high"))  # type: ignore[return-value]


def delta(tables: dict[str, list[dict[str, str]]], variant: str) -> tuple[float, float, float]:
    (row,) = [r for r in tables["deltas"] if r["variant"] == variant]
    return tuple(float(row[c]) if row[c] != "–" else math.nan for c in ("delta", "ci_low", "ci_high"))  # type: ignore[return-value]


def assert_shown(shown: tuple[float, ...], exact: tuple[float, ...], digits: int, what: str) -> None:
    """``shown`` is ``exact`` rounded to ``digits`` (NaN where the report has no interval)."""
    for s, e in zip(shown, exact, strict=True):
        assert (math.isnan(s) and math.isnan(e)) or abs(s - e) <= 0.5 * 10**-digits + 1e-9, (what, shown, exact)


ISBI_ROWS = table(README, "| axis | variant |")


@pytest.mark.parametrize("row", ISBI_ROWS, ids=[f"{r['axis']}-{r['variant']}" for r in ISBI_ROWS])
def test_each_isbi_ablation_row_is_its_reports_numbers(row: dict[str, str]) -> None:
    tables = report(f"ablation-{row['axis']}")
    variant = row["variant"]
    (baseline,) = [r["baseline"] for r in tables["deltas"] if r["variant"] == variant]
    assert_shown(interval(row["V_rand"]), quality(tables, variant, "v_rand"), 3, "V_rand")
    assert_shown(interval(row["baseline V_rand"]), quality(tables, baseline, "v_rand"), 3, "baseline V_rand")
    assert_shown(interval(row["delta [95 % CI]"]), delta(tables, variant), 3, "delta")
    speeds = {r["variant"]: float(r["img/s"]) for r in tables["summary"]}
    shown_speed, shown_baseline = (float(n) for n in re.findall(NUMBER, row["img/s (baseline)"]))
    assert_shown((shown_speed, shown_baseline), (speeds[variant], speeds[baseline]), 1, "img/s")
    (seeds,) = [int(r["seeds"]) for r in tables["summary"] if r["variant"] == variant]
    failed = sum(r["variant"] == variant for r in tables["untrained"])
    assert row["trained"] == f"{seeds}/{seeds + failed}"


DSB_TABLES = [
    ("ablation-weightmap", "weight-map", "| arm | DSB AP |"),
    ("dsb2018", "unet-original", "| variant | DSB AP |"),
]


@pytest.mark.parametrize(("suite", "baseline", "header"), DSB_TABLES, ids=[s for s, _, _ in DSB_TABLES])
def test_each_dsb_row_is_its_reports_numbers(suite: str, baseline: str, header: str) -> None:
    tables = report(suite)
    rows = table(README, header)
    assert len(rows) == len({r["variant"] for r in tables["summary"]}), "every variant of the report, once"
    for row in rows:
        variant = next(iter(row.values())).split(" (")[0]  # 'weight-map (w0 = 10, sigma = 5)'
        assert_shown(interval(row["DSB AP"]), quality(tables, variant, "dsb_ap"), 3, f"{variant} DSB AP")
        assert_shown((float(row["F1@0.5"]),), quality(tables, variant, "f1_50")[:1], 3, f"{variant} F1")
        change = row[f"delta vs {baseline} [95 % CI]"]
        if variant == baseline:
            assert change == "-" and row["verdict"] == "baseline"
            continue
        assert_shown(interval(change), delta(tables, variant), 3, f"{variant} delta")
        (verdict,) = [r["verdict"] for r in tables["deltas"] if r["variant"] == variant]
        assert row["verdict"] == verdict


def test_every_isbi_ablation_and_each_of_its_variants_has_a_row() -> None:
    """A deleted row went unnoticed: every committed ISBI ablation report, and each variant it
    compares with its baseline, has its row in the overview."""
    axes = {r["axis"] for r in ISBI_ROWS}
    committed = {p.name.removeprefix("ablation-") for p in (REPO / "reports").glob("ablation-*")} - {"weightmap"}
    assert axes == committed
    for axis in sorted(axes):
        tables = report(f"ablation-{axis}")
        compared = {r["variant"] for r in tables["summary"]} - {r["baseline"] for r in tables["deltas"]}
        assert {r["variant"] for r in ISBI_ROWS if r["axis"] == axis} == compared, axis
