"""Named training budgets and learning curves: rows from real tiny runs, and the report's figure
and budget sentence."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from bench.curves import target_line
from bench.report import build_report
from bench.run import train_stage
from bench.store import read_results
from bench.suite import SuiteCfg, load_suite
from bench.suite_file import SuiteError
from bench.train import at_target, fit
from tests.conftest import assert_user_error, run_cli
from tests.test_train import tiny_setup
from variants import ConfigError

SUITE = Path(__file__).parent / "data" / "tiny-suite.toml"


def tiny_suite(**train: object) -> SuiteCfg:
    """The tiny test suite with one variant and the [train] changes given."""
    suite = load_suite(SUITE)
    return replace(suite, variants=("unet-original",), train=suite.train.with_overrides(train))


def test_every_retrained_run_stores_its_learning_curve_and_the_report_draws_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "results" / "tiny-suite" / "run-1"
    train_stage(tiny_suite(epochs=3), run_dir, {}, seeds=1, log=lambda line: None)
    frame = read_results(run_dir)
    curve = frame[frame["stage"] == "curve"]
    assert sorted(curve["metric"].unique()) == ["train_loss", "val_v_rand"]
    for metric, split in (("val_v_rand", "4"), ("train_loss", "train")):
        rows = curve[curve["metric"] == metric]
        extra = [json.loads(e) for e in rows["extra"]]
        assert [e["epoch"] for e in extra] == [0, 1, 2] and set(rows["split"]) == {split}
        assert [e["step"] for e in extra] == [4, 8, 12], "steps_per_epoch 4 of the tiny suite"
        seconds = [e["seconds"] for e in extra]
        assert 0 < seconds[0] < seconds[1] < seconds[2]
    # the same job's rows: the curve shares the eval rows' identity
    evals = frame[frame["stage"] == "eval"]
    assert set(curve["config_hash"]) == set(evals["config_hash"]) and set(curve["seed"]) == {0}
    assert 0 <= curve.loc[curve["metric"] == "val_v_rand", "value"].max() <= 1
    assert "target_reached" not in set(evals["metric"]), "an equal-steps run has no target"

    report = build_report(run_dir, tmp_path / "report")
    sections = {s.title: s for s in report.sections}
    assert (tmp_path / "report" / "fig" / "learning_curves.png").stat().st_size > 1000
    assert sections["Learning curves"].text.startswith("Validation V_rand and training loss")
    table = sections["Learning curves"].table.set_index("variant")
    assert table.loc["unet-original", "steps"] == 12 and table.loc["unet-original", "runs"] == 1
    budget = sections["Training budget"].text
    assert budget == (
        "Each run: 3 epochs x 4 steps of batch 2 at 92 px tiles (12 steps), AdamW; budget: equal steps. "
        "Learning rate 0.003 for every run."
    )
    assert budget in (tmp_path / "report" / "report.md").read_text()


def test_target_budget_stops_at_the_first_validation_that_reaches_it(tmp_path: Path) -> None:
    """V_rand >= 0 holds at the first validation: the run stops after one epoch of its three, and
    its time and steps to target are those of that validation."""
    config, model, train, val, cfg = tiny_setup(epochs=3, budget="target", target=0.0)
    result = fit(model, config, train, val, cfg)
    assert len(result.history) == 1 and result.stopped_early
    record = at_target(result.history, cfg)
    assert record is not None and record["step"] == cfg.steps_per_epoch and record["elapsed_seconds"] > 0
    seconds = f"{result.history[0]['elapsed_seconds']:.1f} s"
    assert target_line(result.history, cfg) == f"target validation V_rand 0: reached in {seconds}, 4 steps"

    run_dir = tmp_path / "run-1"
    train_stage(tiny_suite(budget="target", target=0.0), run_dir, {}, seeds=1, log=lambda line: None)
    frame = read_results(run_dir)
    values = frame[frame["stage"] == "eval"].set_index("metric")["value"]
    assert values["target_reached"] == 1 and values["steps_to_target"] == 4, "one epoch of 4 steps"
    curve = frame[frame["stage"] == "curve"]
    assert len(curve) == 2, "one epoch: its validation score and its training loss"
    seconds = json.loads(curve["extra"].iloc[0])["seconds"]
    assert values["time_to_target"] == pytest.approx(seconds) and seconds > 0
    report = build_report(run_dir, tmp_path / "report")
    budget = {s.title: s for s in report.sections}["Training budget"]
    assert "budget: time to validation V_rand 0 (the steps are a ceiling)" in budget.text
    assert budget.table.iloc[0]["reached"] == "1 of 1 runs" and budget.table.iloc[0]["steps to target (steps)"] == 4


def test_a_target_never_reached_is_marked_so(tmp_path: Path) -> None:
    run_dir = tmp_path / "run-1"
    train_stage(tiny_suite(epochs=2, budget="target", target=1.5), run_dir, {}, seeds=1, log=lambda line: None)
    frame = read_results(run_dir)
    evals = frame[frame["stage"] == "eval"]
    assert evals.set_index("metric").loc["target_reached", "value"] == 0
    assert not evals["metric"].isin(["time_to_target", "steps_to_target"]).any()
    assert len(frame[(frame["stage"] == "curve") & (frame["metric"] == "train_loss")]) == 2, "ran to its step cap"
    table = {s.title: s for s in build_report(run_dir, tmp_path / "report").sections}["Training budget"].table
    assert table.iloc[0]["reached"] == "0 of 1 runs" and table.iloc[0]["time to target (s)"] == "not reached"
    assert frame["value"].notna().all(), "never reached is no row, not a NaN value"


def test_a_budget_without_its_setting_is_refused_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_minutes") as seconds:
        tiny_setup(epochs=1, budget="seconds")
    assert seconds.value.key == "max_minutes"
    with pytest.raises(ConfigError, match="needs target") as target:
        tiny_setup(epochs=1, budget="target")
    assert target.value.key == "target"
    with pytest.raises(ConfigError, match='only with budget = "target"'):
        tiny_setup(epochs=1, target=0.8)
    tiny_setup(epochs=1, budget="seconds", max_minutes=1.0)  # with its setting it is accepted
    refused = run_cli("train", "--variant", "unet-original", "--data", "synthetic:count=5,size=96,seed=0",
                      "--set", "budget=seconds", "-o", str(tmp_path / "out"))  # fmt: skip
    assert_user_error(refused, "max_minutes", 'budget = "seconds" needs max_minutes')
    assert not (tmp_path / "out").exists(), "refused before anything trains"
    suite = tmp_path / "seconds.toml"
    suite.write_text(SUITE.read_text().replace('[train]\n', '[train]\nbudget = "seconds"\n'))
    with pytest.raises(SuiteError, match=r"key 'max_minutes': budget = \"seconds\" needs max_minutes"):
        load_suite(suite)
