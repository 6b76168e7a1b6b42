"""Faults while running, through the real commands: the database lost in the middle of a
search, a disk that fills while results are written, out-of-memory inside a batch sweep. Each
ends in one clear line (or a recorded row), and every result finished before is intact.

The other runtime cases live beside the code they exercise: NaN loss and SIGKILL of training
(test_train), SIGKILL of `unet-bench run` (test_run), SIGKILL of a search worker
(test_search_postgres), four concurrent writers (test_store). docs/reliability.md lists all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from sqlalchemy.engine import make_url

from bench.store import read_results
from tests.conftest import REPO, TINY_SEARCH, assert_user_error, run_cli
from tests.tcp_proxy import TcpProxy
from tests.test_search_postgres import FINISHED, URL, assert_rows_once


@pytest.mark.skipif(not URL, reason="UNETBENCH_TEST_POSTGRES is not set (.ci/run starts PostgreSQL and sets it)")
def test_database_lost_mid_search_stops_cleanly_and_a_rerun_resumes(tmp_path: Path) -> None:
    real = make_url(URL)
    proxy = TcpProxy(real.host or "127.0.0.1", real.port or 5432)
    proxy.start()
    proxied = real.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    name = f"lost-{uuid.uuid4().hex[:8]}"
    slower = tmp_path / "slower.toml"  # trials long enough for the loss to land inside one
    slower.write_text(
        TINY_SEARCH.read_text().replace("epochs = 3", "epochs = 5").replace("steps_per_epoch = 4", "steps_per_epoch = 8")
    )
    env = {**os.environ, "UNETBENCH_HEARTBEAT_S": "1", "UNETBENCH_HEARTBEAT_GRACE_S": "2"}
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "search",
        str(slower),
        "--storage",
        proxied,
        "--study",
        name,
        "-o",
        str(tmp_path / "run"),
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while True:  # wait for one finished trial and one under way
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the search never got going"
            time.sleep(0.3)
            try:
                trials = optuna.load_study(study_name=name, storage=URL).trials
            except KeyError:
                continue
            if any(t.state in FINISHED for t in trials) and any(t.state.name == "RUNNING" for t in trials):
                break
        proxy.stop()  # the server is gone: open connections drop, new ones are refused
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 2, stderr[-3000:]
    message = stderr.strip().splitlines()[-1]
    assert message.startswith("unet-bench: error: lost the storage") and "run the same command again" in message
    assert f":{real.password}@" not in stderr and "***" in message
    assert "Traceback" not in stderr and "Exception in thread" not in stderr, stderr[-3000:]
    before = optuna.load_study(study_name=name, storage=URL)
    finished_before = [t.number for t in before.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert_rows_once(tmp_path / "run", before)  # every finished trial's rows are there, once

    time.sleep(3)  # the lost trial's heartbeat is now stale
    proxy.start()  # the server is back
    try:
        rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    finally:
        proxy.stop()
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = optuna.load_study(study_name=name, storage=URL)
    assert sum(t.state in FINISHED for t in after.trials) >= 5
    assert all(after.trials[n].state == optuna.trial.TrialState.COMPLETE for n in finished_before)
    assert_rows_once(tmp_path / "run", after)


def in_small_tmpfs(script: str, size: str = "2m") -> subprocess.CompletedProcess[str]:
    """Run a shell script with a fresh tmpfs of ``size`` mounted at $SMALL, in a private mount
    namespace (nothing outside sees or must clean up the mount)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) for a private tmpfs")
    wrapped = f'SMALL=$(mktemp -d) && mount -t tmpfs -o size={size} tmpfs "$SMALL" && export SMALL && {script}'
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", wrapped], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    if "mount:" in result.stderr and "permission denied" in result.stderr.lower():
        pytest.skip(f"this machine refuses a private tmpfs: {result.stderr.strip()}")
    return result


def test_a_full_disk_while_writing_rows_leaves_no_half_written_row(tmp_path: Path) -> None:
    """First measurement is written; the disk fills; the second fails with one line naming the
    file, and the first is intact (copied out of the tmpfs for the checks below)."""
    out = tmp_path / "kept"
    second_err = tmp_path / "second.err"  # outside the full disk, or the message itself is lost
    profile = f'"{sys.executable}" -m bench profile --variant unet-16 --input 188 --max-seconds 0.2 --results "$SMALL/results"'
    script = (
        f"{profile} && "
        'dd if=/dev/zero of="$SMALL/filler" bs=4k 2>/dev/null; '  # fills the disk, then fails: intended
        f'{profile} 2>"{second_err}"; echo "second exit $?"; '
        f'rm "$SMALL/filler"; cp -r "$SMALL/." "{out}"'
    )
    result = in_small_tmpfs(script)
    assert "second exit 2" in result.stdout, (result.stdout, result.stderr)
    second = second_err.read_text()
    fake = subprocess.CompletedProcess([], 2, "", second)
    message = assert_user_error(fake, "no space left on device", "nothing was half-written", "rows-")
    assert str(out) not in message  # named inside the tmpfs, where the user's results are
    leftovers = [p.name for p in (out / "results").rglob("*") if p.is_file() and not p.name.startswith("rows-")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"
    rows = read_results(out / "results")  # the first run's part parses whole
    assert len(rows) > 0 and rows["run_id"].nunique() == 1 and set(rows["variant"]) == {"unet-16"}


def test_out_of_memory_in_a_sweep_is_a_row_and_the_sweep_goes_on() -> None:
    """`--batch auto` under the profiler's CPU memory cap: the OOM is recorded, the command
    finishes, and the batch sizes that fitted are measured."""
    result = run_cli(
        "profile", "--variant", "unet-32", "--mode", "train", "--input", "188", "--batch", "auto", "--max-batch", "64",
        "--memory-cap-mib", "300", "--max-seconds", "0.2", "--json", fresh=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads(result.stdout)
    ooms = [r for r in rows if r["metric"] == "oom"]
    measured = {r["batch_size"] for r in rows if r["metric"] == "throughput"}
    assert ooms and measured and max(measured) < min(r["batch_size"] for r in ooms)


def test_a_cap_below_one_sample_is_an_oom_row_that_names_the_cap() -> None:
    """Whatever the allocator or oneDNN raises when the cap bites (it differs between CPUs), the
    configuration is a row saying it did not fit. A fresh process, because the cap is counted
    from the address space the process holds, and memory freed earlier in it could be reused."""
    result = run_cli(
        "profile", "--variant", "unet-32", "--mode", "train", "--input", "188", "--memory-cap-mib", "60", "--json", fresh=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (oom,) = [r for r in json.loads(result.stdout) if r["metric"] == "oom" and r["mode"] == "train"]
    assert "under the 60 MiB memory cap" in json.loads(oom["extra"])["oom"]


def test_a_read_only_output_folder_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """A folder the command cannot write in is named in one line at the start, not after the
    training whose checkpoint it could not save (a read-only tmpfs: root may write anywhere else)."""
    err = tmp_path / "err"
    train = (f'"{sys.executable}" -m bench train --variant unet-16 --epochs 1 --set steps_per_epoch=1 '
             f'--set tile=188 --set val_tile=188 -o "$SMALL/run" 2>"{err}"')  # fmt: skip
    result = in_small_tmpfs(f'mount -o remount,ro "$SMALL" && {train}; echo "exit $?"')
    assert "exit 2" in result.stdout, (result.stdout, result.stderr)
    message = err.read_text().strip()
    assert len(message.splitlines()) == 1 and "cannot be written (read-only or no permission)" in message, message
    assert "-o " in message and "recipe:" not in message, "refused before the command printed anything"


def test_a_run_folder_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    """A second `run --resume` of a folder a live process holds is one line naming that process,
    and changes nothing; once the holder is killed its lock is stale and the next one takes it."""
    from bench.runlock import LOCK_NAME, run_lock

    out = ["-o", str(tmp_path / "results"), "--reports", str(tmp_path / "reports")]
    suite = str(TINY_SEARCH.parent / "tiny-suite.toml")
    first = subprocess.Popen([sys.executable, "-m", "bench", "run", suite, *out], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not (locks := list((tmp_path / "results").glob(f"tiny-suite/*/{LOCK_NAME}"))):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took its folder"
            time.sleep(0.1)
        second = run_cli("run", suite, "--resume", *out)
        assert_user_error(second, f"{locks[0].parent} is in use by unet-bench process {first.pid} on ")
        assert first.poll() is None, "the holder runs on"
    finally:
        first.kill()
        first.wait()
    assert locks[0].exists(), "a killed process leaves its lock behind"
    with run_lock(locks[0].parent):  # stale: its process is gone, so it is taken over
        assert json.loads(locks[0].read_text())["pid"] == os.getpid()
    assert not locks[0].exists(), "released when the holder ends"


def test_a_search_resumed_right_after_a_kill_retries_the_killed_trial(tmp_path: Path) -> None:
    """`search` SIGKILLed mid-trial and rerun at once, long before the killed trial's heartbeat
    could go stale (grace: an hour): the trial is failed by its dead owner (host and PID) and run
    again with its parameters, and the study ends with every trial the suite asked for."""
    env = {**os.environ, "UNETBENCH_HEARTBEAT_GRACE_S": "3600"}
    args = ["search", str(TINY_SEARCH), "-o", str(tmp_path / "out")]
    killed = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline, victim = time.monotonic() + 120, None
    while victim is None:
        assert killed.poll() is None and time.monotonic() < deadline, "no trial started in time"
        time.sleep(0.2)
        victim = running_trial_with_owner(tmp_path / "out" / "study.db")
    killed.kill()
    killed.wait()
    resumed = run_cli(*args, env=env, fresh=True)
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path / 'out' / 'study.db'}")
    assert study.trials[victim].state == optuna.trial.TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim]
    assert len(retried) == 1 and retried[0].params == study.trials[victim].params
    assert retried[0].state.is_finished()
    assert sum(t.state in FINISHED for t in study.trials) == 5, "the suite's 5 trials, none lost to the kill"


def running_trial_with_owner(db: Path) -> int | None:
    """The number of a running trial (after the first) that has recorded its worker and its
    parameters (a trial killed before it drew them is retried with new ones), read-only:
    opening the study through Optuna while the search creates it would write to its tables."""
    if not db.exists():
        return None
    with contextlib.suppress(sqlite3.Error), contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        row = con.execute("SELECT t.number FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                          "WHERE t.state = 'RUNNING' AND a.key = 'worker' AND t.number >= 1 AND EXISTS "
                          "(SELECT 1 FROM trial_params p WHERE p.trial_id = t.trial_id)").fetchone()  # fmt: skip
        return None if row is None else int(row[0])
    return None


def test_a_killed_process_not_yet_reaped_is_gone() -> None:
    """A worker killed while its command waits for another worker stays a zombie until reaped;
    its job must count as dead (os.kill still finds a zombie), or the other worker waits forever."""
    from bench.runlock import process_alive

    child = subprocess.Popen(["sleep", "60"])
    assert process_alive(child.pid)
    child.kill()
    deadline = time.monotonic() + 10
    while process_alive(child.pid):  # a zombie from the moment it dies: never reaped in this loop
        assert time.monotonic() < deadline, "a killed, unreaped process still counts as alive"
        time.sleep(0.05)
    child.wait()
