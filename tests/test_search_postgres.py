"""Search workers sharing a real PostgreSQL study (.ci/run starts the server and sets
UNETBENCH_TEST_POSTGRES): two workers split the trials; a SIGKILLed worker's trial is retried
and every finished trial's rows are stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

from bench.search import run_search
from bench.store import read_results
from bench.suite import load_suite
from tests.conftest import REPO, TINY_SEARCH

URL = os.environ.get("UNETBENCH_TEST_POSTGRES")
pytestmark = pytest.mark.skipif(not URL, reason="UNETBENCH_TEST_POSTGRES is not set (.ci/run starts PostgreSQL and sets it)")

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def assert_rows_once(run_dir: Path, study: optuna.Study) -> None:
    rows = read_results(run_dir)
    finals = rows[(rows["stage"] == "search") & (rows["metric"] == "v_rand")]
    complete = [t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert sorted(finals["trial"].tolist()) == sorted(complete)


def test_two_workers_share_one_study(tmp_path: Path) -> None:
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    study = run_search(load_suite(TINY_SEARCH), tmp_path / "run", URL, name, workers=2)
    finished = [t for t in study.trials if t.state in FINISHED]
    assert 5 <= len(finished) <= 6, "each worker stops once the study holds enough finished trials"
    writers = {t.user_attrs["worker"] for t in finished}  # host-pid of the process that ran the trial
    assert len(writers) == 2, f"both worker processes must have run trials: {writers}"
    assert_rows_once(tmp_path / "run", study)


def test_killed_worker_trial_is_retried(tmp_path: Path) -> None:
    name = f"killed-{uuid.uuid4().hex[:8]}"
    slower = tmp_path / "slower.toml"  # longer trials, so the kill lands inside one
    slower.write_text(TINY_SEARCH.read_text().replace("epochs = 3", "epochs = 6").replace("steps_per_epoch = 4", "steps_per_epoch = 10"))
    env = {**os.environ, "UNETBENCH_HEARTBEAT_S": "1", "UNETBENCH_HEARTBEAT_GRACE_S": "3"}
    cmd = [sys.executable, "-m", "bench", "search", str(slower), "--storage", URL, "--study", name, "-o", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    victim = None
    while victim is None:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial got going"
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name=name, storage=URL)
        except KeyError:
            continue
        running = [t for t in study.trials if t.state == optuna.trial.TrialState.RUNNING and t.intermediate_values]
        if running:
            victim = running[0].number
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(4)  # past the heartbeat grace period: the trial is now stale

    rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    study = optuna.load_study(study_name=name, storage=URL)
    states = {t.number: t.state for t in study.trials}
    assert states[victim] == optuna.trial.TrialState.FAIL
    retry_cls = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None) or optuna.storages.RetryFailedTrialCallback
    retried = [t for t in study.trials if retry_cls.retried_trial_number(t) == victim]
    assert len(retried) == 1 and retried[0].params == study.trials[victim].params
    assert sum(s in FINISHED for s in states.values()) == 5
    assert_rows_once(tmp_path / "run", study)
