"""Multi-objective studies (quality against costs, Pareto front written out), cost constraints
that prune before training, workers spread over GPUs, and the suite errors around them."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from bench.errors import SearchError
from bench.search import UNTUNED, chosen_trial, run_search
from bench.workers import worker_gpus
from bench.store import read_results
from bench.suite import load_suite
from bench.suite_file import SuiteError
from tests.conftest import TINY_SEARCH
from variants import resolve_config
from variants.registry import count_parameters

COMPLETE, PRUNED = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED

# widths 2, 4 and 8 of the tiny 2-level U-Net: three clearly different sizes and speeds
WIDTHS = '"model.base_width" = { choices = [2, 4, 8] }'


def tiny_suite(tmp_path: Path, search_lines: str, space: str = WIDTHS) -> Path:
    """tiny-search.toml with extra [search] keys and a width-only space (2 epochs: seconds)."""
    text = TINY_SEARCH.read_text()
    head, _ = text.split("[search.space]")
    head = head.replace("epochs = 3", "epochs = 2").replace('pruner = "median"\n', "").replace("trials = 5\n", "")
    path = tmp_path / "suite.toml"
    path.write_text(head + search_lines + "\n\n[search.space]\n" + space + "\n")
    return path


def params_of(width: int) -> int:
    return count_parameters(resolve_config("unet-original", base_width=width, depth=2).build())


def dominates(a: list[float], b: list[float]) -> bool:
    """a better or equal in all of (max quality, min cost, min cost) and better in one."""
    better = [a[0] >= b[0]] + [x <= y for x, y in zip(a[1:], b[1:])]
    strictly = [a[0] > b[0]] + [x < y for x, y in zip(a[1:], b[1:])]
    return all(better) and any(strictly)


def test_multi_objective_study_writes_its_pareto_front(tmp_path: Path) -> None:
    suite = load_suite(
        tiny_suite(tmp_path, 'costs = ["params", "latency_ms"]\npruner = "none"\ntrials = 4\nsampler = "random"')
    )
    study = run_search(suite, tmp_path / "run")
    assert len(study.directions) == 3
    complete = [t for t in study.trials if t.state == COMPLETE]
    assert len(complete) == 4, "no pruning in a multi-objective study: every trial completes"
    rows = read_results(tmp_path / "run")
    # each trial's costs are measured and stored with it; params is the real parameter count
    for t in complete:
        mine = rows[(rows["stage"] == "search") & (rows["trial"] == t.number)]
        assert (
            mine[mine["metric"] == "params"]["value"].item() == params_of(t.params["model.base_width"]) == t.values[1]
        )
        assert mine[mine["metric"] == "latency_ms"]["value"].item() > 0
        assert (mine["metric"] == "epoch_v_rand").sum() == 2, "per-epoch quality is still recorded"
    # the written front is exactly the non-dominated trials (checked by brute force)
    front = rows[rows["stage"] == "search-pareto"]
    on_front = set(front["trial"])
    for t in complete:
        dominated = any(dominates(list(o.values), list(t.values)) for o in complete if o is not t)
        assert (t.number in on_front) == (not dominated), t.number
    for number, group in front.groupby("trial"):
        values = study.trials[number].values
        assert group.set_index("metric")["value"].to_dict() == pytest.approx(
            {"v_rand": values[0], "params": values[1], "latency_ms": values[2]}
        )
    chosen = chosen_trial(study)
    assert chosen.number in on_front and chosen.values[0] == max(t.values[0] for t in complete)

    # the report shows the front (the search folder alone is a valid results tree)
    from bench.report import build_report

    report = build_report(tmp_path / "run", tmp_path / "report")
    section = next(sec for sec in report.sections if sec.title == "Search: Pareto front")
    assert set(section.table["trial"]) == on_front and "search_pareto" in report.figures

    # Optuna's ecosystem opens our storage: optuna-dashboard's API lists the study, its trials
    # and the same front
    studies = dashboard_get(tmp_path / "run" / "study.db", "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [study.study_name]
    detail = dashboard_get(tmp_path / "run" / "study.db", f"/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) == 4
    assert sorted(t["number"] for t in detail["best_trials"]) == sorted(on_front)


def dashboard_get(db: Path, route: str) -> dict:
    """One GET through optuna-dashboard's own WSGI app (what `optuna-dashboard URL` serves)."""
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    environ: dict = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=route, REQUEST_METHOD="GET")
    status: list[str] = []
    body = b"".join(wsgi(f"sqlite:///{db}")(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status == ["200 OK"], (route, status, body[:200])
    return json.loads(body)


def test_constraint_prunes_over_budget_trials_before_they_train(tmp_path: Path) -> None:
    limit = (params_of(4) + params_of(8)) // 2  # widths 2 and 4 fit, width 8 does not
    suite = load_suite(
        tiny_suite(tmp_path, f'trials = 6\nsampler = "random"\npruner = "none"\n[search.constraints]\nparams = {limit}')
    )
    study = run_search(suite, tmp_path / "run")
    rows = read_results(tmp_path / "run")
    widths = {t.number: t.params["model.base_width"] for t in study.trials}
    assert 8 in widths.values() and set(widths.values()) & {2, 4}, "the seeded draw covers both sides of the limit"
    for t in study.trials:
        over = widths[t.number] == 8
        assert t.state == (PRUNED if over else COMPLETE), (t.number, t.state)
        assert (t.user_attrs["constraints"][0] > 0) == over
        epochs = rows[(rows["trial"] == t.number) & (rows["metric"] == "epoch_v_rand")]
        assert epochs.empty == over, "an over-budget trial is stopped before its first epoch"
    assert study.best_trial.params["model.base_width"] in (2, 4)


def test_constraints_reach_the_sampler(tmp_path: Path) -> None:
    """Optuna stores each trial's constraint values where TPE and NSGA-II read them
    (Trial.set_constraint in Optuna 5, constraints_func before)."""
    limit = (params_of(4) + params_of(8)) // 2
    suite = load_suite(
        tiny_suite(tmp_path, f'trials = 3\nsampler = "tpe"\npruner = "none"\n[search.constraints]\nparams = {limit}')
    )
    study = run_search(suite, tmp_path / "run")
    for t in study.trials:
        stored = list(t.constraints.values()) if hasattr(t, "constraints") else t.system_attrs.get("constraints")
        assert stored and stored[0] == pytest.approx(t.user_attrs["constraints"][0])


def test_workers_take_one_gpu_each_in_turn(tmp_path: Path) -> None:
    assert worker_gpus(4, ["0", "1"]) == ["0", "1", "0", "1"]
    assert worker_gpus(2, ["3"]) == ["3", "3"]
    assert worker_gpus(2, []) == [None, None]
    # the real spawn path: each worker sets CUDA_VISIBLE_DEVICES before touching CUDA, and its
    # trials record it (on this CPU machine the names are only passed through)
    suite = load_suite(tiny_suite(tmp_path, 'trials = 4\nsampler = "random"\npruner = "none"'))
    study = run_search(suite, tmp_path / "run", workers=2, gpus=["0", "1"])
    # on SQLite the queued untuned trial runs in this process before the workers start (it
    # cannot lock the trial's row: two workers could both take it); each worker's trials record
    # the worker's GPU
    assert [t.number for t in study.trials if t.user_attrs.get(UNTUNED)] == [0]
    devices = {t.user_attrs["device"] for t in study.trials if not t.user_attrs.get(UNTUNED)}
    # each worker finishes the trial it started when the count is reached: at most one extra
    assert devices == {"0", "1"} and 4 <= len(study.trials) <= 5, (devices, len(study.trials))


@pytest.mark.parametrize(
    ("lines", "key", "message"),
    [
        ('costs = ["latency_ms"]\npruner = "median"', "pruner", "cannot prune a multi-objective study"),
        ('costs = ["speed"]\npruner = "none"', "costs", "unknown cost 'speed'"),
        ('costs = ["params"]\nsampler = "cmaes"', "sampler", "one objective only"),
        ("[search.constraints]\nlatency_ms = -1", "latency_ms", "positive number"),
        ("[search.constraints]\nflops = 3", "flops", "unknown cost 'flops'"),
    ],
)
def test_bad_costs_and_constraints_name_the_file_line_and_key(
    tmp_path: Path, lines: str, key: str, message: str
) -> None:
    path = tiny_suite(tmp_path, lines)
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    text = path.read_text().splitlines()
    line = next(i for i, l in enumerate(text, 1) if l.startswith(key))
    assert f"{path}:{line}" in str(err.value) and message in str(err.value) and key in str(err.value)


def test_validation_and_test_sections_must_not_overlap(tmp_path: Path) -> None:
    path = tmp_path / "overlap.toml"
    path.write_text(TINY_SEARCH.read_text().replace('val_sections = "4"', 'val_sections = "3-4"\ntest_sections = "2-3"'))
    with pytest.raises(SuiteError, match=r"sections \[3\] are both validation and test"):
        load_suite(path)


def test_a_study_with_no_complete_trial_says_so() -> None:
    study = optuna.create_study(study_name="all-failed")

    def broken(trial: optuna.Trial) -> float:
        raise RuntimeError("boom")

    study.optimize(broken, n_trials=2, catch=(RuntimeError,))
    with pytest.raises(SearchError, match="'all-failed' has no complete trial"):
        chosen_trial(study)
