"""The result schema and store: atomic parts, concurrent writers, errors that name the file."""

from __future__ import annotations

import json
import multiprocessing
import re
from pathlib import Path

import pytest
import torch

from bench.schema import COLUMNS, IDENTITY_COLUMNS, SCHEMA_VERSION, ResultRow, config_hash
from bench.store import ResultsError, ResultWriter, read_configs, read_results
from tests.conftest import REPO


def row(i: int = 0, **changes: object) -> ResultRow:
    values = dict(run_id="r1", suite="quick", variant="unet-16", config_hash="abc", seed=0, stage="eval",
                  metric="v_rand", value=0.5 + i / 1000)
    values.update(changes)
    return ResultRow(**values)  # type: ignore[arg-type]


def test_identity_columns_come_first_in_the_designed_order() -> None:
    assert COLUMNS[: len(IDENTITY_COLUMNS)] == IDENTITY_COLUMNS
    assert IDENTITY_COLUMNS[:3] == ("schema_version", "run_id", "suite") and IDENTITY_COLUMNS[-1] == "host"


def test_results_readme_documents_every_column() -> None:
    readme = (REPO / "results" / "README.md").read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", readme, re.M))
    assert documented == set(COLUMNS)


def test_round_trip(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run")
    writer.append([row(0), row(1, extra='{"lr": 0.001, "note": "a, b"}', ci_low=0.4, ci_high=0.6, n=5)])
    writer.append([row(2, stage="profile", metric="throughput", unit="img/s", batch_size=4)])
    frame = read_results(tmp_path)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 3
    assert frame["schema_version"].eq(SCHEMA_VERSION).all()
    assert frame.loc[1, "extra"] == '{"lr": 0.001, "note": "a, b"}' and frame.loc[1, "ci_high"] == 0.6
    assert frame.loc[2, "batch_size"] == 4 and frame["value"].tolist() == [0.5, 0.501, 0.502]


def test_config_hash_is_stable_and_sensitive() -> None:
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def _write_many(args: tuple[str, int]) -> None:
    run_dir, worker = args
    writer = ResultWriter(Path(run_dir))
    for batch in range(25):
        writer.append([row(worker * 1000 + batch * 4 + k, seed=worker) for k in range(4)])


def test_four_concurrent_writers_lose_no_row(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_write_many, [(str(run_dir), w) for w in range(4)])
    frame = read_results(run_dir)
    assert len(frame) == 4 * 25 * 4
    assert frame.groupby("seed").size().tolist() == [100, 100, 100, 100]
    assert not list(run_dir.glob(".rows-*")), "no temporary file may be left behind"


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path) -> None:
    writer = ResultWriter(tmp_path / "run")
    writer.append([row(0)])

    class Boom(Exception):
        pass

    def exploding_rows():
        yield row(1)
        raise Boom

    with pytest.raises(Boom):
        writer.append(exploding_rows())
    assert len(read_results(tmp_path)) == 1
    assert sorted(p.name.startswith("rows-") for p in (tmp_path / "run").iterdir()) == [True]


def test_schema_version_mismatch_names_file_and_both_versions(tmp_path: Path) -> None:
    path = ResultWriter(tmp_path).append([row(0, schema_version=SCHEMA_VERSION + 1)])
    with pytest.raises(ResultsError) as err:
        read_results(tmp_path)
    assert str(path) in str(err.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in str(err.value) and f"reads version {SCHEMA_VERSION}" in str(err.value)


@pytest.mark.parametrize(
    ("column", "seed", "reason"),
    [("seed", "1.5", "not a whole number"), ("seed", "1e30", "not a whole number"), ("value", "inf", "infinite"),
     ("ci_low", "-inf", "infinite"), ("value", "1.7e308", "past 1e100"), ("ci_high", "abc", "bound not a number")],
)
def test_a_row_with_a_fraction_or_huge_number_in_an_integer_column_is_named(
    tmp_path: Path, column: str, seed: str, reason: str
) -> None:
    """A seed of 1.5 was read as 1 and one of 1e30 wrapped to -2**63, so compare and report
    counted a seed that was never run; an infinite value made the report's statistics warn and
    print inf; now the row is named as damaged, and no report written."""
    from tests.conftest import assert_user_error, run_cli

    run_a, run_b = tmp_path / "a", tmp_path / "b"
    ResultWriter(run_a).append([row(0), row(1)])
    path = ResultWriter(run_b).append([row(0), row(1)])
    lines = path.read_text().splitlines()
    fields = lines[2].split(",")
    fields[COLUMNS.index(column)] = seed
    path.write_text("\n".join([*lines[:2], ",".join(fields)]) + "\n")
    needle = f"{path}: truncated or damaged row at line 3"
    assert_user_error(run_cli("compare", str(run_a), str(run_b)), needle, reason)
    assert_user_error(run_cli("report", str(run_b), "-o", str(tmp_path / "report")), needle)
    assert not (tmp_path / "report").exists(), "nothing was written"
    assert len(read_results(run_a)) == 2


def test_truncated_part_is_named(tmp_path: Path) -> None:
    path = ResultWriter(tmp_path).append([row(0), row(1)])
    text = path.read_text()
    path.write_text(text[: len(text) - 30])
    with pytest.raises(ResultsError, match=re.escape(str(path)) + ".*truncated or damaged row at line 3"):
        read_results(tmp_path)


def test_foreign_files_are_named_not_skipped(tmp_path: Path) -> None:
    ResultWriter(tmp_path).append([row(0)])
    (tmp_path / "summary.csv").write_text("variant,v_rand\nunet-original,0.5\n")  # what unet-bench run writes
    assert len(read_results(tmp_path)) == 1, "a run's summary.csv is derived from its rows, not a part"
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match=r"notes\.csv: a CSV file in the results tree that is not a results part"):
        read_results(tmp_path)
    (tmp_path / "notes.csv").unlink()
    (tmp_path / "rows-foreign.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ResultsError, match=r"rows-foreign\.csv: not a unet-bench results file"):
        read_results(tmp_path)
    (tmp_path / "rows-foreign.csv").write_text("schema_version,run_id\n1,x\n")
    with pytest.raises(ResultsError, match=r"rows-foreign\.csv: columns differ from schema v1: missing \['suite'"):
        read_results(tmp_path)


def test_text_columns_read_back_as_written(tmp_path: Path) -> None:
    """A CUDA version '13.0' is not the number 13, and a git sha of digits and one 'e' is not a float."""
    ResultWriter(tmp_path / "run").append([row(cuda_version="13.0", git_sha="1234567e8901")])
    frame = read_results(tmp_path)
    assert frame["cuda_version"].iloc[0] == "13.0" and frame["git_sha"].iloc[0] == "1234567e8901"


def test_schema_1_parts_are_read_as_schema_2(tmp_path: Path) -> None:
    """Older results stay readable: the mode folded into profile metric names becomes the mode
    column, the settings in ``extra`` the setting column, a suite's search rows get the run's id
    and the synthetic data one spelling."""
    from bench.store import COLUMNS_V1

    def v1_line(**values: object) -> str:
        base = {c: "" for c in COLUMNS_V1} | {"schema_version": 1, "seed": 0, "trial": -1, "batch_size": 1,
                                                "input_size": 0, "output_size": 0, "n": 1, "value": 1.0, "extra": "{}"}  # fmt: skip
        merged = base | values
        return ",".join(f'"{merged[c]}"' if "," in str(merged[c]) else str(merged[c]) for c in COLUMNS_V1)

    run = tmp_path / "quick" / "20261127-1"
    (run / "search").mkdir(parents=True)
    header = ",".join(COLUMNS_V1)
    compiled = '{""channels_last"": true, ""compile"": ""default""}'
    (run / "rows-profile.csv").write_text("\n".join([
        header, v1_line(run_id="20261127-1", stage="profile", metric="infer_throughput", value=5.0, extra=compiled),
        v1_line(run_id="20261127-1", stage="profile", metric="micro_model_step_forward_backward"),
    ]) + "\n")  # fmt: skip
    (run / "search" / "rows-trial.csv").write_text("\n".join([
        header, v1_line(run_id="search", stage="search", trial=0, metric="v_rand", dataset="synthetic(count=12, size=128, seed=0)"),
    ]) + "\n")  # fmt: skip
    frame = read_results(tmp_path).set_index("metric")
    assert (frame["schema_version"] == SCHEMA_VERSION).all() and set(frame["run_id"]) == {"20261127-1"}
    assert frame.loc["throughput", ["mode", "setting"]].tolist() == ["infer", "channels_last, compile=default"]
    assert frame.loc["micro_model_step", ["mode", "setting"]].tolist() == ["train", ""]
    assert frame.loc["v_rand", "dataset"] == "synthetic:count=12,size=128,seed=0"


def test_compare_keeps_eager_and_compiled_rows_apart(tmp_path: Path) -> None:
    """Two runs of one variant, each measured eager and compiled: four values, two ratios, never
    an average of the two settings."""
    from bench.aggregate import compare_runs
    from bench.rows import RowFactory

    for run, speed in (("a", 1.0), ("b", 2.0)):
        factory = RowFactory(run, "adhoc", torch.device("cpu")).bind(variant="unet-16", stage="profile", mode="infer")
        rows = [factory.row("throughput", speed * 10, setting="eager"), factory.row("throughput", speed * 30, setting="compile=default")]
        ResultWriter(tmp_path / run).append(rows)
    table = compare_runs(read_results(tmp_path / "a"), read_results(tmp_path / "b")).set_index("setting")
    assert table.loc["eager", ["a", "b"]].tolist() == [10.0, 20.0]
    assert table.loc["compile=default", ["a", "b"]].tolist() == [30.0, 60.0]
    assert (table["ratio_b_over_a"] == 2.0).all()


def test_every_committed_row_names_its_run_code_and_machine() -> None:
    """The committed reference results: every row carries the id of the run folder it lives in,
    the git sha that measured it and the host, whoever wrote it (search, eval or profile)."""
    for run in sorted(p for p in (REPO / "results").glob("*/*") if p.is_dir()):
        frame = read_results(run)
        assert set(frame["run_id"]) == {run.name}, (run, set(frame["run_id"]))
        assert (frame["git_sha"] != "").all() and (frame["host"] != "").all(), run


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"benchmarks": [', "not a pytest-benchmark JSON file"),
        ('{"benchmarks": [{"name": 3}]}', "benchmark 0 is not a pytest-benchmark entry"),
        ('{"benchmarks": "x"}', "benchmark 0 is not a pytest-benchmark entry"),
        ('{"benchmarks": []}', "no benchmarks in it: nothing to ingest"),
        ('{"benchmarks": [{"name": "test_a", "fullname": "t::test_a", "stats": {"median": Infinity, "rounds": 3, '
         '"iqr": 0, "mean": 1}}]}', "benchmark 0 is not a pytest-benchmark entry (ValueError: micro_a = inf"),
    ],
    ids=["truncated", "entry-without-stats", "not-a-list", "empty", "infinite-median"],
)
def test_a_malformed_benchmark_json_is_one_line_and_writes_nothing(tmp_path: Path, text: str, expected: str) -> None:
    from tests.conftest import assert_user_error, run_cli

    path = tmp_path / "bench.json"
    path.write_text(text)
    result = run_cli("ingest", str(path), "--results", str(tmp_path / "results"))
    assert_user_error(result, str(path), expected)
    assert not (tmp_path / "results").exists(), "nothing written"


def test_a_runs_own_config_wins_over_a_search_trials_of_the_same_key(tmp_path: Path) -> None:
    """A retrained run whose settings equal a trial's shares its key; the report must read the
    run's config (it records the arm and the baseline), not the trial's."""
    from bench.store import read_configs

    for folder, label in ((tmp_path / "search" / "configs", "trial"), (tmp_path / "configs", "run")):
        folder.mkdir(parents=True)
        (folder / "abc.json").write_text(json.dumps({"from": label}))
    assert read_configs(tmp_path) == {"abc": {"from": "run"}}


@pytest.mark.parametrize("changes", [{"value": float("nan")}, {"value": float("inf")}, {"ci_high": float("inf")}])
def test_no_row_with_a_value_the_reader_would_refuse_can_be_made(changes: dict[str, float]) -> None:
    """The reader names a part with a NaN or infinite value as damaged, so the writer's side
    refuses to make such a row: a run stops at the bad number instead of leaving unreadable results."""
    with pytest.raises(ValueError, match="v_rand = .*not a finite number"):
        row(**changes)
    assert row(ci_low=float("nan"), ci_high=float("nan")).value == 0.5, "NaN bounds (no interval) stay allowed"


def test_a_linked_folder_or_an_unreadable_config_in_a_tree_is_named(tmp_path: Path) -> None:
    """rglob does not follow a link to a folder, so its rows dropped out of a report unsaid; a
    truncated configs/*.json was a JSONDecodeError traceback."""
    run = tmp_path / "tree" / "run"
    ResultWriter(run).append([row(0), row(1)])
    (tmp_path / "tree" / "linked").symlink_to(run, target_is_directory=True)
    with pytest.raises(ResultsError, match=re.escape(str(tmp_path / "tree" / "linked")) + ": a link to a folder"):
        read_results(tmp_path / "tree")
    (run / "configs").mkdir()
    (run / "configs" / "abc.json").write_text('{"train_cfg": ')
    with pytest.raises(ResultsError, match=r"abc\.json: not a readable job config"):
        read_configs(run)
