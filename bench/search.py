"""Optuna-driven search. A trial is: suggest -> config -> ``bench.train.fit`` -> metric.

There is no second training loop: the objective calls ``fit`` with a callback that reports the
validation metric after every epoch and raises ``TrialPruned`` when the pruner says so. Every
finished (or pruned) trial writes its rows through the one result schema. Storage is SQLite in
the run folder by default, or any SQLAlchemy URL (PostgreSQL) that several workers - processes
here or on other machines - share; heartbeats plus ``RetryFailedTrialCallback`` re-queue the
trial of a worker that died.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import optuna
import sqlalchemy.exc

optuna.logging.set_verbosity(optuna.logging.WARNING)  # our Progress line says it shorter

from bench.atomic import atomic_write_bytes
from bench.data import format_sections
from bench.device import resolve_device
from bench.environment import row_environment
from bench.errors import DoesNotFitError, SearchError, StorageError, WorkerError, first_line
from bench.job import TrainJob, job_settings, job_split, run_job, suite_job, validation_sections
from bench.metrics import HIGHER_IS_BETTER
from bench.paths import safe_part
from bench.rows import RowFactory
from bench.runlock import process_alive
from bench.schema import MODEL_MEMORY_METRICS, ResultRow, make_extra
from bench.store import ResultWriter
from bench.suite import COSTS, SearchCfg, SuiteCfg
from bench.suite_file import SuiteError
from bench.train import Callback, EpochState
from bench.workers import run_workers
from variants import resolve_config
from variants.registry import count_parameters

# A worker that stops sending heartbeats for GRACE_S is considered dead and its trial retried.
HEARTBEAT_S = int(os.environ.get("UNETBENCH_HEARTBEAT_S", "5"))
GRACE_S = int(os.environ.get("UNETBENCH_HEARTBEAT_GRACE_S", "20"))


# query keys that carry credentials (password, passwd, pwd, sslpassword, secret, token, api_key, ...)
SECRET_KEY = re.compile(r"pass|pwd|secret|token|key|auth|cred", re.IGNORECASE)
# a credential inside a query value, e.g. odbc_connect=DRIVER={...};UID=u;PWD=secret
SECRET_IN_VALUE = re.compile(r"((?:pass\w*|pwd|secret|token)\s*=\s*)([^;&]*)", re.IGNORECASE)


def mask_url(url: str) -> str:
    """The URL with every credential an SQLAlchemy URL can carry replaced by ***: the password
    of its user part (also one holding ``@``), query keys like ``password``, ``sslpassword`` or
    ``token``, and ``PWD=...`` inside a query value (ODBC strings). A URL that cannot be parsed
    shows its scheme and host only."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - unparsable (ArgumentError, a bad port's ValueError, ...)
        return _scheme_and_host(url)
    # a password holding "@" leaves its tail in the host: the host is what follows the last "@"
    host = parsed.host.rsplit("@", 1)[-1] if parsed.host else parsed.host
    base = parsed.set(host=host, query={}).render_as_string(hide_password=True)
    query = [f"{quote(key)}={_masked_value(key, value)}" for key, values in parsed.query.items()
             for value in ((values,) if isinstance(values, str) else values)]  # fmt: skip
    return base + ("?" + "&".join(query) if query else "")


def _masked_value(key: str, value: str) -> str:
    """A query value as shown: *** for a credential's key, else with any ``PWD=...`` masked."""
    return "***" if SECRET_KEY.search(key) else quote(SECRET_IN_VALUE.sub(r"\1***", value), safe="*=;{}")


def _scheme_and_host(url: str) -> str:
    """``scheme://host`` of a URL make_url cannot read, the host taken after the last ``@``
    before the path; ``scheme://***`` when an ``@`` follows too (the host cannot be told from a
    password); nothing else, since anything else may be secret."""
    scheme, sep, rest = url.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][\w+.-]*", scheme):
        return "(an unreadable URL)"
    authority, after = re.match(r"([^/?#]*)(.*)", rest, re.DOTALL).groups()  # type: ignore[union-attr]
    if "@" in after:
        return f"{scheme}://***"
    host = authority.rsplit("@", 1)[-1]
    return f"{scheme}://{host.partition(']')[0] + ']' if host.startswith('[') else host.split(':')[0]}"


def _masked_reason(exc: BaseException, url: str) -> str:
    """An error's first line (its type when it has none), with the URL masked and any credential
    of it that a driver repeats on its own (decoded, say) replaced by ***."""
    text = (first_line(exc) or type(exc).__name__).replace(url, mask_url(url))
    for secret in sorted(_credentials(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def _credentials(url: str) -> set[str]:
    """The credentials ``mask_url`` hides, as the URL spells them and decoded."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - unparsable: the URL itself is all that could be repeated
        return set()
    spilled = (parsed.host or "").rpartition("@")[0]  # the tail of a password that holds "@"
    found = {f"{parsed.password or ''}@{spilled}" if spilled else parsed.password or ""}
    for key, values in parsed.query.items():
        for value in (values,) if isinstance(values, str) else values:
            found |= {value} if SECRET_KEY.search(key) else {m.group(2) for m in SECRET_IN_VALUE.finditer(value)}
    found |= {quote(secret, safe="") for secret in found}
    return {secret for secret in found if secret}


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
    except sqlalchemy.exc.DatabaseError as exc:
        if url.startswith("sqlite:///"):  # a study file cut short or overwritten, not a server's refusal
            raise StorageError(
                f"{url.removeprefix('sqlite:///')}: the study file is damaged ({_masked_reason(exc, url)}); nothing was "
                "run and every rows file beside it is kept: restore the file, or search into a new folder"
            ) from None
        raise StorageError(f"cannot open storage {mask_url(url)}: {_masked_reason(exc, url)}") from None
    except Exception as exc:  # noqa: BLE001 - sqlalchemy raises many kinds; all mean "unusable"
        raise StorageError(f"cannot open storage {mask_url(url)}: {_masked_reason(exc, url)}") from None


# Optuna 5 takes constraints from the trial (Trial.set_constraint); older ones from the sampler
SET_CONSTRAINT = hasattr(optuna.trial.Trial, "set_constraint")


def constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Optuna < 5's constraints_func: cost - limit per constraint (<= 0 is feasible), stored by
    the objective before training. A trial that failed before measuring counts as infeasible."""
    return trial.user_attrs.get("constraints", [1.0])


def make_sampler(cfg: SearchCfg) -> optuna.samplers.BaseSampler:
    # samplers that model constraints learn where the infeasible region is
    constraints: dict[str, Any] = (
        {"constraints_func": constraint_values} if cfg.constraints and not SET_CONSTRAINT else {}
    )
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=cfg.seed)
    if cfg.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=cfg.seed)
    if cfg.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=cfg.seed, **constraints)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constraints_func
        return optuna.samplers.TPESampler(seed=cfg.seed, n_startup_trials=cfg.startup_trials, **constraints)


def make_pruner(cfg: SearchCfg) -> optuna.pruners.BasePruner:
    if cfg.multi_objective:
        return optuna.pruners.NopPruner()  # Optuna cannot prune multi-objective studies
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


def trial_costs(names: set[str], job: TrainJob) -> dict[str, float]:
    """What a trial's model costs, measured before it trains (so an over-budget one costs
    seconds, not a training run): parameters, forward GFLOP per image (counted), and latency
    (median) and peak memory of batch-1 inference at the training tile on this machine."""
    from bench.profile import ProfileCfg, measure, step_flops

    config, cfg = job.model_config(), job.train
    costs: dict[str, float] = {}
    if "params" in names:
        costs["params"] = float(count_parameters(config.build()))
    if "gflops" in names:
        costs["gflops"] = step_flops(config, config.valid_input_size(cfg.tile), 1, "infer") / 1e9
    if names & {"latency_ms", "peak_memory_mib"}:
        m = measure(ProfileCfg(job.variant, input_size=cfg.tile, batch_size=1, warmup=1, min_reps=3, max_reps=20,
                               max_seconds=2.0, device=cfg.device, overrides=dict(job.overrides)))  # fmt: skip
        if m.oom:
            raise DoesNotFitError(f"the trial's model does not fit for inference at tile {cfg.tile}: {m.oom}")
        summary = m.summary()
        costs["latency_ms"] = summary["latency_p50"][0]
        costs["peak_memory_mib"] = next(summary[name][0] for name in MODEL_MEMORY_METRICS if name in summary)
    return {name: costs[name] for name in names}


def search_run_id(run_dir: Path) -> str:
    """The run a search's rows belong to: its folder, or the suite run whose ``search`` folder it is."""
    return run_dir.parent.name if run_dir.name == "search" else run_dir.name


def constrain(trial: optuna.Trial, search: SearchCfg, costs: dict[str, float]) -> list[str]:
    """Record each constraint's excess on the trial (<= 0 is feasible) and return the broken
    ones as text; a trial that breaks one is pruned before it trains."""
    over = {k: costs[k] - limit for k, limit in search.constraints.items()}
    trial.set_user_attr("constraints", list(over.values()))
    if SET_CONSTRAINT:
        for name, excess in over.items():
            trial.set_constraint(name, excess)
    return [f"{k} {costs[k]:.4g} > {search.constraints[k]:.4g}" for k, excess in over.items() if excess > 0]


def trial_part(trial: optuna.Trial) -> str:
    """The rows part of a trial, ``search-STUDY-trialN``: a trial that runs again rewrites its
    part instead of adding a second copy of its rows."""
    return f"search-{trial.study.study_name}-trial{trial.number}"


def stored_trials(run_dir: Path, study_name: str) -> set[int]:
    """The trial numbers of ``study_name`` whose rows parts (``trial_part``) are in ``run_dir``."""
    pattern = re.compile(rf"rows-search-{re.escape(study_name)}-trial(\d+)\.csv")
    return {int(m.group(1)) for p in run_dir.glob("rows-search-*.csv") if (m := pattern.fullmatch(p.name))}


STORAGE_RECORD = "storage.json"  # the storage a run folder's search lives in, its credentials masked
DEFAULT_STORAGE = "study.db in the run folder"


def remember_storage(run_dir: Path, url: str | None, check_only: bool) -> None:
    """A run folder's search keeps to one storage: another one on a rerun would hold none of its
    trials and run the whole search again. The first search records the storage (credentials
    masked: never a password on disk); a later one with another storage is refused, naming both."""
    given = mask_url(url) if url else DEFAULT_STORAGE
    record = run_dir / STORAGE_RECORD
    if record.exists():
        try:
            before = str(json.loads(record.read_text())["storage"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"{record}: damaged ({type(exc).__name__}); it names the run's storage") from None
        if before != given:
            raise StorageError(
                f"{run_dir} holds a search in {before}, not {given}: give its storage again (or search into a new "
                "folder); nothing was run"
            )
    elif not check_only:
        atomic_write_bytes(record, json.dumps({"storage": given}).encode())


def check_stored_trials(study: optuna.Study, run_dir: Path) -> None:
    """Rows of trials the study does not hold mean its storage was emptied or replaced: running
    it again would train those trials a second time, so stop before any training."""
    lost = sorted(stored_trials(run_dir, study.study_name) - {t.number for t in study.trials})
    if lost:
        raise SearchError(
            f"{run_dir} holds the rows of {len(lost)} trials of study {study.study_name!r} (trial "
            f"{', '.join(str(n) for n in lost[:5])}{', ...' if len(lost) > 5 else ''}) "
            "that its storage no longer has (emptied or replaced?); nothing was run: restore the storage, or "
            "search into a new folder"
        )


@dataclass
class Objective:
    """Picklable, so worker processes can run it. A trial is one ``TrainJob`` of the searched
    variant with the suggested settings, run by ``bench.job.run_job`` like every other job."""

    suite: SuiteCfg
    run_dir: Path
    variant: str

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        search = self.suite.search
        assert search is not None
        trial.set_user_attr("device", os.environ.get("CUDA_VISIBLE_DEVICES", ""))
        trial.set_user_attr("worker", f"{socket.gethostname()}-{os.getpid()}")
        params = suggest(trial, search)
        job = suite_job(self.suite, self.variant, params, search.seed, owner=f"trial {trial.number}")
        val = validation_sections(job)
        factory = RowFactory(search_run_id(self.run_dir), self.suite.name, resolve_device(job.train.device)).for_job(
            job, "search", format_sections(val), trial=trial.number
        )
        ResultWriter(self.run_dir).save_config(job.key(), job_settings(self.suite, job, val))
        started = time.perf_counter()
        rows: list[ResultRow] = []  # written once, when the trial ends: a killed trial leaves none
        costs = trial_costs(set(search.costs) | set(search.constraints), job)
        rows += [factory.row(k, v, unit=COSTS[k], extra=make_extra(params=params)) for k, v in costs.items()]
        state = "complete"
        try:
            if broken := constrain(trial, search, costs):
                raise optuna.TrialPruned(f"over budget before training: {', '.join(broken)}")
            result = run_job(job, callbacks=(self.reporter(trial, factory, params, rows),), final_eval=False)
        except optuna.TrialPruned:
            state = "pruned"
            raise
        except Exception:
            state = "failed"
            raise
        finally:
            extra = make_extra(params=params, state=state, untuned=bool(trial.user_attrs.get(UNTUNED)),
                               env=row_environment(factory.device))  # fmt: skip
            rows.append(factory.row("wall_time", time.perf_counter() - started, unit="s", extra=extra))
            if state != "complete":
                ResultWriter(self.run_dir).append(rows, name=trial_part(trial))
        best = result.fit.best_metrics
        rows += [factory.row(k, v, extra=extra) for k, v in best.items()]
        ResultWriter(self.run_dir).append(rows, name=trial_part(trial))
        quality = float(best[search.objective])
        return (quality, *(costs[k] for k in search.costs)) if search.multi_objective else quality

    def reporter(
        self, trial: optuna.Trial, factory: RowFactory, params: dict[str, Any], rows: list[ResultRow]
    ) -> Callback:
        """The epoch callback: a learning-curve row, and Optuna's pruning decision."""
        search = self.suite.search
        assert search is not None

        def report(state: EpochState) -> None:
            value = state.metrics[search.objective]
            rows.append(factory.row(f"epoch_{search.objective}", value, n=state.epoch + 1,
                                    extra=make_extra(epoch=state.epoch, params=params)))  # fmt: skip
            if search.multi_objective:
                return  # Optuna takes no intermediate values from multi-objective trials
            trial.report(value, state.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {state.epoch}")

        return report


class Progress:
    """One line per finished trial: done / pruned / failed and the best value so far."""

    def __init__(self, total: int):
        self.total = total

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        states = [t.state for t in study.trials]
        done = sum(s == optuna.trial.TrialState.COMPLETE for s in states)
        pruned = sum(s == optuna.trial.TrialState.PRUNED for s in states)
        failed = sum(s == optuna.trial.TrialState.FAIL for s in states)
        if len(study.directions) > 1:
            best = f"{len(study.best_trials)} on the Pareto front"
        else:
            try:
                best = f"best {study.best_value:.4f}"
            except ValueError:
                best = "best -"
        print(f"trials {done + pruned + failed}/{self.total}: {done} done, {pruned} pruned, {failed} failed; "
              f"{best}  (trial {trial.number}: {trial.state.name.lower()})", file=sys.stderr, flush=True)  # fmt: skip


FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
STORAGE_FAILURES: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.SQLAlchemyError,  # a lost connection surfaces as OperationalError
    optuna.exceptions.StorageInternalError,  # Optuna's wrapper around failed commits
)


def remaining_trials(study: optuna.Study, total: int) -> int:
    """Trials still to start: failed ones do not count (they are retried), running ones do."""
    counted = FINISHED + (optuna.trial.TrialState.RUNNING,)
    return total - sum(t.state in counted for t in study.trials)


def _storage_failure(exc: BaseException | None) -> BaseException | None:
    """The storage error behind ``exc``, if any: Optuna can mask a lost connection while it
    records a trial's end with an error of its own (an assertion), and wraps the driver's error
    in a generic one, so follow the chain and prefer the driver's own words."""
    found: BaseException | None = None
    for _ in range(20):
        if exc is None:
            break
        if isinstance(exc, sqlalchemy.exc.SQLAlchemyError):
            return exc
        if isinstance(exc, STORAGE_FAILURES) and found is None:
            found = exc
        exc = exc.__cause__ or exc.__context__
    return found


@contextlib.contextmanager
def storage_loss_as_error(url: str, run_dir: Path) -> Iterator[None]:
    """A storage that goes away mid-search (server down, network gone) ends the search with one
    line instead of a traceback; Optuna's heartbeat thread, which notices first, stays quiet."""
    previous = threading.excepthook

    def quiet_heartbeat(args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.exc_value, STORAGE_FAILURES):
            previous(args)

    threading.excepthook = quiet_heartbeat
    try:
        yield
    except Exception as raised:
        exc = _storage_failure(raised)
        if exc is None:
            raise
        raise StorageError(
            f"lost the storage {mask_url(url)} during the search ({_masked_reason(exc, url)}); finished "
            f"trials are kept in it and their rows in {run_dir}: run the same command again to resume"
        ) from None
    finally:
        threading.excepthook = previous


def optimize(
    study: optuna.Study, suite: SuiteCfg, run_dir: Path, url: str, variant: str, limit: int | None = None
) -> None:
    """Run trials in this process until the study holds the suite's number of finished ones (or
    ``limit`` trials have run)."""
    total = suite.search.trials  # type: ignore[union-attr]
    # a trial whose worker died still shows RUNNING: fail (and so re-queue) such trials first,
    # or they would be counted as in progress
    fail_lost_trials(study)
    remaining = remaining_trials(study, total)
    if limit is not None:
        remaining = min(remaining, limit)
    if remaining <= 0:
        return
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        optuna.study.MaxTrialsCallback(total, states=FINISHED),
        Progress(total),
    ]
    with storage_loss_as_error(url, run_dir):
        study.optimize(Objective(suite, run_dir, variant), n_trials=remaining, callbacks=callbacks)


def fail_lost_trials(study: optuna.Study) -> None:
    """Fail, and re-queue with the same parameters, every RUNNING trial whose worker is gone: at
    once when its process on this machine is (its ``worker`` attribute names host and PID), else
    when its heartbeat is stale (GRACE_S, a worker on another machine). By heartbeat alone, a
    search resumed seconds after a kill would count the dead trial as in progress and end with
    fewer finished trials than the suite asked for."""
    host = socket.gethostname()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = next(iter(_retry_callback().values()))
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            owner, _, pid = str(trial.user_attrs.get("worker", "")).rpartition("-")
            if owner == host and pid.isdigit() and not process_alive(int(pid)):
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
                retry(study, study.trials[trial.number])
        optuna.storages.fail_stale_trials(study)


def wait_for_running(study: optuna.Study, suite: SuiteCfg, run_dir: Path, url: str, variant: str) -> None:
    """While other processes (another machine's workers) still run trials of the study, wait, and
    run here any of theirs that die (failed by owner or heartbeat, then re-queued): the search
    never hands on its best of fewer finished trials than the suite asked for."""
    while study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        time.sleep(HEARTBEAT_S)
        optimize(study, suite, run_dir, url, variant)


def _search_trials(url: str, study_name: str, suite: SuiteCfg, run_dir: Path, variant: str) -> None:
    """One search worker's job (``bench.workers``): the study's trials until none is left."""
    search = suite.search
    assert search is not None  # a suite reaches the workers only with a [search] section
    study = optuna.load_study(
        study_name=study_name, storage=open_storage(url), sampler=make_sampler(search), pruner=make_pruner(search)
    )
    optimize(study, suite, run_dir, url, variant)


def directions(search: SearchCfg) -> list[optuna.study.StudyDirection]:
    maximize, minimize = optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE
    return [maximize if search.objective in HIGHER_IS_BETTER else minimize] + [minimize] * len(search.costs)


def chosen_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The trial whose configuration the suite retrains: the best one, or, in a multi-objective
    study, the best-quality trial on the Pareto front (the cost-quality trade-off is in the
    front's rows for the user to read)."""
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise SearchError(
            f"study {study.study_name!r} has no complete trial to choose from (see the failed trials' errors above)"
        )
    if not len(study.directions) > 1:
        return study.best_trial
    sign = 1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else -1
    return max(study.best_trials, key=lambda t: sign * t.values[0])


def study_rows(suite: SuiteCfg, run_id: str, stage: str, variant: str) -> RowFactory:
    """The factory of rows that describe a variant's whole study (its Pareto front, its importances)."""
    search = suite.search
    assert search is not None
    device = resolve_device(suite.train.device)
    return RowFactory(run_id, suite.name, device).bind(
        variant=variant, seed=search.seed, stage=stage, dataset=str(suite.data)
    )


def pareto_rows(study: optuna.Study, suite: SuiteCfg, run_id: str, variant: str) -> list[ResultRow]:
    """The Pareto front of a multi-objective study as rows (stage ``search-pareto``): each front
    trial's objective and costs, with its parameters."""
    assert suite.search is not None
    names = (suite.search.objective, *suite.search.costs)
    factory = study_rows(suite, run_id, "search-pareto", variant)
    return [
        factory.row(name, value, trial=t.number, unit=COSTS.get(name, ""), extra=make_extra(params=t.params))
        for t in sorted(study.best_trials, key=lambda t: t.number)
        for name, value in zip(names, t.values)
    ]


UNTUNED = "untuned"  # user attribute of the trial that trains the suite's own settings


def untuned_params(suite: SuiteCfg, variant: str) -> dict[str, Any] | None:
    """The searched parameters as the suite sets them when nothing is tuned, or None when one of
    them lies outside the space (then no trial can stand for "untuned")."""
    search = suite.search
    assert search is not None
    config = resolve_config(suite.network(variant), **suite.model_overrides(variant))
    train = suite.train_for(variant)
    values: dict[str, Any] = {}
    for p in search.space:
        field = p.name.removeprefix("model.").removeprefix("train.")
        value = getattr(config if p.name.startswith("model.") else train, field, None)
        inside = value in p.choices if p.kind == "categorical" else value is not None and p.low <= value <= p.high
        if not inside:
            return None
        values[p.name] = value
    return values


def open_study(
    suite: SuiteCfg, storage: optuna.storages.RDBStorage, name: str, variant: str, run_dir: Path
) -> optuna.Study:
    """Create or load a variant's study. A new one starts with the suite's own settings as its
    first trial (marked ``untuned``), so the report can set the tuned result against it."""
    search = suite.search
    assert search is not None
    study = optuna.create_study(study_name=name, storage=storage, directions=directions(search), load_if_exists=True,
                                sampler=make_sampler(search), pruner=make_pruner(search))  # fmt: skip
    check_stored_trials(study, run_dir)
    defaults = untuned_params(suite, variant)
    if not study.trials and defaults is not None:
        study.enqueue_trial(defaults, user_attrs={UNTUNED: True})
    return study


def run_search(suite: SuiteCfg, run_dir: Path, storage_url: str | None = None, study_name: str | None = None,
               workers: int = 1, gpus: list[str] | None = None, variant: str | None = None) -> optuna.Study:  # fmt: skip
    """Create or resume ``variant``'s study (default: the suite's first searched variant) and
    run trials in ``workers`` processes until the suite's trial count is reached (counting
    trials other machines ran on the same storage). Workers take the GPUs in ``gpus`` (default:
    every visible one) one each, in turn. A multi-objective study's Pareto front is written as
    the ``search-pareto-VARIANT`` rows part."""
    search = suite.search
    if search is None:
        raise SuiteError(f"{suite.path}: no [search] section")
    variant = variant or suite.searched_variants()[0]
    job_split(suite_job(suite, variant, {}, search.seed, owner="[train]"))  # bad data fails before any write
    # the study's name is in its trials' rows parts
    name = safe_part(f"{suite.name}-{variant}" if study_name is None else study_name, "study name")
    run_dir.mkdir(parents=True, exist_ok=True)
    remember_storage(run_dir, storage_url, check_only=True)
    url = storage_url or f"sqlite:///{(run_dir / 'study.db').resolve()}"
    storage = open_storage(url)
    remember_storage(run_dir, storage_url, check_only=False)  # a storage that opens: a typo is not remembered
    study = open_study(suite, storage, name, variant, run_dir)
    if workers <= 1:
        optimize(study, suite, run_dir, url, variant)
    else:
        if url.startswith("sqlite"):  # Optuna issue #4002: SQLite cannot lock a queued trial's row,
            # so two workers could both take the untuned one and both tell it; it runs here first
            waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
            optimize(study, suite, run_dir, url, variant, limit=len(waiting))
        failed = run_workers(functools.partial(_search_trials, url, name, suite, run_dir, variant), workers, gpus)
        if failed:
            raise WorkerError(
                f"{len(failed)} of {workers} search workers stopped: {', '.join(failed)}; their errors are "
                "printed above; finished trials are kept: run the same command again to resume"
            )
    wait_for_running(study, suite, run_dir, url, variant)
    study = optuna.load_study(study_name=name, storage=storage)
    if search.multi_objective and study.best_trials:
        rows = pareto_rows(study, suite, search_run_id(run_dir), variant)
        ResultWriter(run_dir).append(rows, name=f"search-pareto-{variant}")
    return study
