"""`run SUITE --workers 2` against the real PostgreSQL server (.ci/run starts it and sets
UNETBENCH_TEST_POSTGRES): the workers' rows equal the serial run's, and a worker SIGKILLed in
the middle of a retrain job leaves that job retried and every row present exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
import pandas as pd
import pytest
import torch

from bench.store import read_results
from tests.conftest import REPO, TINY_SEARCH, assert_user_error, run_cli

URL = os.environ.get("UNETBENCH_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not URL, reason="UNETBENCH_TEST_POSTGRES is not set (.ci/run starts PostgreSQL and sets it)")

# what must not differ between a serial and a distributed run of the same suite and seeds
KEY = ["variant", "seed", "stage", "trial", "split", "metric", "n"]  # n: the epoch of a trial's epoch_* rows
SCORED = ("search", "eval", "eval-image")


def unique_suite(tmp_path: Path) -> Path:
    """tiny-suite under a name of its own (its search studies are named after the suite), with
    one trial per study (the suite's own settings): trials that run side by side are sampled and
    pruned in another order than one after another (docs/scale-out.md), so a longer search
    need not choose the serial run's settings."""
    text = (TINY_SEARCH.parent / "tiny-suite.toml").read_text()
    text = text.replace('name = "tiny-suite"', f'name = "dist-{uuid.uuid4().hex[:8]}"', 1)
    path = tmp_path / "suite.toml"
    path.write_text(text.replace("trials = 3", "trials = 1").replace("startup_trials = 1", "startup_trials = 0"))
    return path


def scores(run_root: Path) -> pd.Series:
    frame = read_results(next(p for p in run_root.glob("*/*") if p.is_dir()))
    frame = frame[frame["stage"].isin(SCORED) & ~frame["metric"].str.contains("seconds|time")]  # clocks differ
    assert not frame.duplicated(KEY).any(), "every row exactly once"
    return frame.set_index(KEY)["value"].sort_index()


def test_two_workers_give_the_serial_runs_rows(tmp_path: Path) -> None:
    suite = unique_suite(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))  # the thread count each worker gets
    try:
        serial = run_cli("run", str(suite), "-o", str(tmp_path / "serial"), "--reports", str(tmp_path / "r1"))
    finally:
        torch.set_num_threads(threads)
    assert serial.returncode == 0, serial.stderr
    suite.write_text(suite.read_text().replace('name = "dist-', 'name = "dist2-', 1))  # fresh studies
    workers = run_cli("run", str(suite), "--workers", "2", "--storage", URL, "-o", str(tmp_path / "dist"),
                      "--reports", str(tmp_path / "r2"), fresh=True)  # fmt: skip
    assert workers.returncode == 0, workers.stderr
    assert "2 workers claim the search trials and retrain jobs" in workers.stderr
    pids = {line.split("]")[0] for line in workers.stderr.splitlines() if line.startswith("[worker ")}
    assert len(pids) == 2, f"both workers took retrain jobs: {pids}"
    a, b = scores(tmp_path / "serial"), scores(tmp_path / "dist")
    assert list(a.index) == list(b.index)
    assert (a.to_numpy() == b.to_numpy()).all(), "deterministic CPU training: the same values"


def test_a_killed_worker_leaves_its_job_retried_and_rows_once(tmp_path: Path) -> None:
    suite = unique_suite(tmp_path)
    suite.write_text(suite.read_text().replace("steps_per_epoch = 4", "steps_per_epoch = 40"))  # jobs of seconds
    args = ["run", str(suite), "--workers", "2", "--storage", URL, "-o", str(tmp_path / "out"),
            "--reports", str(tmp_path / "reports")]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, stderr=subprocess.PIPE, text=True)
    storage = optuna.storages.RDBStorage(URL)
    deadline, victim, jobs = time.monotonic() + 300, None, None
    while victim is None:
        assert proc.poll() is None and time.monotonic() < deadline, "no retrain job started in time"
        time.sleep(0.2)
        for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
            if summary.study_name.startswith(suite_name(suite)) and "-jobs-" in summary.study_name:
                study = optuna.load_study(study_name=summary.study_name, storage=storage)
                victim = next((t for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                               if "worker" in t.user_attrs), None)  # fmt: skip
                if victim is not None:
                    jobs = summary.study_name
                    break
    os.kill(int(victim.user_attrs["worker"].rsplit("-", 1)[1]), signal.SIGKILL)
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0 and "its jobs were retried by the other workers" in stderr, stderr
    trials = optuna.load_study(study_name=jobs, storage=storage).trials
    assert trials[victim.number].state == optuna.trial.TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retry) == 1 and retry[0].params == victim.params and retry[0].state == optuna.trial.TrialState.COMPLETE
    resumed = run_cli(*args, "--resume", fresh=True)  # after every worker is gone: the command resumes
    assert resumed.returncode == 0, resumed.stderr
    assert "retrain jobs: 4 done, 0 running, 0 waiting" in stderr + resumed.stderr, "each worker shows the counts"
    run_dir = next(p for p in (tmp_path / "out").glob("*/*") if p.is_dir())
    status = run_cli("status", str(run_dir), "--storage", URL)
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(": ", 1) for line in status.stdout.splitlines())
    assert set(lines) == {"unet-original", "resunet"} and all("search trials: 1 complete" in v for v in lines.values())
    assert "retrain jobs: 2 complete, 1 fail" in lines[victim.user_attrs["job"].split(" seed")[0]], status.stdout
    rows = scores(tmp_path / "out")  # asserts every row once
    evals = rows.xs("eval", level="stage")
    assert len(evals.index.droplevel("metric").unique()) == 2 * 2, "2 variants x 2 seeds, each scored"


def suite_name(path: Path) -> str:
    return next(line.split('"')[1] for line in path.read_text().splitlines() if line.startswith("name ="))


def test_workers_need_a_shared_database(tmp_path: Path) -> None:
    result = run_cli("run", str(unique_suite(tmp_path)), "--workers", "2", "-o", str(tmp_path / "out"))
    assert_user_error(result, "run --workers 2 (or --join) needs a shared database", "docs/scale-out.md")
    assert not (tmp_path / "out").exists()


def test_a_second_command_joins_the_run_and_takes_jobs(tmp_path: Path) -> None:
    """`run --join` (another machine, the results folder shared) adds workers to the latest run:
    both commands take retrain jobs, the first writes the report, every row is there once."""
    suite = unique_suite(tmp_path)
    suite.write_text(suite.read_text().replace("steps_per_epoch = 4", "steps_per_epoch = 40"))  # jobs of seconds
    out = ["--storage", URL, "-o", str(tmp_path / "out"), "--reports", str(tmp_path / "reports")]
    first = subprocess.Popen([sys.executable, "-m", "bench", "run", str(suite), "--workers", "1", *out], cwd=REPO,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((tmp_path / "out").glob("*/*/search")):
        assert first.poll() is None and time.monotonic() < deadline, "the run never started"
        time.sleep(0.2)
    joined = run_cli("run", str(suite), "--join", "--workers", "1", *out, fresh=True)
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0 and joined.returncode == 0, (stderr, joined.stderr)
    assert "joined " in joined.stdout and "[worker " in joined.stderr, "the joining command took jobs"
    assert "[worker " in stderr and (tmp_path / "reports").exists(), "the first took jobs and wrote the report"
    scores(tmp_path / "out")  # every row once


def test_status_of_an_unknown_run_is_one_line_without_the_password(tmp_path: Path) -> None:
    result = run_cli("status", str(tmp_path / "suite" / "run"), "--storage", URL)
    message = assert_user_error(result, "no distributed run run of suite suite")
    password = make_url(URL).password
    assert not password or f":{password}@" not in message, "the storage's password is never printed"
