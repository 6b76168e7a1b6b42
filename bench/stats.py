"""Comparison statistics: is one variant better than another, and how sure can we be?

Three views of the same paired scores (docs/statistics.md says what each number means):

- ``hierarchical_bootstrap``: the mean difference variant - baseline over (seed, image) pairs,
  its interval from resampling seeds, then images within each seed (Saravanan et al. 2020);
- ``rank_analysis``: autorank (Herbold 2020) over blocks of (seed, image): Friedman's test and
  Nemenyi's critical difference with more than two variants (Demšar 2006), Wilcoxon with two;
- ``probability_of_improvement`` and ``iqm``: rliable's aggregates (Agarwal et al. 2021) with
  stratified bootstrap intervals, written here because rliable 1.2 needs ``arch<8``, which fails
  to import with pandas 3.

Input is the tidy frame of ``bench.store.read_results`` (runs that did not train already left
out, ``ReportInputs.ranked``): stage ``eval-image`` rows where runs wrote them, else ``eval`` rows
with the seed as the only pairing.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bench.aggregate import MIN_INTERVAL_N, RUN, mean_interval, with_folds
from bench.metrics import HIGHER_IS_BETTER, headline_metric

N_RESAMPLES = 2000
ALPHA = 0.05
AUTORANK_MIN_BLOCKS = 5  # autorank refuses fewer rows (blocks)


def scores(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One value per variant, run (seed, fold) and image (``image`` is the section; "" for
    whole-stack ``eval`` rows): the per-image rows where any exist, else the per-run rows.
    Under cross-validation an image is in one fold's test block only, so it names its fold."""
    rows = frame[(frame["stage"] == "eval-image") & (frame["metric"] == metric)]
    if rows.empty:
        rows = frame[(frame["stage"] == "eval") & (frame["metric"] == metric)].assign(split="")
    table = with_folds(rows).groupby(["variant", *RUN, "split"], as_index=False)["value"].mean()
    return table.rename(columns={"split": "image"})


def paired_differences(frame: pd.DataFrame, variant: str, baseline: str, metric: str) -> pd.DataFrame:
    """variant - baseline per (seed, fold, image) both have: columns seed, fold, image, value."""
    table = scores(frame, metric)
    mine = table[table["variant"] == variant].set_index([*RUN, "image"])["value"]
    base = table[table["variant"] == baseline].set_index([*RUN, "image"])["value"]
    paired = pd.concat([mine, base], axis=1, keys=["variant", "baseline"]).dropna()
    return (paired["variant"] - paired["baseline"]).rename("value").reset_index()


def hierarchical_bootstrap(
    diffs: pd.DataFrame, n_resamples: int = N_RESAMPLES, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of paired differences (columns seed, image, value; and fold under cross-validation)
    and its percentile interval: each resample draws runs with replacement, then each drawn run's
    images with replacement, so the interval reflects both sources of variation without treating
    images of one trained model as independent runs. A run is a seed, or a (seed, fold) pair:
    folds test different images, so images pair within a run. The statistic weighs runs equally
    (mean of per-run means). NaN interval from fewer than ``MIN_INTERVAL_N`` runs."""
    runs = [column for column in RUN if column in diffs.columns]
    table = diffs.pivot_table(index=runs, columns="image", values="value", aggfunc="mean")
    values = table.to_numpy(dtype=float)
    if values.size == 0:
        return math.nan, math.nan, math.nan
    estimate = float(np.mean(np.nanmean(values, axis=1)))
    if len(values) < MIN_INTERVAL_N:
        return estimate, math.nan, math.nan
    counts = (~np.isnan(values)).sum(axis=1)
    packed = np.take_along_axis(values, np.argsort(np.isnan(values), axis=1, kind="stable"), axis=1)  # images first
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, len(values), size=(n_resamples, len(values)))
    n = counts[seeds][..., None]  # images of each drawn seed
    images = (rng.random((*seeds.shape, packed.shape[1])) * n).astype(int)  # uniform in 0 .. n-1
    drawn = np.where(np.arange(packed.shape[1]) < n, packed[seeds[..., None], images], 0.0)
    means = (drawn.sum(axis=-1) / n[..., 0]).mean(axis=-1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return estimate, float(low), float(high)


def hierarchical_deltas(frame: pd.DataFrame, baseline: str, metric: str) -> pd.DataFrame:
    """Per variant with ``eval-image`` rows paired with the baseline's: seeds, runs (seed, fold),
    images, and the hierarchical bootstrap's mean difference and interval, never narrower than
    the t interval over the runs' mean differences: with few seeds the bootstrap's upper level
    spans only the seeds' range (``aggregate.mean_interval``)."""
    images = frame[frame["stage"] == "eval-image"]
    out = []
    for variant in sorted(set(images["variant"]) - {baseline}):
        diffs = paired_differences(images, variant, baseline, metric)
        if diffs.empty:
            continue
        delta, low, high = hierarchical_bootstrap(diffs)
        per_run = diffs.groupby(list(RUN))["value"].mean()
        run_low, run_high = mean_interval(per_run)
        low, high = min(low, run_low), max(high, run_high)  # NaN (too few runs) stays NaN
        out.append({"variant": variant, "seeds": diffs["seed"].nunique(), "runs": len(per_run),
                    "images": diffs["image"].nunique(), "delta": delta, "ci_low": low, "ci_high": high})  # fmt: skip
    return pd.DataFrame(out, columns=["variant", "seeds", "runs", "images", "delta", "ci_low", "ci_high"])


def score_matrix(table: pd.DataFrame, variant: str, images: list[str]) -> np.ndarray:
    """A variant's scores as runs (seeds) x tasks (images); seeds missing an image are left out."""
    mine = table[table["variant"] == variant].pivot_table(index="seed", columns="image", values="value")
    return mine.reindex(columns=images).dropna().to_numpy(dtype=float)


def stratified(matrix: np.ndarray, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """Resamples of a runs x tasks matrix: runs drawn with replacement within each task."""
    runs, tasks = matrix.shape
    return matrix[rng.integers(0, runs, size=(n_resamples, runs, tasks)), np.arange(tasks)]


def improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) per leading index: per task the share of run pairs where x beats y (ties half),
    averaged over tasks (Agarwal et al. 2021, the Mann-Whitney U statistic over N * K)."""
    beats = (x[..., :, None, :] > y[..., None, :, :]) + 0.5 * (x[..., :, None, :] == y[..., None, :, :])
    return beats.mean(axis=(-3, -2, -1))


def probability_of_improvement(
    frame: pd.DataFrame, variant: str, baseline: str, metric: str, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """P(variant scores better than baseline) on a random image and a random seed of each, with
    a stratified percentile-bootstrap interval (seeds resampled within each image); NaN interval
    when either has fewer than ``MIN_INTERVAL_N`` seeds."""
    table = scores(frame, metric)
    images = sorted(set.intersection(*(set(table.loc[table["variant"] == v, "image"]) for v in (variant, baseline))))
    sign = 1.0 if metric in HIGHER_IS_BETTER else -1.0
    x, y = sign * score_matrix(table, variant, images), sign * score_matrix(table, baseline, images)
    if x.size == 0 or y.size == 0:
        return math.nan, math.nan, math.nan
    estimate = float(improvement(x, y))
    if min(len(x), len(y)) < MIN_INTERVAL_N:
        return estimate, math.nan, math.nan
    rng = np.random.default_rng(seed)
    resampled = improvement(stratified(x, rng, n_resamples), stratified(y, rng, n_resamples))
    low, high = np.percentile(resampled, [2.5, 97.5])
    return estimate, float(low), float(high)


def iqm(
    frame: pd.DataFrame, variant: str, metric: str, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, float, float]:
    """Interquartile mean of a variant's scores over all seeds and images (the mean of the middle
    half, robust to one collapsed run), with a stratified bootstrap interval."""
    table = scores(frame, metric)
    matrix = score_matrix(table, variant, sorted(set(table.loc[table["variant"] == variant, "image"])))
    if matrix.size == 0:
        return math.nan, math.nan, math.nan
    estimate = float(stats.trim_mean(matrix, 0.25, axis=None))
    if len(matrix) < MIN_INTERVAL_N:
        return estimate, math.nan, math.nan
    resampled = stratified(matrix, np.random.default_rng(seed), n_resamples).reshape(n_resamples, -1)
    low, high = np.percentile(stats.trim_mean(resampled, 0.25, axis=1), [2.5, 97.5])
    return estimate, float(low), float(high)


@dataclass(frozen=True)
class RankAnalysis:
    """autorank's verdict on the variants, with the numbers a reader needs to check it."""

    metric: str
    blocks: str  # what one block is: "seed x image", or without per-image rows "seed" ("seed x fold")
    n_blocks: int
    test: str  # "friedman" (post-hoc Nemenyi) or "wilcoxon" (two variants)
    p_value: float  # of that test
    statistic: float  # Friedman's chi-square; NaN for Wilcoxon
    cd: float  # Nemenyi's critical difference of mean ranks; NaN for Wilcoxon
    ranks: pd.DataFrame  # variant, mean_rank, median: best first
    pairs: pd.DataFrame  # better, worse, rank_difference, p, resolved
    result: Any  # autorank's RankResult, for ``cd_figure``
    left_out: tuple[str, ...] = ()  # variants missing runs, left out so the others keep theirs (``blocks``)


def blocks(frame: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str, tuple[str, ...]]:
    """Blocks x variants: one row per (seed, fold, image) every ranked variant has, what a block
    is, and the variants left out. A block is kept only where every variant has it, so a run that
    did not train drops its seed for all; where that would leave fewer than ``MIN_INTERVAL_N``
    runs, the variants missing runs are left out instead, and the others keep all theirs."""
    table = scores(frame, metric)
    wide = table.pivot_table(index=[*RUN, "image"], columns="variant", values="value")
    wide.columns = [str(c) for c in wide.columns]
    left_out: tuple[str, ...] = ()
    if run_count(wide.dropna()) < MIN_INTERVAL_N:
        left_out = tuple(c for c in wide.columns if wide[c].isna().any())
        wide = wide.drop(columns=list(left_out))
    runs = "seed x fold" if (table["fold"] >= 0).any() else "seed"
    return wide.dropna(), "seed x image" if (table["image"] != "").any() else runs, left_out


def run_count(wide: pd.DataFrame) -> int:
    """How many runs (seed, fold) the blocks of ``wide`` come from."""
    return len(wide.index.droplevel("image").unique())


def rank_analysis(frame: pd.DataFrame, metric: str, alpha: float = ALPHA) -> RankAnalysis | str:
    """autorank over the variants, nonparametric (Friedman + Nemenyi, or Wilcoxon for two); a
    sentence saying why not when there are fewer than two variants, ``AUTORANK_MIN_BLOCKS`` blocks
    or ``MIN_INTERVAL_N`` runs (seeds) that every ranked variant has."""
    import autorank

    wide, kind, left_out = blocks(frame, metric)
    if wide.shape[1] < 2:
        return "fewer than two variants to rank" + left_out_text(left_out, "; ")
    if run_count(wide) < MIN_INTERVAL_N:
        return f"{run_count(wide)} runs that every variant has; a rank test needs {MIN_INTERVAL_N}"
    if len(wide) < AUTORANK_MIN_BLOCKS:
        return f"{len(wide)} blocks ({kind}) that every variant has; a rank test needs {AUTORANK_MIN_BLOCKS}"
    order = "descending" if metric in HIGHER_IS_BETTER else "ascending"  # the best value gets rank 1
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autorank's normality checks (unused when forced), ties
        result = autorank.autorank(wide.reset_index(drop=True), alpha=alpha, order=order, force_mode="nonparametric")
        friedman = result.omnibus == "friedman"  # NaN when every block ties (p is NaN then too)
        statistic = float(stats.friedmanchisquare(*wide.T.to_numpy()).statistic) if friedman else math.nan
    ranks = pd.DataFrame({"variant": result.rankdf.index, "mean_rank": result.rankdf["meanrank"].astype(float),
                          "median": result.rankdf["median"].astype(float)})  # fmt: skip
    ranks = ranks.sort_values("mean_rank", kind="stable").reset_index(drop=True)  # rank 1 is the best
    cd = float(result.cd) if friedman else math.nan
    p_value = float(result.pvalue) if friedman else better_ranked_p(wide, ranks, metric)
    return RankAnalysis(metric, kind, len(wide), str(result.omnibus), p_value, statistic, cd, ranks,
                        rank_pairs(ranks, len(wide), p_value, cd, alpha), result, left_out)  # fmt: skip


def better_ranked_p(wide: pd.DataFrame, ranks: pd.DataFrame, metric: str) -> float:
    """One-sided Wilcoxon signed-rank p that the better-ranked of two variants is the better one,
    the claim the report prints. autorank tests whichever has the larger median against the
    other, which for a lower-is-better metric, or where median and mean rank disagree, is the
    opposite claim (ablation-kernels printed 'unet-same > unet-k5 (p=0.932)', the p of k5 > same)."""
    better, worse = ranks["variant"]
    diff = (wide[better] - wide[worse]).to_numpy()
    if not diff.any():  # every block ties
        return 1.0
    return float(stats.wilcoxon(diff, alternative="greater" if metric in HIGHER_IS_BETTER else "less").pvalue)


def left_out_text(left_out: tuple[str, ...], before: str = "") -> str:
    """The variants a rank test left out, and why, in words; empty when none was."""
    if not left_out:
        return ""
    return (f"{before}left out of the rank test: {', '.join(left_out)} (a run did not train, and ranking with it "
            f"would leave fewer than {MIN_INTERVAL_N} seeds)")  # fmt: skip


def rank_pairs(ranks: pd.DataFrame, n_blocks: int, p_omnibus: float, cd: float, alpha: float) -> pd.DataFrame:
    """Every pair, the better-ranked first. With Nemenyi (``cd`` given) a pair is resolved when the
    Friedman test rejects and its mean ranks differ by more than the critical difference; its p
    is the studentized range's tail at that difference. With two variants: Wilcoxon's p."""
    k = len(ranks)
    scale = math.sqrt(k * (k + 1) / (12 * n_blocks))
    out = []
    for (_, a), (_, b) in combinations(ranks.iterrows(), 2):  # ranks are sorted best first
        gap = float(b["mean_rank"] - a["mean_rank"])
        if math.isnan(cd):
            p, resolved = p_omnibus, p_omnibus < alpha
        else:
            p = float(stats.studentized_range.sf(gap / scale, k, np.inf))
            resolved = p_omnibus < alpha and gap > cd
        pair = {"better": a["variant"], "worse": b["variant"], "rank_difference": gap, "p": p}
        out.append({**pair, "resolved": bool(resolved)})
    return pd.DataFrame(out, columns=["better", "worse", "rank_difference", "p", "resolved"])


def cd_figure(analysis: RankAnalysis) -> Any:
    """autorank's critical-difference diagram (Friedman + Nemenyi only; None otherwise)."""
    import autorank
    import matplotlib.pyplot as plt

    if analysis.test != "friedman":
        return None
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(analysis.ranks) + 1.5))
    autorank.plot_stats(analysis.result, allow_insignificant=True, ax=ax)
    return fig


def ranking_lines(frame: pd.DataFrame, baseline: str | None = None) -> list[str]:
    """The rank analysis for a terminal: a header, then one line per pair (each variant against
    ``baseline``, unet-original where present, else every pair), e.g.
    "unet-bn > unet-original: resolved (p=0.012)". ``frame``: rows of runs that trained."""
    evals = frame[frame["stage"].isin(["eval", "eval-image"])]
    if evals["variant"].nunique() < 2:
        return []
    metric = headline_metric(evals["metric"])  # the report's Ranking section ranks the same
    analysis = rank_analysis(frame, metric)
    if isinstance(analysis, str):
        return [f"ranking on {metric}: none ({analysis})"]
    test = "Wilcoxon" if analysis.test == "wilcoxon" else f"Friedman p={analysis.p_value:.3g}, CD {analysis.cd:.2f}"
    lines = [
        f"ranking on {metric} over {analysis.n_blocks} blocks ({analysis.blocks}): {test}"
        + left_out_text(analysis.left_out, "; ")
        + " (p-values optimistic: the blocks of one seed share a trained model; read the intervals first)"
    ]
    order = ", ".join(f"{r.variant} {r.mean_rank:.2f}" for r in analysis.ranks.itertuples())
    lines.append(f"mean rank (1 = best): {order}")
    reference = baseline or ("unet-original" if "unet-original" in set(analysis.ranks["variant"]) else None)
    for pair in analysis.pairs.itertuples():
        if reference is None or reference in (pair.better, pair.worse):
            verdict = "resolved" if pair.resolved else "not resolved"
            order = ">" if pair.rank_difference > 0 else "="  # equal mean ranks: neither is ahead
            lines.append(f"{pair.better} {order} {pair.worse}: {verdict} (p={pair.p:.3g})")
    return lines


def survivor_caveat(frame: pd.DataFrame) -> str:
    """The variants some of whose runs did not train, in words: ranks, IQM and intervals use only the
    runs that trained, so for these variants they overstate how reliably the variant trains.
    ``frame``: all rows, the ``trained`` verdicts included. Empty when every run trained."""
    verdicts = frame[(frame["stage"] == "eval") & (frame["metric"] == "trained")]
    counts = verdicts.groupby("variant")["value"].agg(["size", "sum"])
    failed = counts[counts["sum"] < counts["size"]]
    if failed.empty:
        return ""
    each = ", ".join(f"{v} in {int(c['size'] - c['sum'])} of {int(c['size'])} runs" for v, c in failed.iterrows())
    return (f"Did not train: {each}; their ranks and intervals use only the runs that trained, so they "
            "overstate how reliably those variants train.")  # fmt: skip
