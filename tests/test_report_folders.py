"""`unet-bench report` over a tree of several suites: one report per suite's folder, never one
ranking across protocols; and the refusals that keep it so, each one line with nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import assert_user_error, run_cli

GOLDEN_RUN = Path(__file__).parent / "data" / "golden" / "golden"


def suite_run(folder: Path, suite: str) -> Path:
    """The golden run's rows copied into ``folder`` under another suite name."""
    folder.mkdir(parents=True)
    for part in GOLDEN_RUN.glob("rows-*.csv"):
        (folder / part.name).write_text(part.read_text().replace(",golden,golden,", f",golden,{suite},"))
    return folder


def test_a_tree_of_two_suites_gets_one_report_per_suite_folder(tmp_path: Path) -> None:
    """Reporting the committed-style results/ crashed (the ISBI metric looked up under the DSB
    suite's baseline); it would have ranked variants of different data and budgets together."""
    suite_run(tmp_path / "results" / "alpha" / "run1", "alpha")
    suite_run(tmp_path / "results" / "beta" / "run1", "beta")
    result = run_cli("report", str(tmp_path / "results"), "-o", str(tmp_path / "reports"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["alpha", "beta"]
    for suite in ("alpha", "beta"):
        page = (tmp_path / "reports" / suite / "report.md").read_text()
        assert page.startswith(f"# unetbench: {suite} suite"), page[:200]
        assert f"-> {tmp_path / 'reports' / suite / 'report.html'}" in result.stdout


def test_one_suite_folder_still_gets_one_report_in_the_named_folder(tmp_path: Path) -> None:
    suite_run(tmp_path / "results" / "alpha" / "run1", "alpha")
    suite_run(tmp_path / "results" / "alpha" / "run2", "alpha")
    result = run_cli("report", str(tmp_path / "results"), "-o", str(tmp_path / "reports"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "reports" / "report.html").exists() and not (tmp_path / "reports" / "alpha").exists()


@pytest.mark.parametrize("where", ["one run folder", "one suite folder"])
def test_several_suites_mixed_in_one_folder_are_refused(tmp_path: Path, where: str) -> None:
    mixed = tmp_path / "results" / "alpha" / "run1"
    suite_run(mixed, "alpha")
    other = suite_run(tmp_path / "beta", "beta")
    if where == "one run folder":
        for part in other.glob("rows-*.csv"):
            shutil.copy(part, mixed / part.name.replace("golden", "beta"))
        named = mixed
    else:
        shutil.move(other, tmp_path / "results" / "alpha" / "run2")
        named = tmp_path / "results" / "alpha"
    shutil.move(suite_run(tmp_path / "gamma", "gamma"), tmp_path / "results" / "gamma")
    target = mixed if where == "one run folder" else tmp_path / "results"
    assert_user_error(run_cli("report", str(target), "-o", str(tmp_path / "reports")), f"{named}: ",
                      "several suites (alpha, beta)")
    assert not (tmp_path / "reports").exists(), "nothing written"


def test_a_baseline_is_checked_before_anything_is_written(tmp_path: Path) -> None:
    """--baseline of a variant the rows lack was ignored: the report came without its deltas
    and without saying why."""
    suite_run(tmp_path / "results" / "alpha" / "run1", "alpha")
    result = run_cli("report", str(tmp_path / "results" / "alpha"), "-o", str(tmp_path / "one"), "--baseline", "nope")
    assert_user_error(result, "--baseline 'nope': no such variant", "unet-gelu")
    suite_run(tmp_path / "results" / "beta" / "run1", "beta")
    result = run_cli("report", str(tmp_path / "results"), "-o", str(tmp_path / "all"), "--baseline", "unet-gelu")
    assert_user_error(result, "--baseline 'unet-gelu' names one suite's variant", "holds 2 suites' folders")
    assert not (tmp_path / "one").exists() and not (tmp_path / "all").exists(), "nothing written"
    result = run_cli("report", str(tmp_path / "results" / "beta"), "-o", str(tmp_path / "b"), "--baseline", "unet-gelu")
    assert result.returncode == 0 and "Ablation deltas against unet-gelu" in (tmp_path / "b" / "report.md").read_text()


def test_a_suite_without_scores_is_not_merged_and_a_bad_folder_stops_all_before_writing(tmp_path: Path) -> None:
    """A suite with no eval rows (a run interrupted after its search) was merged into the other
    suite's report and ranked beside it; a folder that could not be reported stopped the command
    only after the reports before it were written."""
    suite_run(tmp_path / "results" / "alpha" / "run1", "alpha")
    beta = suite_run(tmp_path / "results" / "beta" / "run1", "beta")
    for part in beta.glob("rows-*.csv"):  # beta's eval rows become search rows: no scores left
        part.write_text(part.read_text().replace(",eval,-1,", ",search,0,"))
    result = run_cli("report", str(tmp_path / "results"), "-o", str(tmp_path / "reports"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["alpha", "beta"]
    header = next(GOLDEN_RUN.glob("rows-*.csv")).read_text().splitlines()[0]
    (tmp_path / "results" / "zeta" / "run1").mkdir(parents=True)
    (tmp_path / "results" / "zeta" / "run1" / "rows-x.csv").write_text(header + "\n")
    assert_user_error(run_cli("report", str(tmp_path / "results"), "-o", str(tmp_path / "again")),
                      "zeta: no result rows to report")
    assert not (tmp_path / "again").exists(), "nothing written, not even the folders before the bad one"


def test_a_link_where_a_suites_report_folder_would_go_is_refused_before_writing(tmp_path: Path) -> None:
    """A dangling link at reports/beta was a FileExistsError traceback after alpha's report was written."""
    suite_run(tmp_path / "results" / "alpha" / "run1", "alpha")
    suite_run(tmp_path / "results" / "beta" / "run1", "beta")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "beta").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert_user_error(run_cli("report", str(tmp_path / "results"), "-o", str(tmp_path / "reports")),
                      "beta: a link or a file where the report's folder would go")
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == ["beta"] and not (tmp_path / "elsewhere").exists()
