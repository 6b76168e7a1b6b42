"""What the search did for each variant, as pandas tables read from the search rows.

A suite with ``per_variant`` tunes each variant in a study of its own with the same budget; the
first trial of each study trains the suite's own settings (``untuned`` in the row's extra), so
every variant's tuned result can be read against its untuned one. Reports show these tables;
they need nothing but the rows.
"""

from __future__ import annotations

import json

import pandas as pd

from bench.metrics import HIGHER_IS_BETTER, RESULT_METRICS


def trial_results(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per finished trial and variant: the search objective's final value, the trial's
    parameters and whether it trained the untuned settings. Empty when nothing was searched."""
    search = frame[(frame["stage"] == "search") & (frame["trial"] >= 0) & frame["metric"].isin(RESULT_METRICS)]
    if search.empty:
        return pd.DataFrame(columns=["variant", "trial", "metric", "value", "params", "untuned"])
    objective = search_objective(frame[frame["stage"] == "search"])
    rows = search[search["metric"] == objective].drop_duplicates(["variant", "trial"], keep="last")
    extras = rows["extra"].map(json.loads)
    table = rows[["variant", "trial", "metric", "value"]].copy()
    table["params"] = extras.map(lambda e: e.get("params", {}))
    table["untuned"] = extras.map(lambda e: bool(e.get("untuned", False)))
    return table.sort_values(["variant", "trial"]).reset_index(drop=True)


def search_objective(search: pd.DataFrame) -> str:
    """The metric the search optimised: the one its trials reported after every epoch
    (``epoch_<objective>`` rows), V_rand for rows that have none."""
    reported = {m.removeprefix("epoch_") for m in search["metric"] if m.startswith("epoch_")}
    return min(reported & set(RESULT_METRICS), default="v_rand")


def best_so_far(trials: pd.DataFrame) -> pd.DataFrame:
    """Each variant's best objective after each finished trial (the study's progress curve)."""
    if trials.empty:
        return trials.assign(best=[])
    higher = trials["metric"].iloc[0] in HIGHER_IS_BETTER
    grouped = trials.groupby("variant")["value"]
    best = grouped.cummax() if higher else grouped.cummin()
    return trials.assign(best=best)


def trial_counts(frame: pd.DataFrame) -> pd.Series:
    """Per variant, the trials its study ran: every trial writes a ``wall_time`` row, whether it
    completed, was pruned or failed, so this is the budget spent, not only what finished."""
    timed = frame[(frame["stage"] == "search") & (frame["trial"] >= 0) & (frame["metric"] == "wall_time")]
    return timed.groupby("variant")["trial"].nunique()


def tuning_table(trials: pd.DataFrame, ran: pd.Series | None = None) -> pd.DataFrame:
    """Per variant: trials run (``ran``, from ``trial_counts``) and finished, the untuned trial's
    validation score, the best trial's, and the best trial's settings (what the variant was
    retrained with)."""
    lines = []
    for variant, group in trials.groupby("variant", sort=True):
        higher = group["metric"].iloc[0] in HIGHER_IS_BETTER
        best = group.loc[group["value"].idxmax() if higher else group["value"].idxmin()]
        untuned = group.loc[group["untuned"], "value"]
        lines.append({
            "variant": variant, "trials": int(ran.get(variant, len(group))) if ran is not None else len(group),
            "finished": len(group),
            "untuned": float(untuned.iloc[0]) if len(untuned) else float("nan"),
            "tuned": float(best["value"]), "best trial": int(best["trial"]),
            "tuned settings": ", ".join(f"{k} {_short(v)}" for k, v in sorted(best["params"].items())),
        })  # fmt: skip
    return pd.DataFrame(lines)


def _short(value: object) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
