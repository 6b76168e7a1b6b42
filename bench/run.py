"""``unet-bench run SUITE``: search -> retrain the best config with several seeds -> held-out
evaluation -> profiling -> report, as one resumable pipeline.

Every stage writes its rows as a named part (``rows-<stage>.csv``, atomic); a part that exists
is a stage that finished, so ``--resume`` skips it, and rewriting a part replaces it instead of
adding rows: a killed run resumes with no finished work redone and no duplicate rows. The
search resumes through its Optuna storage in the run folder.
"""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import optuna
import torch

from bench.profile import ProfileCfg, measure
from bench.progress import format_duration
from bench.runner import train_variant
from bench.schema import ResultRow, config_hash, make_extra
from bench.config import split_settings
from bench.search import chosen_trial, run_search
from bench.store import ResultWriter, read_results, stage_done
from bench.suite import SuiteCfg
from bench.data import parse_indices
from bench.metrics import ROW_METRICS
from variants import resolve_config


def latest_run(results: Path, suite: str) -> Path | None:
    runs = sorted(p for p in (results / suite).glob("*") if p.is_dir())
    return runs[-1] if runs else None


@dataclass
class SuiteRun:
    run_dir: Path
    report_dir: Path
    summary: list[dict[str, object]]


def run_suite(
    suite: SuiteCfg,
    results: Path,
    reports: Path,
    resume: bool = False,
    seeds: int | None = None,
    storage: str | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> SuiteRun:
    run_dir = latest_run(results, suite.name) if resume else None
    if resume and run_dir is None:
        log(f"nothing to resume under {results / suite.name}; starting a new run")
    if run_dir is None:
        run_dir = results / suite.name / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    scaled = suite.cpu_train is not None and not torch.cuda.is_available()
    if scaled:
        suite = replace(suite, train=suite.cpu_train)
        log(f"no GPU: running the suite's scaled-down [cpu] schedule ({suite.train.epochs} epochs x "
            f"{suite.train.steps_per_epoch} steps), not the full one")  # fmt: skip
    writer = ResultWriter(run_dir)
    started = time.perf_counter()
    log(f"run {run_dir} ({suite.name}: {len(suite.variants)} variants)")

    # 1. search
    model_best: dict[str, object] = {}
    train_best: dict[str, object] = {}
    if suite.search is not None:
        log(f"[1/4 search] {suite.search.trials} trials of {suite.search.variant}, {suite.search.pruner} pruning")
        study = run_search(suite, run_dir / "search", storage)
        best = chosen_trial(study)
        model_best, train_best = split_settings(best.params)
        front = f" (Pareto front of {len(study.best_trials)})" if suite.search.multi_objective else ""
        log(f"[1/4 search] best {suite.search.objective} {best.values[0]:.4f} with {best.params}{front}")
        writer.append(importance_rows(study, suite, run_dir.name), name="search-importances")

    # 2. + 3. retrain every variant with the best settings and several seeds; held-out scores
    cfg = suite.train.with_overrides(train_best, owner="best trial")
    n_seeds = seeds or suite.seeds
    jobs = [(v, s) for v in suite.variants for s in range(n_seeds)]
    val = parse_indices(suite.val_sections) if suite.val_sections else None
    test = parse_indices(suite.test_sections) if suite.test_sections else ()
    for number, (variant, seed) in enumerate(jobs, start=1):
        stage = f"eval-{variant}-seed{seed}"
        if stage_done(run_dir, stage):
            log(f"[2/4 train+eval {number}/{len(jobs)}] {variant} seed {seed}: done before, skipped")
            continue
        overrides = {**suite.model_overrides(variant), **model_best}
        t0 = time.perf_counter()
        result = train_variant(variant, suite.data, val, replace(cfg, seed=seed), None, overrides, test_sections=test)
        config = resolve_config(variant, **overrides)
        rows = [
            ResultRow(
                run_id=run_dir.name,
                suite=suite.name,
                variant=variant,
                config_hash=config_hash(config, cfg),
                seed=seed,
                stage="eval",
                metric=metric,
                value=float(result.final[metric]),
                dataset=suite.data,
                split=result.split,
                extra=make_extra(train_seconds=result.fit.train_seconds, overrides=overrides, best_trial=train_best),
                **_identity(),
            )
            for metric in ROW_METRICS
            if metric in result.final
        ]
        writer.append(rows, name=stage)
        log(f"[2/4 train+eval {number}/{len(jobs)}] {variant} seed {seed}: V_rand {result.final['v_rand']:.4f}, "
            f"pixel error {result.final['pixel_error']:.4f} ({format_duration(time.perf_counter() - t0)})")  # fmt: skip

    # 4. profile each variant at the suite's tile on this machine
    for number, variant in enumerate(suite.variants, start=1):
        stage = f"profile-{variant}"
        if stage_done(run_dir, stage):
            continue
        m = measure(ProfileCfg(variant, input_size=cfg.tile, batch_size=cfg.batch_size, warmup=1, min_reps=3,
                               max_reps=20, max_seconds=3.0,
                               overrides={**suite.model_overrides(variant), **model_best}))  # fmt: skip
        writer.append(m.rows(run_dir.name, suite=suite.name), name=stage)
        log(f"[3/4 profile {number}/{len(suite.variants)}] {variant}: {m.summary()['throughput'][0]:.1f} img/s")

    from bench.report import build_report

    report_dir = reports / suite.name
    title = f"unetbench: {suite.name} suite" + (" (CPU: scaled-down schedule)" if scaled else "")
    build_report(run_dir, report_dir, title=title)
    log(f"[4/4 report] {report_dir / 'report.html'} ({format_duration(time.perf_counter() - started)} in all)")
    return SuiteRun(run_dir, report_dir, summary_rows(run_dir))


def importance_rows(study: optuna.Study, suite: SuiteCfg, run_id: str) -> list[ResultRow]:
    """Parameter importances of the study (Optuna's default evaluator, fANOVA) as rows, so reports
    need no access to the study's storage. Empty when too few trials finished to tell."""
    try:
        # multi-objective: the importances for quality, the first objective
        target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
        importances = optuna.importance.get_param_importances(study, target=target)
    except (RuntimeError, ValueError):
        return []
    return [
        ResultRow(
            run_id=run_id,
            suite=suite.name,
            variant=suite.search.variant,  # type: ignore[union-attr]
            config_hash="",
            seed=0,
            stage="search",
            metric="param_importance",
            value=float(value),
            extra=make_extra(param=name),
            n=len(study.trials),
            **_identity(),
        )
        for name, value in importances.items()
    ]


def _identity() -> dict[str, str]:
    import torch

    from bench.environment import row_identity

    return row_identity(torch.device("cpu"))


def summary_rows(run_dir: Path) -> list[dict[str, object]]:
    """Per variant: V_rand and pixel error (mean over seeds) and inference img/s."""
    frame = read_results(run_dir)
    rows = []
    for variant, group in frame.groupby("variant", sort=False):
        evals = group[group["stage"] == "eval"]
        prof = group[group["metric"].str.endswith("_throughput")]
        v = evals[evals["metric"] == "v_rand"]["value"]
        p = evals[evals["metric"] == "pixel_error"]["value"]
        rows.append({
            "variant": variant, "seeds": int(v.size),
            "V_rand": f"{v.mean():.4f} ± {v.std(ddof=1) if v.size > 1 else 0:.4f}",
            "pixel error": f"{p.mean():.4f}", "img/s": float(prof["value"].max()) if len(prof) else float("nan"),
        })  # fmt: skip
    return rows
