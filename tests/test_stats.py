"""Comparison statistics (bench.stats) against independent computations, and the per-image rows
they read, written by a real suite evaluation."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp

from bench import stats
from bench.metrics import INSTANCE_METRICS, ROW_METRICS, score_masks, score_stack_images
from bench.report import ReportInputs, build_report
from bench.schema import ResultRow
from bench.store import ResultWriter, read_results

COMMON = {"run_id": "r", "suite": "s", "config_hash": "0" * 12, "dataset": "synthetic", "unit": "",
          "timestamp": "2026-01-01T00:00:00+00:00", "host": "h", "git_sha": "abc"}  # fmt: skip
IMAGES = ["test 10", "test 11", "test 12", "test 13"]


def per_image_scores(offsets: dict[str, float], seeds: int = 3, seed: int = 0) -> dict[tuple[str, int, str], float]:
    """V_rand per (variant, seed, image): a variant offset, a per-seed shift, per-image noise."""
    rng = np.random.default_rng(seed)
    shifts = rng.normal(0, 0.01, seeds)
    difficulty = rng.normal(0, 0.03, len(IMAGES))
    return {
        (v, s, image): 0.8 + offset + shifts[s] + difficulty[i] + rng.normal(0, 0.015)
        for v, offset in offsets.items() for s in range(seeds) for i, image in enumerate(IMAGES)
    }  # fmt: skip


def rows_of(values: dict[tuple[str, int, str], float], metric: str = "v_rand", untrained=()) -> list[ResultRow]:
    """Result rows as a suite run writes them: eval-image rows, the eval row (their mean) and a
    ``trained`` row per run; runs in ``untrained`` get trained 0."""
    rows = [ResultRow(variant=v, seed=s, stage="eval-image", split=image, metric=metric, value=x, **COMMON)
            for (v, s, image), x in values.items()]  # fmt: skip
    runs = pd.Series(values).groupby(level=[0, 1]).mean()
    for (v, s), mean in runs.items():
        rows.append(ResultRow(variant=v, seed=s, stage="eval", split="test 10-13", metric=metric, value=mean, **COMMON))
        trained = 0.0 if (v, s) in untrained else 1.0
        rows.append(ResultRow(variant=v, seed=s, stage="eval", split="test 10-13", metric="trained", value=trained,
                              extra='{"reason": "flat loss"}' if not trained else "{}", **COMMON))  # fmt: skip
    return rows


def frame_of(values: dict[tuple[str, int, str], float], metric: str = "v_rand", untrained=()) -> pd.DataFrame:
    return pd.DataFrame([vars(r) for r in rows_of(values, metric, untrained)])


def naive_hierarchical(diffs: dict[int, list[float]], resamples: int, rng: random.Random) -> tuple[float, float]:
    """The hierarchical bootstrap as loops: seeds with replacement, then each one's images."""
    seeds = list(diffs)
    means = []
    for _ in range(resamples):
        drawn = [rng.choice(seeds) for _ in seeds]
        means.append(np.mean([np.mean([rng.choice(diffs[s]) for _ in diffs[s]]) for s in drawn]))
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@pytest.mark.parametrize("ragged", [False, True])
def test_hierarchical_bootstrap_agrees_with_a_naive_loop(ragged: bool) -> None:
    rng = np.random.default_rng(3)
    diffs = {s: list(rng.normal(0.02 + 0.02 * s, 0.04, 6)) for s in range(5)}
    if ragged:  # a seed that scored fewer images
        diffs[2] = diffs[2][:3]
    frame = pd.DataFrame([(s, f"test {i}", x) for s, xs in diffs.items() for i, x in enumerate(xs)],
                         columns=["seed", "image", "value"])  # fmt: skip
    mean, low, high = stats.hierarchical_bootstrap(frame, n_resamples=4000)
    assert mean == pytest.approx(np.mean([np.mean(xs) for xs in diffs.values()]))
    naive_low, naive_high = naive_hierarchical(diffs, 4000, random.Random(1))
    assert low == pytest.approx(naive_low, abs=0.01) and high == pytest.approx(naive_high, abs=0.01)
    assert low < mean < high
    # wider than a bootstrap that treats every (seed, image) as independent: seeds differ
    flat = sp.bootstrap((frame["value"].to_numpy(),), np.mean, method="percentile", random_state=0).confidence_interval
    assert high - low > flat.high - flat.low


def test_both_levels_are_resampled() -> None:
    """Seeds that agree image for image still leave the images' spread; images that agree
    within each seed still leave the seeds' spread; nothing varies, zero width."""
    images = pd.DataFrame([(s, f"test {i}", 0.01 * i) for s in range(4) for i in range(5)], columns=["seed", "image", "value"])
    seeds = images.assign(value=0.01 * images["seed"])
    for diffs in (images, seeds):
        mean, low, high = stats.hierarchical_bootstrap(diffs)
        assert low < mean < high and high - low > 0.01
    assert stats.hierarchical_bootstrap(images.assign(value=0.02)) == pytest.approx((0.02, 0.02, 0.02))


def test_fewer_than_three_seeds_give_no_interval() -> None:
    values = per_image_scores({"unet-original": 0.0, "unet-bn": 0.03}, seeds=2)
    frame = frame_of(values)
    diffs = stats.paired_differences(frame, "unet-bn", "unet-original", "v_rand")
    assert len(diffs) == 2 * len(IMAGES)
    mean, low, high = stats.hierarchical_bootstrap(diffs)
    assert mean == pytest.approx(diffs["value"].mean()) and math.isnan(low) and math.isnan(high)
    for estimate in (stats.probability_of_improvement(frame, "unet-bn", "unet-original", "v_rand"),
                     stats.iqm(frame, "unet-bn", "v_rand")):  # fmt: skip
        assert not math.isnan(estimate[0]) and math.isnan(estimate[1]) and math.isnan(estimate[2])


def test_rank_analysis_agrees_with_scipy() -> None:
    offsets = {"unet-original": 0.0, "unet-bn": 0.02, "unet-gelu": 0.05}
    values = per_image_scores(offsets)
    analysis = stats.rank_analysis(frame_of(values), "v_rand")
    assert isinstance(analysis, stats.RankAnalysis)
    blocks = [(s, image) for s in range(3) for image in IMAGES]
    matrix = np.array([[values[(v, s, image)] for v in offsets] for s, image in blocks])  # blocks x variants
    assert analysis.test == "friedman" and analysis.n_blocks == 12 and analysis.blocks == "seed x image"
    friedman = sp.friedmanchisquare(*matrix.T)
    assert analysis.statistic == pytest.approx(friedman.statistic) and analysis.p_value == pytest.approx(friedman.pvalue)
    mean_ranks = np.mean([sp.rankdata(-row) for row in matrix], axis=0)  # higher V_rand: rank 1
    assert analysis.ranks.set_index("variant")["mean_rank"].to_dict() == pytest.approx(dict(zip(offsets, mean_ranks)))
    assert list(analysis.ranks["variant"]) == [v for _, v in sorted(zip(mean_ranks, offsets))], "best first"
    k, n = 3, 12
    cd = sp.studentized_range.ppf(0.95, k, np.inf) * math.sqrt(k * (k + 1) / (12 * n))  # Demšar 2006
    assert analysis.cd == pytest.approx(cd, rel=1e-4)
    ranks = dict(zip(offsets, mean_ranks))
    for pair in analysis.pairs.itertuples():
        gap = ranks[pair.worse] - ranks[pair.better]
        assert gap >= 0 and pair.resolved == (friedman.pvalue < 0.05 and gap > cd)
    assert analysis.pairs.set_index(["better", "worse"]).loc[("unet-gelu", "unet-original"), "resolved"]


def test_two_variants_use_wilcoxon_and_too_few_blocks_say_so() -> None:
    values = per_image_scores({"unet-original": 0.0, "unet-bn": 0.02})
    analysis = stats.rank_analysis(frame_of(values), "v_rand")
    assert isinstance(analysis, stats.RankAnalysis) and analysis.test == "wilcoxon" and math.isnan(analysis.cd)
    pair = analysis.pairs.iloc[0]
    better, worse = (np.array([x for (v, _, _), x in values.items() if v == name]) for name in (pair.better, pair.worse))
    assert analysis.p_value == pair.p == pytest.approx(sp.wilcoxon(better, worse, alternative="greater").pvalue)
    seed_only = frame_of(values)
    seed_only = seed_only[seed_only["stage"] == "eval"]
    assert stats.rank_analysis(seed_only, "v_rand") == "3 blocks (seed) that every variant has; a rank test needs 5"


# ablation-kernels' test V_rand per (seed, section): unet-k5 has the larger median, unet-same the
# better mean rank (it wins 10 of the 15 blocks) and the better mean
KERNELS = {
    "unet-k5": [0.585413, 0.637955, 0.506415, 0.612184, 0.617868, 0.576636, 0.579925, 0.517087, 0.600659,
                0.561406, 0.636440, 0.629429, 0.510304, 0.669175, 0.629366],
    "unet-same": [0.573428, 0.668934, 0.566631, 0.669865, 0.628331, 0.574580, 0.652129, 0.589012, 0.634641,
                  0.596891, 0.600116, 0.582640, 0.468193, 0.691201, 0.645331],
}  # fmt: skip


@pytest.mark.parametrize("metric", ["v_rand", "pixel_error"])
def test_with_two_variants_the_p_value_is_for_the_order_it_is_printed_beside(metric: str) -> None:
    """autorank tests the larger median against the other: the report printed the kernels
    ablation's 'unet-same > unet-k5' with p = 0.932, the p of the opposite claim. As pixel errors
    (1 - V_rand: lower is better) the same numbers keep the order and the p."""
    sign = 1 if metric == "v_rand" else -1
    values = {(v, seed, f"test {25 + i}"): (1 - sign) / 2 + sign * scores[5 * seed + i]
              for v, scores in KERNELS.items() for seed in range(3) for i in range(5)}  # fmt: skip
    analysis = stats.rank_analysis(frame_of(values, metric), metric)
    assert isinstance(analysis, stats.RankAnalysis)
    assert (analysis.pairs.iloc[0].better, analysis.pairs.iloc[0].worse) == ("unet-same", "unet-k5")
    same, k5 = np.array(KERNELS["unet-same"]), np.array(KERNELS["unet-k5"])
    assert np.median(k5) > np.median(same), "the case where autorank's direction was the opposite one"
    assert analysis.p_value == pytest.approx(sp.wilcoxon(same, k5, alternative="greater").pvalue)
    assert analysis.p_value == pytest.approx(0.0757, abs=1e-4)


def mann_whitney_share(x: list[float], y: list[float]) -> float:
    """P(X > Y) as a count over all pairs, ties half."""
    return sum((a > b) + 0.5 * (a == b) for a in x for b in y) / (len(x) * len(y))


def test_probability_of_improvement_is_a_mann_whitney_count() -> None:
    values = per_image_scores({"unet-original": 0.0, "unet-bn": 0.01}, seeds=4)
    values[("unet-bn", 0, "test 10")] = values[("unet-original", 1, "test 10")]  # a tie counts half
    frame = frame_of(values)
    p, low, high = stats.probability_of_improvement(frame, "unet-bn", "unet-original", "v_rand")
    per_image = []
    for image in IMAGES:
        x = [values[("unet-bn", s, image)] for s in range(4)]
        y = [values[("unet-original", s, image)] for s in range(4)]
        per_image.append(mann_whitney_share(x, y))
        assert per_image[-1] == pytest.approx(sp.mannwhitneyu(x, y).statistic / 16)
    assert p == pytest.approx(np.mean(per_image)) and low <= p <= high and 0 <= low and high <= 1
    # lower is better for pixel error: the same numbers read as errors give the complement
    errors = frame_of(values, metric="pixel_error")
    assert stats.probability_of_improvement(errors, "unet-bn", "unet-original", "pixel_error")[0] == pytest.approx(1 - p)


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    values = per_image_scores({"unet-original": 0.0}, seeds=4)
    values[("unet-original", 3, "test 13")] = 0.0  # one collapsed image does not move it much
    pooled = sorted(values.values())
    value, low, high = stats.iqm(frame_of(values), "unet-original", "v_rand")
    assert value == pytest.approx(np.mean(pooled[4:12])) and low <= value <= high


def test_the_report_pairs_by_seed_and_image_ranks_and_leaves_untrained_runs_out(tmp_path: Path) -> None:
    offsets = {"unet-original": 0.0, "unet-bn": 0.02, "unet-gelu": 0.05}
    values = per_image_scores(offsets, seeds=4)
    frame = frame_of(values, untrained={("unet-bn", 3)})
    ranked = ReportInputs.of(frame).ranked
    assert not ((ranked["variant"] == "unet-bn") & (ranked["seed"] == 3) & ranked["stage"].isin(["eval", "eval-image"])).any()
    ResultWriter(tmp_path / "run").append(rows_of(values, untrained={("unet-bn", 3)}))
    report = build_report(tmp_path / "run", tmp_path / "report")
    sections = {s.title: s for s in report.sections}
    deltas = sections["Ablation deltas against unet-original"].table.set_index("variant")
    diffs = pd.DataFrame([(s, image, values[("unet-bn", s, image)] - values[("unet-original", s, image)])
                          for s in range(3) for image in IMAGES], columns=["seed", "image", "value"])  # fmt: skip
    _, low, high = stats.hierarchical_bootstrap(diffs)
    per_seed = diffs.groupby("seed")["value"].mean()  # the t interval over 3 seeds bounds it
    half = sp.t.ppf(0.975, 2) * per_seed.std(ddof=1) / np.sqrt(3)
    low, high = min(low, per_seed.mean() - half), max(high, per_seed.mean() + half)
    assert deltas.loc["unet-bn", "paired_by"] == "seed, image" and deltas.loc["unet-bn", "images"] == 4
    assert (deltas.loc["unet-bn", "ci_low"], deltas.loc["unet-bn", "ci_high"]) == pytest.approx((low, high))
    assert deltas.loc["unet-bn", "delta"] == pytest.approx(diffs["value"].mean())
    ranking = sections["Ranking"]
    assert ranking.figure == "ranking_cd" and (tmp_path / "report" / "fig" / "ranking_cd.png").stat().st_size > 1000
    assert ranking.table["variant"].iloc[0] == "unet-gelu" and "Resolved: unet-gelu > unet-original" in ranking.text
    assert "Friedman test over 12 blocks (seed x image)" in ranking.text, "4 seeds x 4 images, less the untrained seed"
    assert float(ranking.table.set_index("variant").loc["unet-gelu", "P(better than unet-original)"].split()[0]) > 0.8


def test_ranking_lines_for_the_terminal() -> None:
    values = per_image_scores({"unet-original": 0.0, "unet-bn": 0.003, "unet-gelu": 0.05})
    lines = stats.ranking_lines(frame_of(values))
    assert lines[0].startswith("ranking on v_rand over 12 blocks (seed x image): Friedman p=")
    order = [part.rsplit(" ", 1) for part in lines[1].removeprefix("mean rank (1 = best): ").split(", ")]
    assert [name for name, _ in order] == ["unet-gelu", "unet-bn", "unet-original"], "best first"
    assert sum(float(rank) for _, rank in order) == pytest.approx(6, abs=0.02), "ranks 1..3 in every block"
    assert lines[2:] == [line for line in lines[2:] if "unet-original" in line] and len(lines) == 4
    assert any(line.startswith("unet-gelu > unet-original: resolved (p=") for line in lines)
    assert any(": not resolved (p=" in line for line in lines), "a 0.003 offset is within noise"
    assert stats.ranking_lines(frame_of(per_image_scores({"unet-original": 0.0}))) == []
    tied = frame_of(dict.fromkeys(per_image_scores({"unet-original": 0.0, "unet-bn": 0.0}), 0.5))
    assert stats.ranking_lines(tied)[2:] in (["unet-bn = unet-original: not resolved (p=1)"],
                                             ["unet-original = unet-bn: not resolved (p=1)"])  # fmt: skip


def test_per_image_scores_are_taken_at_the_stacks_thresholds() -> None:
    rng = np.random.default_rng(0)
    masks = [rng.random((24, 24)) > 0.3 for _ in range(3)]
    probs = [np.clip(m + rng.normal(0, 0.4, m.shape), 0, 1) for m in masks]
    thresholds = (0.3, 0.5, 0.7)
    stack, per_image = score_stack_images(probs, masks, thresholds, warping=False)
    for metric, headline in (("v_rand", "v_rand"), ("rand_split", "v_rand"), ("pixel_error", "pixel_error")):
        t = stack[f"threshold_{headline}"]
        by_hand = [score_masks(p >= t, m, warping=False)[metric] for p, m in zip(probs, masks)]
        assert [img[metric] for img in per_image] == pytest.approx(by_hand)
        assert stack[metric] == pytest.approx(np.mean(by_hand))


def test_a_suite_evaluation_writes_one_row_per_test_image_and_metric(tmp_path: Path) -> None:
    from bench.run import train_stage
    from bench.suite import load_suite

    suite = load_suite(Path(__file__).parent / "data" / "tiny-suite.toml")
    suite = replace(suite, variants=("unet-original",), val_sections=(2,), test_sections=(3, 4),
                    train=replace(suite.train, epochs=1))  # fmt: skip
    train_stage(suite, tmp_path / "run", {}, seeds=1, log=lambda line: None)
    frame = read_results(tmp_path / "run")
    images = frame[frame["stage"] == "eval-image"]
    assert sorted(images["split"].unique()) == ["test 3", "test 4"]
    assert not images.duplicated(["split", "metric"]).any()
    membrane = set(ROW_METRICS) - set(INSTANCE_METRICS)  # ISBI images have no instance scores
    assert set(images["metric"]) == membrane and len(images) == 2 * len(membrane)
    evals = frame[frame["stage"] == "eval"].set_index("metric")["value"]
    for metric, group in images.groupby("metric"):  # the stack's score is the mean of its images'
        assert group["value"].mean() == pytest.approx(evals[metric], abs=1e-9)
    assert set(images["run_id"]) == {"run"} and (images["git_sha"] != "").all() and (images["seed"] == 0).all()


def test_a_variant_with_runs_that_did_not_train_is_named_beside_its_rank() -> None:
    """Ranking only the runs that trained flatters a variant that often collapses: say which and how often."""
    verdicts = pd.DataFrame({
        "stage": "eval", "metric": "trained", "variant": ["a", "a", "a", "b", "b", "b"],
        "value": [1.0, 0.0, 1.0, 1.0, 1.0, 1.0],
    })  # fmt: skip
    assert stats.survivor_caveat(verdicts).startswith("Did not train: a in 1 of 3 runs;")
    assert stats.survivor_caveat(verdicts.assign(value=1.0)) == ""


def test_a_variant_missing_a_run_is_left_out_rather_than_ranking_the_others_on_two_seeds(tmp_path: Path) -> None:
    """3 seeds, one run of unet-16 did not train: dropping that seed for everyone would rank on 2
    seeds, so unet-16 leaves the rank test (said on the page, in the Takeaway and the terminal)
    and the others keep all 3; ablation-filters once resolved unet-16 over unet-32 on 2 seeds."""
    values = per_image_scores({"unet-original": 0.0, "unet-32": 0.001, "unet-16": 0.06})
    ResultWriter(tmp_path / "run").append(rows_of(values, untrained={("unet-16", 1)}))
    report = build_report(tmp_path / "run", tmp_path / "report")
    sections = {s.title: s for s in report.sections}
    ranking = sections["Ranking"]
    assert "over 12 blocks (seed x image)" in ranking.text, "3 seeds x 4 images, every seed kept"
    assert "Left out of the rank test: unet-16 (a run did not train" in ranking.text
    assert list(ranking.table["variant"]) [-1] == "unet-16" and np.isnan(ranking.table["mean rank"].iloc[-1])
    takeaway = sections["Summary"].text.split("\n\n")[0]
    assert "best mean V_rand: unet-16" in takeaway and "Did not train: unet-16 in 1 of 3 runs" in takeaway
    assert "unet-16 over" not in takeaway, "nothing is resolved for a variant left out of the test"
    frame = ReportInputs.of(read_results(tmp_path / "run")).ranked
    assert "left out of the rank test: unet-16" in stats.ranking_lines(frame)[0]
    two_seeds = {k: v for k, v in values.items() if k[1] < 2}
    assert stats.rank_analysis(frame_of(two_seeds), "v_rand") == "2 runs that every variant has; a rank test needs 3"
