"""K-fold cross-validation: a suite trains every fold, its rows name the fold, and comparisons
pair runs by (seed, fold) with images paired within a run."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from bench import aggregate, stats
from bench.report import ReportInputs, build_report
from bench.schema import ResultRow, make_extra
from bench.store import ResultWriter, read_configs, read_results

TINY_SUITE = Path(__file__).parent / "data" / "tiny-suite.toml"
BLOCKS = [[0, 1], [2, 3], [4, 5]]  # 6 images in 3 folds


def fold_of(extra: str) -> int:
    return json.loads(extra)["fold"]


def test_a_cross_validated_suite_trains_every_fold_and_names_it_in_its_rows(tmp_path: Path) -> None:
    from bench.run import train_stage
    from bench.suite import load_suite

    path = tmp_path / "folds.toml"
    path.write_text(
        TINY_SUITE.read_text().replace('count = 5\nsize = 96\nval_sections = "4"', "count = 6\nsize = 96\nfolds = 3")
    )
    suite = load_suite(path)
    suite = replace(suite, train=replace(suite.train, epochs=1, steps_per_epoch=2))
    run_dir = tmp_path / "run"
    train_stage(suite, run_dir, {}, seeds=1, log=lambda line: None)

    parts = sorted(p.name for p in run_dir.glob("rows-eval-*.csv"))
    assert parts == sorted(f"rows-eval-{v}-seed0-fold{f}.csv" for v in suite.variants for f in range(3))
    frame = read_results(run_dir)
    assert all(json.loads(e)["folds"] == 3 for e in frame["extra"]), "every row names the folds"
    for stage in ("eval", "eval-image", "curve"):
        rows = frame[frame["stage"] == stage]
        assert sorted({(v, fold_of(e)) for v, e in zip(rows["variant"], rows["extra"])}) == sorted(
            (v, f) for v in suite.variants for f in range(3)), stage  # fmt: skip
    for fold, block in enumerate(BLOCKS):
        mine = frame[[fold_of(e) == fold for e in frame["extra"]]]
        assert set(mine.loc[mine["stage"] == "eval", "split"]) == {f"test {block[0]}-{block[1]}"}
        assert set(mine.loc[mine["stage"] == "eval-image", "split"]) == {f"test {i}" for i in block}
        validation = BLOCKS[(fold + 1) % 3]
        assert set(mine.loc[mine["metric"].str.startswith("val_"), "split"]) == {f"{validation[0]}-{validation[1]}"}
    configs = read_configs(run_dir)
    assert len(configs) == 2 and all(c["folds"][1] == {"val_sections": [4, 5], "test_sections": [2, 3]}
                                     for c in configs.values())  # fmt: skip

    logs: list[str] = []
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.glob("rows-*.csv")}
    train_stage(suite, run_dir, {}, seeds=1, log=logs.append)
    assert len(logs) == 6 and all(line.endswith("done before, skipped") for line in logs), "resume skips each fold"
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.glob("rows-*.csv")} == before

    # the deltas pair resunet's fold f with unet-original's fold f (seed 0 in both)
    v_rand = frame[(frame["stage"] == "eval") & (frame["metric"] == "v_rand")]
    by_run = {(v, fold_of(e)): x for v, e, x in zip(v_rand["variant"], v_rand["extra"], v_rand["value"])}
    deltas = aggregate.ablation_deltas(frame[frame["stage"] == "eval"], "unet-original", "v_rand").set_index("variant")
    expected = np.mean([by_run[("resunet", f)] - by_run[("unet-original", f)] for f in range(3)])
    assert deltas.loc["resunet", "pairs"] == 3 and deltas.loc["resunet", "delta"] == pytest.approx(expected)
    images = frame[(frame["stage"] == "eval-image") & (frame["metric"] == "v_rand")]
    per_image = {(v, s): x for v, s, x in zip(images["variant"], images["split"], images["value"])}
    per_run = [np.mean([per_image[("resunet", f"test {i}")] - per_image[("unet-original", f"test {i}")] for i in block])
               for block in BLOCKS]  # fmt: skip
    hierarchical = stats.hierarchical_deltas(frame, "unet-original", "v_rand").set_index("variant")
    assert (hierarchical.loc["resunet", "runs"], hierarchical.loc["resunet", "images"]) == (3, 6)
    assert hierarchical.loc["resunet", "delta"] == pytest.approx(np.mean(per_run))


COMMON = {"run_id": "r", "suite": "s", "config_hash": "0" * 12, "dataset": "synthetic", "unit": "",
          "timestamp": "2026-01-01T00:00:00+00:00", "host": "h", "git_sha": "abc"}  # fmt: skip
VARIANTS = {"unet-original": 0.0, "unet-bn": 0.03}
UNTRAINED = ("unet-bn", 1, 2)  # variant, seed, fold of the one run that did not train


def fold_scores(seeds: int = 2) -> dict[tuple[str, int, int, int], float]:
    """V_rand per (variant, seed, fold, image): a variant offset, a per-run shift, per-image noise."""
    rng = np.random.default_rng(1)
    values = {}
    for v, offset in VARIANTS.items():
        for s in range(seeds):
            for f, block in enumerate(BLOCKS):
                shift = rng.normal(0, 0.01)
                values.update({(v, s, f, i): 0.8 + offset + shift + rng.normal(0, 0.02) for i in block})
    return values


def fold_rows(values: dict[tuple[str, int, int, int], float]) -> list[ResultRow]:
    """The rows a cross-validated suite run writes: eval-image, eval (their mean) and trained rows,
    each naming its fold in ``extra``."""
    rows, runs = [], pd.Series(values).groupby(level=[0, 1, 2]).mean()
    for (v, s, f, i), x in values.items():
        rows.append(ResultRow(variant=v, seed=s, stage="eval-image", split=f"test {i}", metric="v_rand", value=x,
                              extra=make_extra(fold=f, folds=3), **COMMON))  # fmt: skip
    for (v, s, f), mean in runs.items():
        split, extra = f"test {BLOCKS[f][0]}-{BLOCKS[f][1]}", make_extra(fold=f, folds=3)
        rows.append(ResultRow(variant=v, seed=s, stage="eval", split=split, metric="v_rand", value=mean, extra=extra,
                              **COMMON))  # fmt: skip
        failed = (v, s, f) == UNTRAINED
        rows.append(ResultRow(variant=v, seed=s, stage="eval", split=split, metric="trained", value=0.0 if failed else 1.0,
                              extra=make_extra(fold=f, folds=3, reason="flat loss" if failed else None), **COMMON))  # fmt: skip
    return rows


def test_the_report_pairs_runs_by_seed_and_fold_and_shows_each_fold(tmp_path: Path) -> None:
    values = fold_scores()
    ResultWriter(tmp_path / "run").append(fold_rows(values))
    report = build_report(tmp_path / "run", tmp_path / "report")
    sections = {s.title: s for s in report.sections}
    summary = sections["Summary"].text
    assert "3-fold cross-validation: 3 folds, each run's test images are its fold's held-out block" in summary
    assert "1 run of 12 did not train" in summary
    assert report.untrained.to_dict("records") == [{"variant": "unet-bn", "seed": 1, "fold": 2, "why": "flat loss"}]

    runs = {key: np.mean([values[(*key, i)] for i in BLOCKS[key[2]]]) for key in {k[:3] for k in values}}
    trained = {key: x for key, x in runs.items() if key != UNTRAINED}
    quality = sections["Quality per variant"].table.set_index(["variant", "fold"])
    assert quality.loc[("unet-bn", "all"), "n"] == 5, "only that one fold's run is left out"
    assert quality.loc[("unet-bn", "all"), "mean"] == pytest.approx(
        np.mean([x for k, x in trained.items() if k[0] == "unet-bn"]), abs=1e-5
    )
    assert quality.loc[("unet-original", 1), "mean"] == pytest.approx(
        np.mean([runs[("unet-original", s, 1)] for s in range(2)]), abs=1e-5)  # fmt: skip
    assert report.summary.set_index("variant").loc["unet-original", "runs"] == 6

    deltas = sections["Ablation deltas against unet-original"].table.set_index("variant")
    pairs = [(s, f) for s in range(2) for f in range(3) if ("unet-bn", s, f) != UNTRAINED]
    assert deltas.loc["unet-bn", "pairs"] == 5 and deltas.loc["unet-bn", "paired_by"] == "seed, fold, image"
    # the upper level of the bootstrap: each (seed, fold) run is one unit, numbered here by hand
    diffs = pd.DataFrame([(3 * s + f, i, values[("unet-bn", s, f, i)] - values[("unet-original", s, f, i)])
                          for s, f in pairs for i in BLOCKS[f]], columns=["seed", "image", "value"])  # fmt: skip
    delta, low, high = stats.hierarchical_bootstrap(diffs)
    per_run = diffs.groupby("seed")["value"].mean()  # bounded by the t interval over the 5 runs
    half = sp.t.ppf(0.975, len(per_run) - 1) * per_run.std(ddof=1) / np.sqrt(len(per_run))
    low, high = min(low, per_run.mean() - half), max(high, per_run.mean() + half)
    assert deltas.loc["unet-bn", "delta"] == pytest.approx(
        np.mean([runs[("unet-bn", *p)] - runs[("unet-original", *p)] for p in pairs]))  # fmt: skip
    assert (deltas.loc["unet-bn", "ci_low"], deltas.loc["unet-bn", "ci_high"]) == pytest.approx((low, high))
    assert low < delta < high and not np.isnan(low), "5 runs give an interval, though there are only 2 seeds"
    assert "over 10 blocks (seed x image)" in sections["Ranking"].text, "2 seeds x 6 images, less the failed run's 2"


def test_rows_without_folds_group_as_before() -> None:
    """No fold in ``extra``: fold -1 everywhere, so runs are seeds as they always were."""
    frame = pd.DataFrame([vars(r) for r in fold_rows(fold_scores())]).assign(extra="{}")
    assert set(aggregate.with_folds(frame)["fold"]) == {-1} and aggregate.fold_count(frame) == 0
    assert ReportInputs.of(frame).folds == 0
