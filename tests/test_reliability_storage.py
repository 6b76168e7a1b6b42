"""A search's rows stay one copy through the real command: a run folder keeps to the storage it
was searched in, a storage that lost its trials is refused, and a trial run again replaces its
rows instead of adding a second copy."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from bench.search import Objective
from bench.store import read_results
from bench.suite import load_suite
from tests.conftest import TINY_SEARCH, assert_user_error, run_cli, run_cli_many


def fast_suite(tmp_path: Path) -> Path:
    """tiny-search with 2 trials of 1 epoch: a whole search in seconds."""
    path = tmp_path / "fast.toml"
    path.write_text(TINY_SEARCH.read_text().replace("trials = 5", "trials = 2").replace("epochs = 3", "epochs = 1"))
    return path


def test_another_storage_or_an_emptied_study_is_refused(tmp_path: Path) -> None:
    """Resuming with another --storage (or after the study file was emptied) once ran the whole
    search again and added a second copy of its rows: now one line, nothing run, rows as they were."""
    suite = fast_suite(tmp_path)
    run = tmp_path / "results" / "tiny" / "20990101-000000-abcdef"  # a suite run's folder, as `run` lays it out
    first = run_cli("search", str(suite), "-o", str(run / "search"))
    assert first.returncode == 0, first.stderr
    assert json.loads((run / "search" / "storage.json").read_text()) == {"storage": "study.db in the run folder"}
    rows = read_results(run)
    other = tmp_path / "other.db"
    results = run_cli_many({
        "search": ["search", str(suite), "-o", str(run / "search"), "--storage", f"sqlite:///{other}"],
        "run": ["run", str(suite), "-o", str(tmp_path / "results"), "--resume", "--storage",
                "postgresql://bench:s3cret@127.0.0.1:1/db?password=s3cret"],
    })  # fmt: skip
    assert_user_error(results["search"], f"holds a search in study.db in the run folder, not sqlite:///{other}")
    message = assert_user_error(results["run"], f"{run / 'search'} holds a search in study.db in the run folder",
                                "not postgresql://bench:***@127.0.0.1:1/db?password=***")  # fmt: skip
    assert "s3cret" not in message and not other.exists(), "refused before the storage is opened"

    (run / "search" / "study.db").unlink()  # the study emptied
    emptied = run_cli("search", str(suite), "-o", str(run / "search"))
    assert_user_error(emptied, "holds the rows of 2 trials of study 'tiny-unet-original' (trial 0, 1)",
                      "no longer has", "nothing was run")  # fmt: skip
    assert read_results(run).equals(rows), "the rows are as they were: no second copy"


def test_a_damaged_study_file_on_resume_is_one_line_and_keeps_every_file(tmp_path: Path) -> None:
    """A study file cut short or overwritten: `search` and `run --resume` say which file is
    damaged, run nothing, and leave every file of the run as it was."""
    suite = fast_suite(tmp_path)
    run = tmp_path / "results" / "tiny" / "20990101-000000-abcdef"
    assert run_cli("search", str(suite), "-o", str(run / "search")).returncode == 0
    study = run / "search" / "study.db"
    for damaged in (study.read_bytes()[:5000], b"not a database at all\n" * 100):
        study.write_bytes(damaged)
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
        results = run_cli_many({
            "search": ["search", str(suite), "-o", str(run / "search")],
            "run": ["run", str(suite), "-o", str(tmp_path / "results"), "--resume"],
        })  # fmt: skip
        assert_user_error(results["search"], f"{study}: the study file is damaged", "nothing was run", "is kept")
        resumed = results["run"]  # its stage lines, then the same one error line
        assert resumed.returncode == 2 and "Traceback" not in resumed.stderr, resumed.stderr
        assert resumed.stderr.strip().splitlines()[-1].startswith(f"unet-bench: error: {study}: the study file is damaged")
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before, "every file as it was"


@pytest.mark.filterwarnings("ignore:The reported value is ignored")  # the second run's epochs, reported again
def test_a_trial_run_again_replaces_its_rows(tmp_path: Path) -> None:
    """A trial's rows are the part rows-search-STUDY-trialN.csv: running the trial again
    rewrites that part, so its rows are there once."""
    suite = load_suite(fast_suite(tmp_path))
    run_dir = tmp_path / "run"
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    trial = optuna.create_study(study_name="again", storage=storage, direction="maximize").ask()
    objective = Objective(suite, run_dir, "unet-original")
    objective(trial)
    first = read_results(run_dir)
    objective(trial)
    again = read_results(run_dir)
    assert sorted(p.name for p in run_dir.glob("rows-*.csv")) == ["rows-search-again-trial0.csv"]
    assert (again["metric"] == "v_rand").sum() == 1 and len(again) == len(first)
