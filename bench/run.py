"""``unet-bench run SUITE``: search -> retrain the best config with several seeds -> held-out
evaluation -> profiling -> report, as one resumable pipeline.

Every stage writes its rows as a named part (``rows-<stage>.csv``, atomic); a part that exists
is a stage that finished, so ``--resume`` skips it, and rewriting a part replaces it instead of
adding rows: a killed run resumes with no finished work redone and no duplicate rows. The
search resumes through its Optuna storage in the run folder.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import optuna
import torch

from bench.atomic import atomic_write_bytes
from bench.curves import curve_rows, target_rows
from bench.data import format_sections
from bench.environment import row_environment
from bench.job import JobResult, TrainJob, job_settings, job_split, run_job, suite_job
from bench.metrics import METRICS, ROW_METRICS
from bench.profile import Measurement, ProfileCfg, measure
from bench.progress import SuiteProgress, format_duration
from bench.rows import RowFactory
from bench.runlock import run_lock
from bench.schema import ResultRow, make_extra
from bench.search import chosen_trial, mask_url, remember_storage, run_search, study_rows
from bench.store import SUMMARY_NAME, ResultWriter, read_results, stage_done
from bench.suite import SuiteCfg


def latest_run(results: Path, suite: str) -> Path | None:
    runs = sorted(p for p in (results / suite).glob("*") if p.is_dir())
    return runs[-1] if runs else None


@dataclass
class SuiteRun:
    run_dir: Path
    report_dir: Path
    summary: list[dict[str, str]]  # the report's Summary table, as text (``bench.report.text_rows``)
    untrained: list[dict[str, str]]  # the runs the report left out of the ranking, and why
    ranking: list[str]  # the rank analysis in words: which differences are resolved (bench.stats)


def run_suite(
    suite: SuiteCfg,
    results: Path,
    reports: Path,
    resume: bool = False,
    seeds: int | None = None,
    storage: str | None = None,
    progress: SuiteProgress | None = None,
    workers: int | None = None,
) -> SuiteRun:
    """The whole pipeline; ``progress`` (default: a bar on a terminal, plain lines elsewhere)
    hears every stage line and counts every finished unit of work. ``workers`` (None: all in
    this process) runs the search trials and retrain jobs in that many processes claiming them
    through ``storage``, which other machines can join (``bench.distributed``); then the stages
    here find them done."""
    progress = progress or SuiteProgress(work_units(suite, seeds or suite.seeds))
    try:
        return run_stages(suite, results, reports, resume, seeds, storage, progress, workers)
    finally:
        progress.close()


def work_units(suite: SuiteCfg, seeds: int) -> int:
    """Search trials, retrained runs and profiles: what the progress bar counts."""
    searched = len(suite.searched_variants()) * suite.search.trials if suite.search is not None else 0
    return searched + len(suite.variants) * seeds * (suite.folds or 1) + len(suite.variants)


def run_stages(
    suite: SuiteCfg, results: Path, reports: Path, resume: bool, seeds: int | None, storage: str | None,
    progress: SuiteProgress, workers: int | None = None,
) -> SuiteRun:  # fmt: skip
    log = progress.log
    if suite.variants:  # data the suite cannot split fails now, before the run folder is made
        job_split(suite_job(suite, suite.variants[0], {}, 0, owner="[train]"))
    run_dir = latest_run(results, suite.name) if resume else None
    if resume and run_dir is None:
        log(f"nothing to resume under {results / suite.name}; starting a new run")
    if run_dir is None:
        run_dir = results / suite.name / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    elif suite.search is not None:  # another storage than the run's is refused before anything is said or run
        remember_storage(run_dir / "search", storage, check_only=True)
    with run_lock(run_dir):  # a second `run --resume` of the folder stops here instead of training the same stages
        return locked_stages(suite, run_dir, reports, seeds, storage, progress, workers)


def locked_stages(
    suite: SuiteCfg, run_dir: Path, reports: Path, seeds: int | None, storage: str | None, progress: SuiteProgress,
    workers: int | None,
) -> SuiteRun:  # fmt: skip
    """Every stage of a run whose folder this process holds."""
    log = progress.log
    suite = schedule_here(suite, log)
    started = time.perf_counter()
    log(f"run {run_dir} ({suite.name}: {len(suite.variants)} variants)")
    if workers is not None and storage is not None:
        from bench.distributed import run_distributed

        log(f"{workers} workers claim the search trials and retrain jobs through {mask_url(storage)}")
        run_distributed(suite, run_dir, storage, seeds or suite.seeds, workers, log)
    best = search_stage(suite, run_dir, storage, log, progress.advance)
    train_stage(suite, run_dir, best, seeds or suite.seeds, log, progress.advance)
    profile_stage(suite, run_dir, best, log, progress.advance)

    from bench.report import ReportInputs, build_report, text_rows
    from bench.stats import ranking_lines, survivor_caveat

    report_dir = reports / suite.name
    report = build_report(run_dir, report_dir, baseline=suite.baseline)  # the title says where it trained
    # the report's Summary as data, one row per variant, like timm's --results-file
    atomic_write_bytes(run_dir / SUMMARY_NAME, report.summary.to_csv(index=False).encode())
    log(f"[4/4 report] {report_dir / 'report.html'} ({format_duration(time.perf_counter() - started)} in all)")
    frame = read_results(run_dir)
    caveat = survivor_caveat(frame)
    ranking = ranking_lines(ReportInputs.of(frame).ranked, suite.baseline) + ([caveat] if caveat else [])
    return SuiteRun(run_dir, report_dir, text_rows(report.summary), text_rows(report.untrained), ranking)


def schedule_here(suite: SuiteCfg, log: Callable[[str], None]) -> SuiteCfg:
    """The suite with the schedule this machine runs: its [cpu] one without a GPU (said in the log)."""
    if suite.cpu_train is None or torch.cuda.is_available():
        return suite
    suite = replace(suite, train=suite.cpu_train)
    log(f"no GPU: running the suite's scaled-down [cpu] schedule ({suite.train.epochs} epochs x "
        f"{suite.train.steps_per_epoch} steps), not the full one")  # fmt: skip
    return suite


def no_progress(units: int) -> None:
    """The ``advance`` of a stage run without a progress bar (tests, library use)."""


def search_stage(
    suite: SuiteCfg, run_dir: Path, storage: str | None, log: Callable[[str], None],
    advance: Callable[[int], None] = no_progress,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Search the suite's space for each searched variant (resuming its study) and return each
    trained variant's settings: its own best trial's with ``per_variant``, else the one
    searched variant's for all."""
    if suite.search is None:
        return {}
    search, chosen = suite.search, {}
    searched = suite.searched_variants()
    for number, variant in enumerate(searched, start=1):
        step = f"[1/4 search {number}/{len(searched)}] {variant}"
        log(f"{step}: {search.trials} trials, {search.sampler} sampler (seed {search.seed}), {search.pruner} pruning")
        study = run_search(suite, run_dir / "search", storage, variant=variant)
        best = chosen_trial(study)
        front = f" (Pareto front of {len(study.best_trials)})" if search.multi_objective else ""
        advance(search.trials)
        log(f"{step}: best {search.objective} {best.values[0]:.4f} with {best.params}{front}")
        rows = importance_rows(study, suite, run_dir.name, variant)
        ResultWriter(run_dir).append(rows, name=f"search-importances-{variant}")
        chosen[variant] = dict(best.params)
    if len(searched) == 1:
        return {variant: chosen[searched[0]] for variant in suite.variants}
    return chosen


def train_stage(
    suite: SuiteCfg, run_dir: Path, best: dict[str, dict[str, Any]], seeds: int, log: Callable[[str], None],
    advance: Callable[[int], None] = no_progress,
) -> None:  # fmt: skip
    """Retrain every variant with its chosen settings and ``seeds`` seeds (under ``[data] folds``,
    on every fold); score each on its held-out (test) sections."""
    jobs = retrain_jobs(suite, seeds)
    for number, job in enumerate(jobs, start=1):
        step = f"[2/4 train+eval {number}/{len(jobs)}] {job}"
        if stage_done(run_dir, job.stage):
            log(f"{step}: done before, skipped")
        else:
            log(f"{step}: {retrain(suite, run_dir, best.get(job.variant, {}), job)}")
        advance(1)


@dataclass(frozen=True)
class Retrain:
    """One unit of the train stage: a variant retrained with one seed (on one fold)."""

    variant: str
    seed: int
    fold: int | None = None

    @property
    def stage(self) -> str:
        """Its rows part (``eval-VARIANT-seedN``, ``-foldF`` added under folds): a resumed run skips it."""
        return f"eval-{self.variant}-seed{self.seed}" + ("" if self.fold is None else f"-fold{self.fold}")

    def __str__(self) -> str:
        return f"{self.variant} seed {self.seed}" + ("" if self.fold is None else f" fold {self.fold}")


def retrain_jobs(suite: SuiteCfg, seeds: int) -> list[Retrain]:
    """The train stage's units in the order the serial run takes them."""
    folds: tuple[int | None, ...] = tuple(range(suite.folds)) if suite.folds else (None,)
    return [Retrain(v, s, f) for v in suite.variants for s in range(seeds) for f in folds]


def retrain(suite: SuiteCfg, run_dir: Path, settings: dict[str, Any], unit: Retrain) -> str:
    """Train and score one unit and write its rows part whole (a retried unit replaces it, so
    its rows are there once); returns its log line's scores."""
    job = suite_job(suite, unit.variant, settings, unit.seed, owner="best trial", fold=unit.fold or 0)
    t0 = time.perf_counter()
    result = run_job(job)
    factory = RowFactory(run_dir.name, suite.name, result.device)
    if unit.fold is not None:  # every row of the run names its fold (extra), its split the fold's test block
        factory = factory.tag(fold=unit.fold, folds=suite.folds)
    writer = ResultWriter(run_dir)
    writer.save_config(job.key(), job_settings(suite, job, result.val_sections))
    writer.append(eval_rows(factory, job, result, settings), name=unit.stage)
    verdict = f"; DID NOT TRAIN: {result.untrained}" if result.untrained else ""
    return f"{headline_scores(result.final)} ({format_duration(time.perf_counter() - t0)}){verdict}"


def headline_scores(final: dict[str, float]) -> str:
    """'V_rand 0.9123, pixel error 0.0712' for membranes; 'DSB AP 0.3897, F1@0.5 0.7262' for instances."""
    keys = ("v_rand", "pixel_error") if "v_rand" in final else ("dsb_ap", "f1_50")
    return ", ".join(f"{METRICS[key].label} {final[key]:.4f}" for key in keys if key in final)


def eval_rows(base: RowFactory, job: TrainJob, result: JobResult, best_trial: dict[str, Any]) -> list[ResultRow]:
    """A retrained run's rows: its scores, whether it trained, its time to target, its learning
    curve and each test image's scores."""
    factory = base.for_job(job, "eval", result.split)
    extra = make_extra(  # env: threads and CPU kernels change a trained model's scores
        train_seconds=result.fit.train_seconds, overrides=job.overrides, best_trial=best_trial,
        env=row_environment(result.device),
    )  # fmt: skip
    rows = [factory.row(m, result.final[m], extra=extra) for m in ROW_METRICS if m in result.final]
    rows.append(trained_row(factory, result))
    rows += target_rows(factory, result.fit.history, job.train)
    rows += curve_rows(factory, result.fit.history, job.train.monitor, format_sections(result.val_sections))
    return rows + image_rows(base, job, result)


def trained_row(factory: RowFactory, result: JobResult) -> ResultRow:
    """``trained`` 1 or 0, with the reason when 0 and the trivial predictions' scores beside it:
    reports rank only runs that trained."""
    trivial = {name: scores.get("v_rand") for name, scores in result.trivial.items()}
    extra = make_extra(reason=result.untrained, trivial_v_rand=trivial,
                       prediction_std=result.final.get("prediction_std"))  # fmt: skip
    return factory.row("trained", 0.0 if result.untrained else 1.0, extra=extra)


def image_rows(factory: RowFactory, job: TrainJob, result: JobResult) -> list[ResultRow]:
    """Stage ``eval-image``: each scored image's metrics at the thresholds the run's stack
    scoring chose, its section in ``split`` ("test 25"), so comparisons can pair variants by
    seed and image (``bench.stats``)."""
    prefix = "test " if job.test_sections else ""
    rows = []
    for section, scores in result.per_image.items():
        image = factory.for_job(job, "eval-image", f"{prefix}{section}")
        rows += [image.row(m, scores[m]) for m in ROW_METRICS if m in scores]
    return rows


def profile_stage(
    suite: SuiteCfg, run_dir: Path, best: dict[str, dict[str, Any]], log: Callable[[str], None],
    advance: Callable[[int], None] = no_progress,
) -> None:  # fmt: skip
    """Profile each variant at the suite's tile and batch on this machine. Arms that differ only
    in training (a weight map, a learning rate, dropout, which inference skips) are one network:
    it is measured once and its rows are written under each arm, so that noise between two
    measurements of one network cannot decide a Pareto front between them."""
    measured: dict[str, Measurement] = {}
    for number, variant in enumerate(suite.variants, start=1):
        stage = f"profile-{variant}"
        if stage_done(run_dir, stage):
            advance(1)
            continue
        job = suite_job(suite, variant, best.get(variant, {}), 0, owner="best trial")
        overrides = {k: v for k, v in job.overrides.items() if k != "dropout"}
        network = json.dumps(
            [job.variant, job.train.tile, job.train.batch_size, overrides], sort_keys=True, default=str
        )
        if network not in measured:
            measured[network] = measure(ProfileCfg(
                job.variant, input_size=job.train.tile, batch_size=job.train.batch_size, warmup=1, min_reps=3,
                max_reps=20, max_seconds=3.0, overrides=overrides))  # fmt: skip
        m = measured[network]
        ResultWriter(run_dir).append(m.rows(run_dir.name, suite=suite.name, shown_as=job.shown_as), name=stage)
        advance(1)
        log(f"[3/4 profile {number}/{len(suite.variants)}] {variant}: {m.summary()['throughput'][0]:.1f} img/s")


# fANOVA fits a random forest to the finished trials: from a handful it reports noise as importance
MIN_IMPORTANCE_TRIALS = 8


def importance_rows(study: optuna.Study, suite: SuiteCfg, run_id: str, variant: str) -> list[ResultRow]:
    """Parameter importances of the study (Optuna's default evaluator, fANOVA) as rows, so reports
    need no access to the study's storage. Empty when fewer than ``MIN_IMPORTANCE_TRIALS`` finished."""
    if sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) < MIN_IMPORTANCE_TRIALS:
        return []
    try:
        # multi-objective: the importances for quality, the first objective
        target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
        importances = optuna.importance.get_param_importances(study, target=target)
    except (RuntimeError, ValueError):
        return []
    factory = study_rows(suite, run_id, "search", variant)
    return [
        factory.row("param_importance", value, extra=make_extra(param=name), n=len(study.trials))
        for name, value in importances.items()
    ]
