"""Optuna search: prunes, resumes, is reproducible, and fails fast on bad storage or spaces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from bench.search import mask_url, run_search
from bench.store import read_results
from bench.suite import load_suite
from bench.suite_file import SuiteError
from tests.conftest import REPO, TINY_SEARCH, run_cli


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, optuna.Study]:
    """The tiny search run once (its trials train): the folder and the study, for several tests."""
    run = tmp_path_factory.mktemp("search") / "run"
    return run, run_search(load_suite(TINY_SEARCH), run)


def test_search_prunes_and_every_trial_is_in_the_storage(searched: tuple[Path, optuna.Study]) -> None:
    run, study = searched
    loaded = optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{run / 'study.db'}")
    states = [t.state for t in loaded.trials]
    assert len(states) == 5 and states.count(optuna.trial.TrialState.FAIL) == 0
    assert optuna.trial.TrialState.PRUNED in states, "the median pruner must stop at least one trial"
    rows = read_results(run)
    finals = rows[(rows["metric"] == "v_rand") & (rows["stage"] == "search")]
    complete = [t.number for t in loaded.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(finals["trial"]) == sorted(complete), "each finished trial's result rows exactly once"
    assert set(rows[rows["metric"] == "wall_time"]["trial"]) == {t.number for t in loaded.trials}

    # rerunning the same study resumes it: nothing is redone once the trial count is reached
    again = run_search(load_suite(TINY_SEARCH), run)
    assert len(again.trials) == 5


def test_same_seed_same_sequence_of_parameters(tmp_path: Path, searched: tuple[Path, optuna.Study]) -> None:
    first = [t.params for t in searched[1].trials]
    second = [t.params for t in run_search(load_suite(TINY_SEARCH), tmp_path / "b").trials]
    assert first == second


def test_bad_storage_fails_in_one_line_without_the_password() -> None:
    result = run_cli("search", str(TINY_SEARCH), "--storage", "postgresql://bench:s3cret@127.0.0.1:1/nodb")
    assert result.returncode == 2
    assert "s3cret" not in result.stderr + result.stdout and "***" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "cannot open storage" in result.stderr
    assert "trials" not in result.stderr, "nothing may train before the storage works"
    malformed = run_cli("search", str(TINY_SEARCH), "--storage", "notadb://x:pw@")
    assert malformed.returncode == 2 and "pw" not in malformed.stderr and "cannot open storage" in malformed.stderr


MASKED = {  # every place an SQLAlchemy URL can carry a credential, and what is shown instead
    "postgresql://u:topsecret@host:5432/db": "postgresql://u:***@host:5432/db",
    "postgresql://u:top@secret@host/db": "postgresql://u:***@host/db",  # a password holding "@"
    "postgresql://u:top%40secret@host/db": "postgresql://u:***@host/db",
    "postgresql://host/db?user=u&password=topsecret": "postgresql://host/db?user=u&password=***",
    "postgresql+psycopg2://h/db?sslmode=require&sslpassword=topsecret": "postgresql+psycopg2://h/db?sslmode=require&sslpassword=***",
    "mysql+pymysql://h/db?passwd=topsecret&pwd=topsecret&db_pass=topsecret": "mysql+pymysql://h/db?passwd=***&pwd=***&db_pass=***",
    "postgresql://h/db?secret=topsecret&token=topsecret&api_key=topsecret": "postgresql://h/db?secret=***&token=***&api_key=***",
    "postgresql://h/db?password=topsecret&password=topsecret": "postgresql://h/db?password=***&password=***",
    "mssql+pyodbc:///?odbc_connect=DRIVER%3D%7BODBC%7D%3BUID%3Du%3BPWD%3Dtopsecret": "mssql+pyodbc:///?odbc_connect=DRIVER={ODBC};UID=u;PWD=***",
    "sqlite:////tmp/run/study.db": "sqlite:////tmp/run/study.db",
    # make_url cannot read these: scheme and host only
    "postgresql://u:topsecret@host:notaport/db": "postgresql://host",
    "postgresql://u:topsecret@host:x/db?password=top@secret": "postgresql://***",
    "not a url topsecret": "(an unreadable URL)",
}  # fmt: skip


@pytest.mark.parametrize("url", MASKED)
def test_mask_url_hides_every_credential(url: str) -> None:
    masked = mask_url(url)
    assert masked == MASKED[url]
    assert "secret" not in masked.replace("sslpassword", "").replace("secret=***", "")


def test_storage_errors_mask_credentials_in_the_query() -> None:
    """A PostgreSQL password given as ?password=... once showed in the error line."""
    url = "postgresql://bench@127.0.0.1:1/nodb?password=s3cret&connect_timeout=2"
    result = run_cli("search", str(TINY_SEARCH), "--storage", url)
    assert result.returncode == 2 and "cannot open storage" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout and "password=***" in result.stderr


def test_unknown_search_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    text = TINY_SEARCH.read_text().replace('"model.dropout"', '"model.dropuot"')
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    message = str(err.value)
    assert str(path) in message and "dropuot" in message and "Did you mean 'dropout'" in message
    assert f"{path}:{text.splitlines().index(next(l for l in text.splitlines() if 'dropuot' in l)) + 1}" in message
