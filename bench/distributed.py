"""``unet-bench run SUITE --storage URL --workers N``: the suite's search trials and retrain jobs
are claimed by whichever worker is free, through the Optuna storage that already coordinates
search workers; there is no queue or scheduler of ours.

- Each searched variant's study is the one the serial run uses; a worker runs one trial of a
  study that still has trials to start (Optuna's own claiming, heartbeats and retries).
- Each variant's retrain jobs (seed x fold) are the enqueued trials of a jobs study of its own
  (``SUITE-RUN-jobs-VARIANT``), whose parameter ``job`` indexes ``run.retrain_jobs``. A worker
  takes one only once the variant's search has finished (no global barrier: one variant retrains
  while another is still searched); a job whose worker died is failed by heartbeat, or at once by
  its owner's host and PID (``search.fail_lost_trials``), and re-queued with the same parameter.
- A job writes its rows part whole (``rows-eval-VARIANT-seedN``), so a retried job replaces it and
  every row is there once. Profiling and the report run after the workers, in the command's own
  process: no timing shares the machine with training.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from bench.errors import UsageError, WorkerError
from bench.paths import safe_part
from bench.run import Retrain, retrain, retrain_jobs
from bench.search import (
    FINISHED,
    HEARTBEAT_S,
    chosen_trial,
    fail_lost_trials,
    make_pruner,
    make_sampler,
    mask_url,
    open_storage,
    open_study,
    optimize,
    remaining_trials,
)
from bench.suite import SuiteCfg
from bench.workers import run_workers

RUNNING = optuna.trial.TrialState.RUNNING
WAITING = optuna.trial.TrialState.WAITING


def check_shared_storage(url: str | None, workers: int) -> str:
    """Workers claim jobs through a database that locks a claimed row; SQLite does not (Optuna
    issue #4002: two workers could take the same queued trial)."""
    if url is None or url.startswith("sqlite"):
        raise UsageError(f"run --workers {workers} (or --join) needs a shared database that locks what a worker claims: "
                         "--storage postgresql://USER@HOST/DB (docs/scale-out.md); SQLite cannot")  # fmt: skip
    return url


def jobs_study_name(suite: SuiteCfg, run_dir: Path, variant: str) -> str:
    return safe_part(f"{suite.name}-{run_dir.name}-jobs-{variant}", "jobs study name")


def search_study_name(suite: SuiteCfg, variant: str) -> str:
    return safe_part(f"{suite.name}-{variant}", "study name")  # the serial run's (bench.search.run_search)


def prepare(suite: SuiteCfg, run_dir: Path, url: str, seeds: int) -> None:
    """Create every study before any worker starts (two workers creating one would both queue its
    first trial): each searched variant's, with its untuned trial, and each variant's jobs study
    with its retrain jobs queued. A study that exists is left as it is (a resumed run)."""
    storage = open_storage(url)
    for variant in suite.searched_variants():
        open_study(suite, storage, search_study_name(suite, variant), variant, run_dir / "search")
    jobs = retrain_jobs(suite, seeds)
    for variant in suite.variants:
        study = optuna.create_study(study_name=jobs_study_name(suite, run_dir, variant), storage=storage,
                                    load_if_exists=True, direction="maximize")  # fmt: skip
        if not study.trials:
            for index, job in enumerate(jobs):
                if job.variant == variant:
                    study.enqueue_trial({"job": index}, user_attrs={"job": str(job)})


@dataclass
class JobObjective:
    """A jobs-study trial: the retrain job its ``job`` parameter names. A trial that was not
    queued (another worker took the last job first) does nothing and is pruned."""

    suite: SuiteCfg
    run_dir: Path
    jobs: list[Retrain]
    settings: dict[str, Any]

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", f"{socket.gethostname()}-{os.getpid()}")
        index = trial.suggest_int("job", 0, len(self.jobs) - 1)
        if "job" not in trial.user_attrs:  # queued jobs (and their retries) carry their name
            raise optuna.TrialPruned("not a queued job")
        line = retrain(self.suite, self.run_dir, self.settings, self.jobs[index])
        print(f"[worker {os.getpid()}] {self.jobs[index]}: {line}", file=sys.stderr, flush=True)
        return 1.0


class Worker:
    """One worker's loop: a search trial where one is still to start, else a retrain job whose
    variant's search has finished, else wait for the others, until every job is complete."""

    def __init__(self, suite: SuiteCfg, run_dir: Path, url: str, seeds: int):
        self.suite, self.run_dir, self.url = suite, run_dir, url
        self.storage = open_storage(url)
        self.jobs = retrain_jobs(suite, seeds)
        self.studies: dict[str, optuna.Study] = {}  # loaded once: each keeps its sampler's state

    def study(self, name: str) -> optuna.Study:
        if name not in self.studies:
            search = self.suite.search
            sampler = make_sampler(search) if search else None
            pruner = make_pruner(search) if search else None
            self.studies[name] = optuna.load_study(
                study_name=name, storage=self.storage, sampler=sampler, pruner=pruner
            )
        return self.studies[name]

    def run(self) -> None:
        while not self.step():
            time.sleep(min(HEARTBEAT_S, 2))

    def step(self) -> bool:
        """Do one unit of work if one is ready; True once every job is complete."""
        total = self.suite.search.trials if self.suite.search else 0
        for variant in self.suite.searched_variants():
            study = self.study(search_study_name(self.suite, variant))
            fail_lost_trials(study)
            if remaining_trials(study, total) > 0:
                optimize(study, self.suite, self.run_dir / "search", self.url, variant, limit=1)
                return False
        for variant in self.suite.variants:
            settings = self.searched_settings(variant)
            jobs = self.study(jobs_study_name(self.suite, self.run_dir, variant))
            fail_lost_trials(jobs)
            if settings is not None and jobs.get_trials(deepcopy=False, states=(WAITING,)):
                jobs.optimize(JobObjective(self.suite, self.run_dir, self.jobs, settings), n_trials=1)
                print(f"[worker {os.getpid()}] {counts_text(self.counts())}", file=sys.stderr, flush=True)
                return False
        counts = self.counts()
        if counts["done"] < len(self.jobs) and not counts["running"] and not counts["waiting"]:
            raise WorkerError(f"{len(self.jobs) - counts['done']} of {len(self.jobs)} retrain jobs failed for good "
                              "(their errors are printed above); run the same command again to retry them")  # fmt: skip
        return counts["done"] == len(self.jobs)

    def searched_settings(self, variant: str) -> dict[str, Any] | None:
        """The settings ``variant`` is retrained with once its search has finished (None before)."""
        if self.suite.search is None:
            return {}
        searched = variant if self.suite.search.per_variant else self.suite.search.variant
        study = self.study(search_study_name(self.suite, searched))
        trials = study.get_trials(deepcopy=False)
        if sum(t.state in FINISHED for t in trials) < self.suite.search.trials or any(
            t.state == RUNNING for t in trials
        ):
            return None
        return dict(chosen_trial(study).params)

    def counts(self) -> dict[str, int]:
        """Retrain jobs done, running and waiting, over every variant's jobs study."""
        counts = {"done": 0, "running": 0, "waiting": 0}
        for variant in self.suite.variants:
            for trial in self.study(jobs_study_name(self.suite, self.run_dir, variant)).get_trials(deepcopy=False):
                if trial.state == optuna.trial.TrialState.COMPLETE:
                    counts["done"] += 1
                elif trial.state in (RUNNING, WAITING) and "job" in trial.user_attrs:
                    counts["running" if trial.state == RUNNING else "waiting"] += 1
        return counts


def counts_text(counts: dict[str, int]) -> str:
    return f"retrain jobs: {counts['done']} done, {counts['running']} running, {counts['waiting']} waiting"


def status_lines(run_dir: Path, url: str) -> list[str]:
    """What ``unet-bench status RUN`` prints, from any machine: each variant's search trials and
    retrain jobs as the storage holds them (the folder's name and its suite's name the studies')."""
    storage = open_storage(url)
    prefix = f"{run_dir.parent.name}-{run_dir.name}-jobs-"
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
    lines = []
    for name in (n for n in names if n.startswith(prefix)):
        variant = name.removeprefix(prefix)
        parts = []
        for label, study in (("search trials", f"{run_dir.parent.name}-{variant}"), ("retrain jobs", name)):
            if study in names:
                states = [t.state.name.lower() for t in optuna.load_study(study_name=study, storage=storage).trials]
                parts.append(f"{label}: " + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))))
        lines.append(f"{variant}: " + "; ".join(parts))
    if not lines:
        raise UsageError(
            f"{mask_url(url)}: no distributed run {run_dir.name} of suite {run_dir.parent.name} (no study {prefix}*)"
        )
    return lines


def _run_jobs(suite: SuiteCfg, run_dir: Path, url: str, seeds: int) -> None:
    """One worker's job (``bench.workers``): search trials and retrain jobs until none is left."""
    Worker(suite, run_dir, url, seeds).run()


def run_distributed(
    suite: SuiteCfg, run_dir: Path, url: str, seeds: int, workers: int, log: Callable[[str], None],
    threads: int | None = None,
) -> None:  # fmt: skip
    """Prepare the studies, then run ``workers`` processes here (one GPU each, in turn) until
    every search trial and retrain job of the suite is done. A worker that died while the others
    finished its jobs is said, not an error."""
    prepare(suite, run_dir, url, seeds)
    failed = run_workers(functools.partial(_run_jobs, suite, run_dir, url, seeds), workers, threads=threads)
    if failed and Worker(suite, run_dir, url, seeds).counts()["done"] == len(retrain_jobs(suite, seeds)):
        log(f"{', '.join(failed)} stopped; its jobs were retried by the other workers and every job is done")
    elif failed:
        raise WorkerError(f"{len(failed)} of {workers} workers stopped: {', '.join(failed)}; their errors are "
                          "printed above; finished jobs are kept: run the same command again to resume")  # fmt: skip


def join_run(suite: SuiteCfg, results: Path, url: str, seeds: int, workers: int) -> Path:
    """``run --join``: add ``workers`` workers here to the suite's latest run under ``results`` (a
    folder shared with the machine that started it), without its lock: that machine's command
    holds the run and writes the report when every job is done."""
    from bench.run import latest_run, schedule_here

    run_dir = latest_run(results, suite.name)
    if run_dir is None:
        raise UsageError(f"nothing to join under {results / suite.name}: start the run on one machine first")
    suite = schedule_here(suite, lambda line: print(line, file=sys.stderr))
    run_distributed(suite, run_dir, url, seeds, workers, lambda line: print(line, file=sys.stderr))
    return run_dir
