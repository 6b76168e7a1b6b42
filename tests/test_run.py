"""`unet-bench run`: the whole pipeline end to end, and a killed run resumed without redoing
finished work or duplicating rows."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch

from bench.store import read_configs, read_results
from tests.conftest import REPO
from variants import resolve_config

SUITE = Path(__file__).parent / "data" / "tiny-suite.toml"


def run_cli(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bench", "run", str(SUITE), "-o", str(tmp_path / "results"),
            "--reports", str(tmp_path / "reports"), *extra]  # fmt: skip


def terminal_output(proc_args: list[str]) -> tuple[subprocess.Popen[bytes], bytearray, threading.Thread]:
    """Start ``proc_args`` with its stderr on a pseudo-terminal, as a user's shell would, and
    collect what it draws there."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # rows, columns: a terminal window
    proc = subprocess.Popen(proc_args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    drawn = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            drawn.extend(chunk)
        os.close(master)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    return proc, drawn, reader


def test_killed_run_resumes_without_redoing_work_or_duplicating_rows(tmp_path: Path) -> None:
    proc, drawn, reader = terminal_output(run_cli(tmp_path))
    deadline = time.monotonic() + 240
    while not list((tmp_path / "results").glob("tiny-suite/*/rows-eval-*.csv")):
        assert proc.poll() is None, drawn.decode(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "no stage finished in time"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)
    # in a terminal: a progress bar over the suite's jobs with an estimate of the time left
    assert re.search(rb"\d+/\d+ jobs \[[0-9:]+, ETA \d+:\d+\]", drawn), drawn.decode(errors="replace")[-2000:]
    assert b"[1/4 search 1/2] unet-original" in drawn, "the stage lines are printed above the bar"
    run_dir = next((tmp_path / "results" / "tiny-suite").iterdir())
    finished_before = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("rows-eval-*.csv")}
    trials_before = len(optuna.load_study(study_name="tiny-suite-unet-original", storage=f"sqlite:///{run_dir / 'search' / 'study.db'}").trials)

    assert (run_dir / ".unet-bench.lock").exists(), "the killed run's lock, now stale"
    resumed = subprocess.run(run_cli(tmp_path, "--resume"), cwd=REPO, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert not (run_dir / ".unet-bench.lock").exists(), "the stale lock was taken over, then released"
    assert "done before, skipped" in resumed.stderr
    assert "ETA" not in resumed.stderr and "\r" not in resumed.stderr, "no bar when stderr is not a terminal"
    for name, mtime in finished_before.items():
        assert (run_dir / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    storage = f"sqlite:///{run_dir / 'search' / 'study.db'}"
    study = optuna.load_study(study_name="tiny-suite-unet-original", storage=storage)
    assert trials_before <= len(study.trials) <= 3, "finished trials are not run again"
    # an equal tuning budget: one study per variant in the one storage, same trials, first trial untuned
    assert sorted(optuna.get_all_study_names(storage)) == ["tiny-suite-resunet", "tiny-suite-unet-original"]
    for name in ("tiny-suite-resunet", "tiny-suite-unet-original"):
        tuned = optuna.load_study(study_name=name, storage=storage)
        assert len(tuned.trials) == 3 and tuned.trials[0].user_attrs.get("untuned") is True
        dropout = resolve_config(name.removeprefix("tiny-suite-"), base_width=4, depth=2).dropout
        assert tuned.trials[0].params == {"lr": 3e-3, "model.dropout": dropout}, "the suite's own settings"

    frame = read_results(tmp_path / "results")
    evals = frame[frame["stage"] == "eval"]
    search = frame[frame["stage"] == "search"]
    profile = frame[frame["stage"] == "profile"]
    assert not evals.duplicated(subset=["variant", "seed", "metric"]).any(), "no duplicate eval rows"
    assert not search.duplicated(subset=["variant", "trial", "metric", "extra"]).any(), "no duplicate search rows"
    assert not profile.duplicated(subset=["variant", "metric"]).any(), "no duplicate profile rows"
    curves = frame[frame["stage"] == "curve"]
    epochs = [json.loads(e)["epoch"] for e in curves["extra"]]
    assert not curves.assign(epoch=epochs).duplicated(subset=["variant", "seed", "metric", "epoch"]).any()
    assert curves.groupby(["variant", "seed"]).ngroups == 4, "every retrained run has its learning curve"
    assert sorted(evals.groupby(["variant", "seed"]).size().index.tolist()) == [
        ("resunet", 0), ("resunet", 1), ("unet-original", 0), ("unet-original", 1)]
    report = (tmp_path / "reports" / "tiny-suite" / "report.html").read_text()
    assert "resunet" in report and "unet-original" in report
    assert (tmp_path / "reports" / "tiny-suite" / "fig" / "learning_curves.png").exists()
    assert re.search(r"Each run: \d epochs x 4 steps of batch 2 at 92 px tiles \(\d+ steps\)", report)
    assert "<h2>Tuning</h2>" in report and (tmp_path / "reports" / "tiny-suite" / "fig" / "search_history.png").exists()
    assert "every variant was tuned in a study of its own (3 trials each" in report
    assert not (frame["metric"] == "param_importance").any(), "no importances from 3 trials (MIN_IMPORTANCE_TRIALS)"
    # each variant was retrained with its own study's best settings
    for variant in ("resunet", "unet-original"):
        tuned = optuna.load_study(study_name=f"tiny-suite-{variant}", storage=storage).best_trial.params
        used = evals.loc[(evals["variant"] == variant) & (evals["metric"] == "v_rand"), "extra"]
        assert all(json.loads(e)["best_trial"] == tuned for e in used)
    assert "variant" in resumed.stdout and "report:" in resumed.stdout
    study = next(line for line in resumed.stdout.splitlines() if line.startswith("study:")).split("sqlite:///")[1]
    assert Path(study).is_file(), "the dashboard line names the run's study file"
    # the terminal prints the report's Summary: the same quality cells (V_rand, pixel error), in the same
    # order, and the runs that did not train (this suite's budget is too small for most to learn)
    cells = re.compile(r"\d\.\d{4} (?:\[\d\.\d{4}, \d\.\d{4}\]|\(n=\d: no interval\))")
    markdown = (tmp_path / "reports" / "tiny-suite" / "report.md").read_text()
    summary = markdown.split("## Quality per variant")[0]
    assert cells.findall(resumed.stdout) == cells.findall(summary)
    untrained = evals[(evals["metric"] == "trained") & (evals["value"] == 0)]
    assert resumed.stdout.count("did not train, left out of the ranking") == len(untrained)
    said = "All 4 runs trained" if untrained.empty else f"{len(untrained)} run{'s' if len(untrained) > 1 else ''} of 4 did not train"
    assert said in summary, "the Summary says how many runs trained, even when all did"
    trained_variants = evals.loc[(evals["metric"] == "trained") & (evals["value"] == 1), "variant"].nunique()
    assert len(cells.findall(summary)) == 2 * trained_variants, "V_rand and pixel error of each variant that trained"

    # one row factory: every stage's rows carry the run's id, one spelling of the data, the code and machine
    assert set(frame["run_id"]) == {run_dir.name}
    assert set(frame.loc[frame["stage"] != "profile", "dataset"]) == {"synthetic:count=5,size=96,seed=0"}
    assert (frame["git_sha"] != "").all() and (frame["host"] != "").all() and (frame["device_name"] != "").all()
    # a quality number names the threads and CPU kernels that produced it (they move its last digits)
    scored = pd.concat([evals[evals["metric"] == "v_rand"], search[search["metric"] == "wall_time"]])
    envs = [json.loads(e)["env"] for e in scored["extra"]]
    assert len(envs) >= 4 + 2 and all(env["cpu_threads"] >= 1 and env["cpu_capability"] for env in envs)
    assert all(env["packages"]["numpy"] == np.__version__ and "scipy" in env["packages"] for env in envs)
    # the settings behind every config_hash are stored once, readable without parsing ``extra``
    configs = read_configs(run_dir)
    trained = set(frame.loc[(frame["stage"] == "eval") | (frame["trial"] >= 0), "config_hash"])
    assert trained <= configs.keys() and all("lr" in configs[key]["train_cfg"] for key in trained)
    if not torch.cuda.is_available():  # the suite's [cpu] schedule ran, and both say so
        assert "scaled-down [cpu] schedule (2 epochs" in resumed.stderr
        assert "<title>unetbench: tiny-suite suite (CPU-sized: trained on a CPU, 8 steps per run)</title>" in report


def test_parameter_importances_need_enough_finished_trials() -> None:
    """fANOVA over a handful of trials reports noise: no rows below MIN_IMPORTANCE_TRIALS, one row
    per searched parameter from there on, the parameter that drives the objective first."""
    from bench.run import MIN_IMPORTANCE_TRIALS, importance_rows
    from bench.suite import load_suite

    suite = load_suite(SUITE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) + 0 * t.suggest_int("depth", 2, 5),
                   n_trials=MIN_IMPORTANCE_TRIALS - 1)  # fmt: skip
    assert importance_rows(study, suite, "run", "unet-original") == []
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-1, log=True) + 0 * t.suggest_int("depth", 2, 5),
                   n_trials=3)  # fmt: skip
    rows = importance_rows(study, suite, "run", "unet-original")
    by_param = {json.loads(r.extra)["param"]: r.value for r in rows}
    assert set(by_param) == {"lr", "depth"} and by_param["lr"] > by_param["depth"]
    assert {r.variant for r in rows} == {"unet-original"} and {r.stage for r in rows} == {"search"}
