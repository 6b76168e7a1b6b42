"""pandas aggregation of result rows into the tables reports show.

Input is always the tidy frame of ``bench.store.read_results``; every function returns a new
tidy frame, so tables are testable against values computed independently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from bench.metrics import HIGHER_IS_BETTER, higher_is_better

# what makes two values the same measurement: an eager and a compiled run of one variant differ
GROUP = ("variant", "stage", "mode", "setting", "metric", "precision", "batch_size", "input_size")


# one training run: its seed and, under k-fold cross-validation, its fold (-1 without folds)
RUN = ("seed", "fold")


def with_folds(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a ``fold`` column: the cross-validation fold its rows name in ``extra``, -1
    where none (rows without folds), so runs group and pair by (seed, fold)."""
    if "fold" in frame.columns:
        return frame
    extras = frame["extra"] if "extra" in frame.columns else pd.Series("{}", index=frame.index)
    return frame.assign(fold=[int(json.loads(e).get("fold", -1)) if '"fold"' in e else -1 for e in extras])


def fold_count(frame: pd.DataFrame) -> int:
    """K of the k-fold cross-validation behind the ``eval`` rows (``extra["folds"]``); 0 without."""
    evals = frame.loc[frame["stage"] == "eval", "extra"]
    return max((int(json.loads(e)["folds"]) for e in evals if '"folds"' in e), default=0)


# fewer independent values than this give no interval: two values only say where those two lie,
# and would print "0.621 [0.621, 0.621]" for two equal seeds
MIN_INTERVAL_N = 3


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean; NaN for fewer than ``MIN_INTERVAL_N`` values, zero width
    for identical values. Not a percentile bootstrap: from 3 seeds every resampled mean lies
    between the smallest and largest seed, so that "95 %" interval is the seeds' range and
    covers the true mean about three times in four; t's small-sample tails keep the level."""
    array = np.asarray(values, dtype=float)
    if array.size < MIN_INTERVAL_N:
        return math.nan, math.nan
    mean = float(array.mean())
    if np.all(array == array[0]):
        return mean, mean
    low, high = stats.t.interval(confidence, array.size - 1, loc=mean, scale=stats.sem(array))
    return float(low), float(high)


def summarize(frame: pd.DataFrame, by: Sequence[str] = GROUP) -> pd.DataFrame:
    """Mean, standard deviation, count and 95 % t interval (``mean_interval``) of ``value`` per
    group (seeds, images or repetitions pooled)."""
    rows = []
    for keys, group in frame.groupby(list(by), sort=True, dropna=False):
        values = group["value"].to_numpy(dtype=float)
        low, high = mean_interval(values)
        rows.append({
            **dict(zip(by, keys)), "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
            "n": int(values.size), "ci_low": low, "ci_high": high,
            "unit": group["unit"].iloc[0],
        })  # fmt: skip
    # the columns exist even with no rows, so callers can filter an empty summary
    return pd.DataFrame(rows, columns=[*by, "mean", "std", "n", "ci_low", "ci_high", "unit"])


def ablation_deltas(
    frame: pd.DataFrame, baseline: str, metric: str, pair_on: str | Sequence[str] = RUN
) -> pd.DataFrame:
    """Each variant against ``baseline`` on ``metric``, paired by ``pair_on``: by run (seed, and
    fold under cross-validation) by default, or by image.

    delta = mean(variant - baseline) over pairs, its t interval (``mean_interval``), the Wilcoxon signed-rank
    p-value (needs >= 2 pairs with a difference) and Cohen's d_z (mean / std of differences).
    """
    pair_on = [pair_on] if isinstance(pair_on, str) else list(pair_on)
    rows = frame[frame["metric"] == metric]
    rows = with_folds(rows) if "fold" in pair_on else rows
    base = rows[rows["variant"] == baseline].groupby(pair_on)["value"].mean()
    if base.empty:
        raise ValueError(f"baseline {baseline!r} has no {metric!r} rows")
    out = []
    for variant, group in rows[rows["variant"] != baseline].groupby("variant", sort=True):
        mine = group.groupby(pair_on)["value"].mean()
        paired = pd.concat([mine, base], axis=1, keys=["variant", "baseline"]).dropna()
        diff = (paired["variant"] - paired["baseline"]).to_numpy()
        low, high = mean_interval(diff)
        nonzero = diff[diff != 0]
        p = float(stats.wilcoxon(diff).pvalue) if nonzero.size >= 2 else np.nan
        sd = diff.std(ddof=1) if diff.size > 1 else 0.0
        out.append({
            "variant": variant, "baseline": baseline, "metric": metric, "pairs": int(diff.size),
            "delta": float(diff.mean()) if diff.size else np.nan, "ci_low": low, "ci_high": high,
            "p_wilcoxon": p, "effect_size_dz": float(diff.mean() / sd) if sd > 0 else np.nan,
            "better": bool(diff.mean() > 0) == (metric in HIGHER_IS_BETTER) if diff.size else None,
        })  # fmt: skip
    return pd.DataFrame(out)


def pareto_front(
    table: pd.DataFrame,
    quality: str,
    cost: str,
    higher_quality_is_better: bool = True,
    higher_cost_is_better: bool = False,
) -> pd.Series:
    """Boolean mask of rows no other row beats on both ``quality`` and ``cost``."""
    q = table[quality].to_numpy(dtype=float) * (1 if higher_quality_is_better else -1)
    c = table[cost].to_numpy(dtype=float) * (1 if higher_cost_is_better else -1)
    on_front = []
    for i in range(len(table)):
        dominated = np.any((q >= q[i]) & (c >= c[i]) & ((q > q[i]) | (c > c[i])))
        on_front.append(not dominated)
    return pd.Series(on_front, index=table.index, name="pareto")


def scaling_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float]:
    """Least-squares line y = slope * x + intercept with R^2 (e.g. memory vs input pixels)."""
    fit = stats.linregress(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    return {"slope": float(fit.slope), "intercept": float(fit.intercept), "r2": float(fit.rvalue**2)}


def run_means(frame: pd.DataFrame, keys: Sequence[str] = GROUP) -> pd.DataFrame:
    """Per group: the mean value and the widest interval its rows give (``ci_low`` / ``ci_high``,
    NaN where no row has one: eval rows of single runs, say)."""
    grouped = frame.groupby(list(keys), dropna=False)
    return pd.DataFrame(
        {"mean": grouped["value"].mean(), "ci_low": grouped["ci_low"].min(), "ci_high": grouped["ci_high"].max()}
    )


def intervals_apart(table: pd.DataFrame) -> pd.Series:
    """Whether A and B differ beyond noise: their intervals do not overlap; where one side has no
    interval, its value lies outside the other's; where neither has one, only the threshold can say."""
    a_has = table["a_ci_low"].notna() & table["a_ci_high"].notna()
    b_has = table["b_ci_low"].notna() & table["b_ci_high"].notna()
    a_low, a_high = table["a_ci_low"].where(a_has, table["a"]), table["a_ci_high"].where(a_has, table["a"])
    b_low, b_high = table["b_ci_low"].where(b_has, table["b"]), table["b_ci_high"].where(b_has, table["b"])
    return (b_high < a_low) | (b_low > a_high) | ~(a_has | b_has)


# verdicts of ``compare_runs``, one per row
REGRESSED, IMPROVED, NOISE, NO_DIRECTION = "regressed", "improved", "within noise", "no direction"


def compare_runs(
    a: pd.DataFrame, b: pd.DataFrame, keys: Sequence[str] = GROUP, threshold_pct: float = 0.0
) -> pd.DataFrame:
    """Per metric, the mean values of two runs (two GPUs, or before / after), their ratio B / A,
    the change in percent of A and a verdict: ``regressed`` or ``improved`` when the change is
    beyond ``threshold_pct`` and beyond the rows' intervals (``intervals_apart``), ``within
    noise`` otherwise; a change beyond both of a metric with no direction (``higher_is_better``)
    is ``no direction``.
    Sorted by the size of the change, largest first, so the news is on top."""
    sides = [run_means(frame, keys).add_prefix(f"{name}_") for name, frame in (("a", a), ("b", b))]
    joined = pd.concat(sides, axis=1).rename(columns={"a_mean": "a", "b_mean": "b"})
    joined = joined.dropna(subset=["a", "b"]).reset_index()
    joined["ratio_b_over_a"] = joined["b"] / joined["a"]
    with np.errstate(divide="ignore", invalid="ignore"):
        change = (joined["b"] - joined["a"]) / joined["a"].abs() * 100
    joined["change_pct"] = change.where(joined["b"] != joined["a"], 0.0)
    directions = joined["metric"].map(higher_is_better)
    worse = np.where(directions == True, joined["change_pct"] < 0, joined["change_pct"] > 0)
    beyond = (joined["change_pct"].abs() > threshold_pct) & intervals_apart(joined)
    joined["verdict"] = np.select(
        [~beyond, directions.isna(), worse], [NOISE, NO_DIRECTION, REGRESSED], default=IMPROVED
    )
    order = joined["change_pct"].abs().sort_values(ascending=False, na_position="last", kind="stable").index
    return joined.loc[order].reset_index(drop=True)
