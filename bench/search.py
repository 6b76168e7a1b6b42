"""Optuna-driven search. A trial is: suggest -> config -> ``bench.train.fit`` -> metric.

There is no second training loop: the objective calls ``fit`` with a callback that reports the
validation metric after every epoch and raises ``TrialPruned`` when the pruner says so. Every
finished (or pruned) trial writes its rows through the one result schema. Storage is SQLite in
the run folder by default, or any SQLAlchemy URL (PostgreSQL) that several workers - processes
here or on other machines - share; heartbeats plus ``RetryFailedTrialCallback`` re-queue the
trial of a worker that died.
"""

from __future__ import annotations

import multiprocessing
import sys
import warnings
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

optuna.logging.set_verbosity(optuna.logging.WARNING)  # our Progress line says it shorter

from bench.config import split_settings
from bench.data import load_data, parse_indices, split_by_index
from bench.errors import StorageError
from bench.metrics import HIGHER_IS_BETTER
from bench.runner import default_val_sections, format_sections
from bench.schema import ResultRow, config_hash, make_extra
from bench.store import ResultWriter
from bench.suite import SearchCfg, SuiteCfg
from bench.train import EpochState, fit
from variants import resolve_config

import os

# A worker that stops sending heartbeats for GRACE_S is considered dead and its trial retried.
HEARTBEAT_S = int(os.environ.get("UNETBENCH_HEARTBEAT_S", "5"))
GRACE_S = int(os.environ.get("UNETBENCH_HEARTBEAT_GRACE_S", "20"))


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - unparsable: show nothing that could be secret
        return url.split("@")[-1] if "@" in url else url


def _retry_callback() -> Any:
    """Re-queue a dead worker's trial (the class was renamed in Optuna 4.9)."""
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:
        return {"heartbeat_stale_trial_callback": retry(max_retry=2)}
    return {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Connect (creating tables) before any training, so a bad URL fails in one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                engine_kwargs={"pool_pre_ping": True},
                **_retry_callback(),
            )
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many kinds; all mean "unusable"
        reason = str(exc).splitlines()[0]
        raise StorageError(f"cannot open storage {mask_url(url)}: {reason.replace(url, mask_url(url))}") from None


def make_sampler(cfg: SearchCfg) -> optuna.samplers.BaseSampler:
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    if cfg.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=cfg.seed)
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=cfg.seed)
    return optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.startup_trials)


def make_pruner(cfg: SearchCfg) -> optuna.pruners.BasePruner:
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if cfg.pruner == "sha":
        return optuna.pruners.SuccessiveHalvingPruner()
    if cfg.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=cfg.warmup_epochs)


def suggest(trial: optuna.Trial, cfg: SearchCfg) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for p in cfg.space:
        if p.kind == "categorical":
            values[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        elif p.kind == "int":
            values[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)  # type: ignore[arg-type]
        else:
            values[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)  # type: ignore[arg-type]
    return values


@dataclass
class Objective:
    """Picklable, so worker processes can run it."""

    suite: SuiteCfg
    run_dir: Path

    def __call__(self, trial: optuna.Trial) -> float:
        search = self.suite.search
        assert search is not None
        params = suggest(trial, search)
        model_params, train_params = split_settings(params)
        overrides = {**self.suite.model_overrides(search.variant), **model_params}
        config = resolve_config(search.variant, **overrides)
        cfg = self.suite.train.with_overrides({**train_params, "seed": search.seed}, owner=f"trial {trial.number}")
        data = load_data(self.suite.data)
        val = parse_indices(self.suite.val_sections) if self.suite.val_sections else default_val_sections(len(data))
        train_data, val_data = split_by_index(data, val)
        torch.manual_seed(cfg.seed)
        model = config.build()
        writer = ResultWriter(self.run_dir)
        base = dict(
            run_id=self.run_dir.name, suite=self.suite.name, variant=search.variant,
            config_hash=config_hash(config, cfg), seed=cfg.seed, stage="search", trial=trial.number,
            dataset=data.source, split=format_sections(val),
        )  # fmt: skip
        started = time.perf_counter()
        rows: list[ResultRow] = []  # written once, when the trial ends: a killed trial leaves none

        def report(state: EpochState) -> None:
            value = state.metrics[search.objective]
            trial.report(value, state.epoch)
            rows.append(ResultRow(metric=f"epoch_{search.objective}", value=value, n=state.epoch + 1,
                                  extra=make_extra(epoch=state.epoch, params=params), **base))  # fmt: skip
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {state.epoch}")

        state = "complete"
        try:
            result = fit(model, config, train_data, val_data, cfg, callbacks=(report,))
        except optuna.TrialPruned:
            state = "pruned"
            raise
        except Exception:
            state = "failed"
            raise
        finally:
            extra = make_extra(params=params, state=state)
            rows.append(
                ResultRow(metric="wall_time", value=time.perf_counter() - started, unit="s", extra=extra, **base)
            )
            if state != "complete":
                writer.append(rows)
        best = result.best_metrics
        rows += [ResultRow(metric=k, value=float(v), extra=extra, **base) for k, v in best.items()]
        writer.append(rows)
        return float(best[search.objective])


class Progress:
    """One line per finished trial: done / pruned / failed and the best value so far."""

    def __init__(self, total: int):
        self.total = total

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        states = [t.state for t in study.trials]
        done = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
        pruned = sum(s == optuna.trial.TrialState.PRUNED for s in states)
        failed = sum(s == optuna.trial.TrialState.FAIL for s in states)
        try:
            best = f"{study.best_value:.4f}"
        except ValueError:
            best = "-"
        print(f"trials {done + pruned + failed}/{self.total}: {done} done, {pruned} pruned, {failed} failed; "
              f"best {best}  (trial {trial.number}: {trial.state.name.lower()})", file=sys.stderr, flush=True)  # fmt: skip


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def remaining_trials(study: optuna.Study, total: int) -> int:
    """Trials still to start: failed ones do not count (they are retried), running ones do."""
    counted = FINISHED + (optuna.trial.TrialState.RUNNING,)
    return total - sum(t.state in counted for t in study.trials)


def optimize(study: optuna.Study, suite: SuiteCfg, run_dir: Path) -> None:
    """Run trials in this process until the study holds the suite's number of finished ones."""
    total = suite.search.trials  # type: ignore[union-attr]
    # a trial whose worker died still shows RUNNING until its heartbeat is found stale: fail
    # (and so re-queue) such trials first, or they would be counted as in progress
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    remaining = remaining_trials(study, total)
    if remaining <= 0:
        return
    callbacks = [optuna.study.MaxTrialsCallback(total, states=FINISHED), Progress(total)]
    study.optimize(Objective(suite, run_dir), n_trials=remaining, callbacks=callbacks)


def _worker(url: str, study_name: str, suite: SuiteCfg, run_dir: Path, threads: int) -> None:
    torch.set_num_threads(threads)  # workers share the machine's cores instead of fighting over them
    storage = open_storage(url)
    study = optuna.load_study(
        study_name=study_name, storage=storage, sampler=make_sampler(suite.search), pruner=make_pruner(suite.search)
    )  # type: ignore[arg-type]
    optimize(study, suite, run_dir)


def run_search(suite: SuiteCfg, run_dir: Path, storage_url: str | None = None, study_name: str | None = None,
               workers: int = 1) -> optuna.Study:  # fmt: skip
    """Create or resume the study and run trials in ``workers`` processes until the suite's
    trial count is reached (counting trials other machines ran on the same storage)."""
    search = suite.search
    if search is None:
        raise ValueError(f"{suite.path}: no [search] section")
    run_dir.mkdir(parents=True, exist_ok=True)
    url = storage_url or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    storage = open_storage(url)
    direction = "maximize" if search.objective in HIGHER_IS_BETTER else "minimize"
    name = study_name or f"{suite.name}-{search.variant}"
    study = optuna.create_study(study_name=name, storage=storage, direction=direction, load_if_exists=True,
                                sampler=make_sampler(search), pruner=make_pruner(search))  # fmt: skip
    if workers <= 1:
        optimize(study, suite, run_dir)
    else:
        context = multiprocessing.get_context("spawn")
        threads = max(1, (os.cpu_count() or 1) // workers)
        procs = [context.Process(target=_worker, args=(url, name, suite, run_dir, threads)) for _ in range(workers)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
    return optuna.load_study(study_name=name, storage=storage)
