"""Reports: seaborn figures + Markdown + one self-contained HTML page, from result rows.

``build_report(results, out_dir)`` reads every row under ``results``, aggregates with
``bench.aggregate`` and writes ``report.md``, ``report.html`` (figures embedded as base64, no
external files or scripts) and ``fig/*.png`` / ``fig/*.svg``. The report is a sequence of small
section builders (``SECTIONS``): each reads the parsed rows and returns its section, or None when
the rows hold nothing for it, so one function serves a quick run, an ablation and a GPU profile.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import aggregate, metrics, reference, stats, tuning
from bench import report_measured as opening
from bench.metrics import HIGHER_IS_BETTER, METRICS, RANKED_METRICS, RESULT_METRICS
from bench.owned import ForeignFileError, check_owned, drop_stale
from bench.owned import claim as claim_files
from bench.schema import ENVIRONMENT_COLUMNS, MODEL_MEMORY_METRICS
from bench.store import ResultsError, read_configs, read_results


@dataclass
class Section:
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figure: str | None = None  # stem under fig/


@dataclass
class Report:
    title: str
    sections: list[Section] = field(default_factory=list)
    figures: dict[str, bytes] = field(default_factory=dict)  # stem -> PNG bytes
    # the Summary section's table, which `unet-bench run` also prints (see ``text_rows``)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    untrained: pd.DataFrame = field(default_factory=pd.DataFrame)  # runs left out of the ranking, and why


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class FigureFolder:
    """Where section builders save figures: PNG and SVG under ``out_dir``/fig, and each PNG kept
    for embedding in the page."""

    out_dir: Path
    png: dict[str, bytes] = field(default_factory=dict)  # stem -> PNG bytes

    def save(self, fig: Any, stem: str) -> None:
        claim(self.out_dir, f"fig/{stem}.png", f"fig/{stem}.svg")
        (self.out_dir / "fig").mkdir(parents=True, exist_ok=True)
        legends_beside_the_data(fig)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
        self.png[stem] = buffer.getvalue()
        (self.out_dir / "fig" / f"{stem}.png").write_bytes(buffer.getvalue())
        # no date and fixed element ids: regenerating a report from the same rows changes no file
        with _plt().rc_context({"svg.hashsalt": "unetbench"}):
            fig.savefig(
                self.out_dir / "fig" / f"{stem}.svg", format="svg", metadata={"Date": None}, bbox_inches="tight"
            )
        _plt().close(fig)


def legends_beside_the_data(fig: Any) -> None:
    """Every axes legend moved to the right of its plot, so no legend hides a point or a line
    (``savefig(bbox_inches="tight")`` widens the image to keep it)."""
    import seaborn as sns

    for ax in fig.axes:
        if ax.get_legend() is not None:
            sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False, fontsize="small")


def untrained_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs whose ``trained`` row is 0 (``bench.verdict``): run, variant, seed, fold (-1
    without cross-validation) and why."""
    rows = aggregate.with_folds(
        frame[(frame["stage"] == "eval") & (frame["metric"] == "trained") & (frame["value"] == 0)]
    )
    why = [json.loads(extra).get("reason", "") for extra in rows["extra"]]
    return rows[["run_id", "variant", *aggregate.RUN]].assign(why=why).reset_index(drop=True)


def without_runs(frame: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``frame`` less the eval and eval-image rows of ``runs``: a run that did not train is neither
    ranked nor compared (under cross-validation only that fold's run)."""
    frame = aggregate.with_folds(frame)
    keys = ["run_id", "variant", *aggregate.RUN]
    marked = pd.MultiIndex.from_frame(frame[keys]).isin(pd.MultiIndex.from_frame(runs[keys]))
    return frame[~(frame["stage"].isin(["eval", "eval-image"]).to_numpy() & marked)]


def quality_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean and t interval over runs (seeds; seeds x folds under cross-validation)
    of each quality metric present."""
    evals = frame[(frame["stage"] == "eval") & frame["metric"].isin(RESULT_METRICS)]
    return aggregate.summarize(evals, by=("variant", "metric"))


FIT_METRICS = ("fit_throughput", "step_throughput", "fit_to_step")  # bench.benchmarks.fit_vs_step


def profile_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of profile measurements (micro-benchmarks and fit against the step aside)."""
    return frame[(frame["stage"] == "profile") & frame["mode"].isin(["infer", "train"])
                 & ~frame["metric"].str.startswith("micro_") & ~frame["metric"].isin(FIT_METRICS)]  # fmt: skip


def profile_table(measured: pd.DataFrame) -> pd.DataFrame:
    """``profile_rows`` summarised per variant, metric and configuration."""
    return aggregate.summarize(
        measured, by=("variant", "mode", "metric", "precision", "batch_size", "input_size", "setting")
    )


@dataclass(frozen=True, eq=False)
class ReportInputs:
    """The rows and the tables every section builder reads, computed once per report."""

    frame: pd.DataFrame
    baseline: str | None  # the ablation's reference variant (None: unet-original where present)
    untrained: pd.DataFrame  # untrained_runs: variant, seed, fold, why
    ranked: pd.DataFrame  # ``frame`` without the eval rows of runs that did not train
    quality: pd.DataFrame  # quality_table of ``ranked``
    measured: pd.DataFrame  # profile_rows
    profile: pd.DataFrame  # profile_table
    throughput: pd.DataFrame  # the throughput lines of ``profile``
    summary: pd.DataFrame  # summary_table
    # the settings behind each config_hash (``bench.store.read_configs``), where the rows' folder has them
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    folds: int = 0  # K of k-fold cross-validation (``aggregate.fold_count``); 0 without

    @property
    def runs(self) -> str:
        """What one quality value is: a seed's run, or a (seed, fold) run under cross-validation."""
        return "runs (seed x fold)" if self.folds else "seeds"

    @classmethod
    def of(
        cls, frame: pd.DataFrame, baseline: str | None = None, configs: dict[str, dict[str, Any]] | None = None
    ) -> ReportInputs:
        frame = aggregate.with_folds(frame)
        folds = aggregate.fold_count(frame)
        untrained = untrained_runs(frame)
        ranked = without_runs(frame, untrained)
        quality = quality_table(ranked)
        profiled = profile_rows(frame)
        profile = profile_table(profiled)
        throughput = profile[profile["metric"] == "throughput"]
        summary = summary_table(quality, profile, runs="runs" if folds else "seeds")
        if not quality.empty:
            summary = opening.ranked_summary(summary, headline_metric(quality))
        return cls(frame, baseline, untrained, ranked, quality, profiled, profile, throughput, summary, configs or {},
                   folds)  # fmt: skip

    @functools.cached_property
    def rank(self) -> stats.RankAnalysis | str:
        """The rank analysis of the headline metric, shared by the takeaway and the Ranking section."""
        return stats.rank_analysis(self.ranked, headline_metric(self.quality))


SectionBuilder = Callable[[ReportInputs, FigureFolder], Section | None]


def measured_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    """What was measured, first: data and split, the models as trained, budget, seeds, machine."""
    table = opening.model_table(inputs.frame, inputs.configs)
    if table.empty:
        return None
    scored = set(inputs.frame.loc[inputs.frame["stage"] == "eval", "config_hash"])
    budget = budget_text([s for k, s in sorted(inputs.configs.items()) if k in scored])
    return Section("What was measured", opening.measured_text(inputs.frame, inputs.configs, budget), table)


def summary_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    if inputs.summary.empty:
        return None
    main = headline_metric(inputs.quality) if not inputs.quality.empty else None
    caveat = stats.survivor_caveat(inputs.frame)
    takeaway = (f"{opening.takeaway(inputs.summary, main, inputs.rank)} {caveat}".strip() + "\n\n"
                if main and len(inputs.summary) > 1 else "")  # fmt: skip
    quality = (f"Ranked by mean {METRICS[main].label}, best first. Held-out quality: mean over {inputs.runs} "
               f"[95 % t interval; none from fewer than 3 {inputs.runs}]; runtime: ") if main else "Runtime: "  # fmt: skip
    return Section(
        "Summary", takeaway + fold_note(inputs) + quality + "the best inference img/s "
        "(training where none) at the variant's most measured input size, in the setting, precision and batch size "
        "most variants share, where `at` says which, and the peak "
        "memory of that measurement, on the machine named under Environment." + trained_note(inputs)
        + tuning_note(inputs.frame),
        inputs.summary,
    )  # fmt: skip


def fold_note(inputs: ReportInputs) -> str:
    """Under cross-validation: how many folds, what a run's test images are, and that the search
    chose its settings on fold 0's validation block, which is fold 1's test block."""
    if not inputs.folds:
        return ""
    searched = (" The search chose each variant's settings on fold 0's validation block, which is fold 1's test "
                "block, so fold 1's scores may be slightly optimistic.")  # fmt: skip
    searched = searched if (inputs.frame["stage"] == "search").any() else ""
    return (f"{inputs.folds}-fold cross-validation: {inputs.folds} folds, each run's test images are its fold's "
            f"held-out block (contiguous sections); the fold's validation block is the next one.{searched} ")  # fmt: skip


def trained_note(inputs: ReportInputs) -> str:
    """How many of the scored runs trained: said even when all did, so a reader knows it was checked."""
    evals = inputs.frame[inputs.frame["stage"] == "eval"]
    if evals.empty:  # measurements only: no run was trained to check
        return ""
    verdicts = evals[evals["metric"] == "trained"]
    if verdicts.empty:
        return " Whether each run trained was not checked (rows written before the check existed)."
    failed = len(inputs.untrained)
    if not failed:
        return f" All {len(verdicts)} runs trained (none is constant or beaten by a trivial prediction)."
    runs, verb = ("run", "is") if failed == 1 else ("runs", "are")
    return f" {failed} {runs} of {len(verdicts)} did not train and {verb} left out of every ranking (listed below)."


def tuning_note(frame: pd.DataFrame) -> str:
    """How the compared variants were tuned: each in its own study with the same budget, or one
    variant's tuned settings applied to all (the variants are then compared at that variant's
    optimum, not at their own, and the page must say so)."""
    trials = frame[(frame["stage"] == "search") & (frame["trial"] >= 0)]
    searched = sorted(set(trials["variant"]))
    evaluated = sorted(set(frame.loc[frame["stage"] == "eval", "variant"]))
    if not searched or not evaluated:
        return ""
    per_study = trials.groupby("variant")["trial"].nunique()
    budget = f"{per_study.max()} trials" if per_study.nunique() == 1 else "trials " + ", ".join(
        f"{v} {n}" for v, n in per_study.items()
    )  # fmt: skip
    if set(evaluated) <= set(searched):
        return f" Tuning: every variant was tuned in a study of its own ({budget} each, same sampler seed and pruner)."
    if len(searched) == 1:
        return (
            f" Tuning: only {searched[0]} was searched ({budget}); its best settings were used for every variant, "
            "so the others are compared at its optimum, not at their own."
        )
    return f" Tuning: {', '.join(searched)} were searched ({budget}); the others used the suite's settings."


def untrained_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    if inputs.untrained.empty:
        return None
    return Section(
        f"Runs that did not train ({len(inputs.untrained)})",
        "Left out of every quality table, delta and Pareto front below: a run whose test prediction is constant, "
        "that scores no better than predicting every pixel interior or every pixel membrane, or whose training "
        "loss stayed flat has learnt nothing to compare (docs/statistics.md).",
        untrained_table(inputs),
    )


def untrained_table(inputs: ReportInputs) -> pd.DataFrame:
    """The runs that did not train as shown: variant, seed, the fold under cross-validation, why."""
    return inputs.untrained[["variant", "seed", *(["fold"] if inputs.folds else []), "why"]]


def headline_metric(quality: pd.DataFrame) -> str:
    """``metrics.headline_metric`` of the metrics a quality table holds."""
    return metrics.headline_metric(quality["metric"])


def quality_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    quality = inputs.quality
    if quality.empty:
        return None
    main = headline_metric(quality)
    data = quality[quality["metric"] == main].sort_values("mean", ascending=main not in HIGHER_IS_BETTER)
    fig, ax = _plt().subplots(figsize=(7, 0.45 * len(data) + 1.5))
    ax.errorbar(data["mean"], data["variant"], xerr=[data["mean"] - data["ci_low"], data["ci_high"] - data["mean"]],
                fmt="o", capsize=3)  # fmt: skip
    ax.set_xlabel(f"{main} (mean, 95 % CI)")
    figures.save(fig, "quality")
    text = (
        f"Mean over {inputs.runs} with 95 % Student-t intervals (held-out images); fewer than 3 "
        f"{inputs.runs} give no interval (–)."
    )
    if not inputs.folds:
        return Section("Quality per variant", text, _with_ci(quality), "quality")
    text = fold_note(inputs) + text + " Fold `all`: every run; fold 0, 1, ...: that fold's runs (mean over seeds)."
    return Section("Quality per variant", text, fold_quality_table(inputs), "quality")


def fold_quality_table(inputs: ReportInputs) -> pd.DataFrame:
    """The quality table with a ``fold`` column: each variant's line over every run (``all``), then
    one line per fold over its seeds."""
    evals = inputs.ranked[(inputs.ranked["stage"] == "eval") & inputs.ranked["metric"].isin(RESULT_METRICS)]
    per_fold = aggregate.summarize(evals, by=("variant", "fold", "metric"))
    table = pd.concat([_with_ci(inputs.quality).assign(fold="all"), _with_ci(per_fold).assign(fold=per_fold["fold"])])
    table["order"] = table["fold"].map(lambda f: -1 if f == "all" else int(f))
    table = table.sort_values(["variant", "metric", "order"], kind="stable").drop(columns="order")
    return table[["variant", "fold", "metric", "mean", "ci_low", "ci_high", "std", "n"]].reset_index(drop=True)


def stored_baseline(configs: dict[str, dict[str, Any]]) -> str | None:
    """The baseline a suite named for its run (its [variants] baseline or first arm), kept in
    the run's stored job settings; None when none or when the folder holds several runs' that differ."""
    named = {str(settings["baseline"]) for settings in configs.values() if settings.get("baseline")}
    return named.pop() if len(named) == 1 else None


def ablation_baseline(inputs: ReportInputs) -> str | None:
    """The variant others are compared with: the given baseline, else unet-original; None when
    it has no quality rows or nothing to be compared with."""
    variants = set(inputs.quality["variant"])
    baseline = inputs.baseline or ("unet-original" if "unet-original" in variants else None)
    return baseline if baseline in variants and len(variants) >= 2 else None


def ablation_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    baseline = ablation_baseline(inputs)
    if baseline is None:
        return None
    main = headline_metric(inputs.quality)
    deltas = aggregate.ablation_deltas(inputs.ranked[inputs.ranked["stage"] == "eval"], baseline, main)
    deltas = with_image_intervals(deltas, inputs.ranked, baseline, main, folds=bool(inputs.folds))
    deltas = deltas.drop(columns="better").assign(
        verdict=[interval_verdict(r.ci_low, r.ci_high, main) for r in deltas.itertuples()],
        effect_size_dz=deltas["effect_size_dz"].round(1),  # from 3 pairs d_z is rough; 17.632 claimed too much
    )
    fig, ax = _plt().subplots(figsize=(7, 0.45 * len(deltas) + 1.5))
    ax.errorbar(deltas["delta"], deltas["variant"],
                xerr=[deltas["delta"] - deltas["ci_low"], deltas["ci_high"] - deltas["delta"]], fmt="s", capsize=3)  # fmt: skip
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlabel(f"delta {main} vs {baseline}")
    figures.save(fig, "ablation")
    run = "run (seed and fold)" if inputs.folds else "seed"
    paired = "seed, fold" if inputs.folds else "seed"
    return Section(
        f"Ablation deltas against {baseline}",
        f"Paired by {run}: mean difference in {main}, Wilcoxon signed-rank p and Cohen's d_z (rough from few "
        f"{inputs.runs}: one decimal). The 95 % interval is a "
        f"hierarchical bootstrap over {inputs.runs}, then the held-out images within each, where per-image scores were "
        f"stored (`paired_by` {paired}, image), never narrower than the t interval over the {inputs.runs}' differences "
        f"(else that t interval alone). Fewer than 3 {inputs.runs} give no "
        f"interval (–); with few {inputs.runs} the p-value cannot be small. `verdict`: better or worse only when the "
        "whole interval lies on one side of zero, else not resolved. " + deltas_in_words(deltas, baseline, main),
        deltas, "ablation",
    )  # fmt: skip


def deltas_in_words(deltas: pd.DataFrame, baseline: str, metric: str) -> str:
    """The verdicts as one sentence a reader can quote: 'Against weight-map: no-weight-map is
    worse (DSB AP -0.031 [-0.052, -0.012]); sigma-10: not resolved (...).'"""
    label = METRICS[metric].label if metric in METRICS else metric
    parts = []
    for row in deltas.itertuples():
        interval = "" if math.isnan(row.ci_low) else f" [{row.ci_low:+.4f}, {row.ci_high:+.4f}]"
        said = f"is {row.verdict}" if row.verdict in ("better", "worse") else row.verdict
        parts.append(f"{row.variant} {said} ({label} {row.delta:+.4f}{interval})")
    return f"In words, against {baseline}: {'; '.join(parts)}."


def interval_verdict(low: float, high: float, metric: str) -> str:
    """'better' or 'worse' when the delta's whole interval lies on one side of zero, else 'not resolved'
    (or 'no interval'): the sign of a mean alone says nothing a reader should act on."""
    if math.isnan(low) or math.isnan(high):
        return "no interval"
    if low > 0 or high < 0:
        return "better" if (low > 0) == (metric in HIGHER_IS_BETTER) else "worse"
    return "not resolved"


def budget_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    """The training budget of the runs, stated once near the top, and with ``budget = "target"``
    how many runs reached the target and how fast."""
    scored = set(inputs.frame.loc[inputs.frame["stage"].isin(["eval", "curve"]), "config_hash"])
    text = budget_text([settings for key, settings in sorted(inputs.configs.items()) if key in scored])
    target = time_to_target_table(inputs.frame)
    if not text and target is None:
        return None
    if target is not None:
        text += (" Time to target: seconds on the clock (validation included) and steps until the first validation "
                 "that reached the target; the means are over the seeds that reached it.")  # fmt: skip
    return Section("Training budget", text.strip(), target)


def budget_text(configs: list[dict[str, Any]]) -> str:
    """One sentence per distinct budget of ``configs`` (stored job settings, ``bench.store.read_configs``):
    'Each run: 4 epochs x 12 steps of batch 4 at 92 px tiles (48 steps), AdamW; budget: equal steps.'
    The learning rate is named only when every run shares it (a tuned one is in the Tuning section)."""
    if not configs:
        return ""
    budgets: dict[str, list[str]] = {}
    for settings in configs:
        budgets.setdefault(run_budget(settings["train_cfg"]), []).append(str(settings.get("variant", "")))
    rates = {float(settings["train_cfg"]["lr"]) for settings in configs}
    rate = f" Learning rate {rates.pop():.3g} for every run." if len(rates) == 1 else " Learning rates: as tuned."
    if len(budgets) == 1:
        return f"Each run: {next(iter(budgets))}.{rate}{actual_tiles_text(configs)}"
    each = "; ".join(f"{', '.join(sorted(set(variants)))}: {budget}" for budget, variants in budgets.items())
    return f"The runs differ in budget. {each}.{rate}"


def actual_tiles_text(configs: list[dict[str, Any]]) -> str:
    """Where no network trained on the requested tile (same-padded nets take a multiple of 16:
    380 px becomes 384), the size they did train on, so the sentence matches the model table."""
    requested = {int(settings["train_cfg"]["tile"]) for settings in configs}
    sides = [opening.trained_sides(settings) for settings in configs]
    actual = {side[0] for side in sides if side is not None}
    if None in sides or actual & requested:  # a network of unknown size may have trained at the request
        return ""  # some train at the requested size, and the opening's area note names the others
    shown = " to ".join(str(side) for side in sorted({min(actual), max(actual)}))
    return f" Every network trained on {shown} px tiles, the nearest size it accepts."


def run_budget(train: dict[str, Any]) -> str:
    """A training config's steps, batch, tile, optimiser and named budget, in words."""
    epochs, steps = int(train["epochs"]), int(train["steps_per_epoch"])
    optimiser = {"adamw": "AdamW", "sgd": "SGD"}.get(train["optimizer"], train["optimizer"])
    schedule = "" if train.get("schedule", "constant") == "constant" else f", {train['schedule']} schedule"
    words = (f"{epochs} epoch{'s' if epochs != 1 else ''} x {steps} steps of batch {train['batch_size']} at {train['tile']} px tiles "
             f"({epochs * steps} steps), {optimiser}{schedule}; budget: ")  # fmt: skip
    minutes, budget = train.get("max_minutes"), train.get("budget", "steps")
    if budget == "seconds":
        return words + f"equal wall-clock time, {minutes:g} min per run, validation included (the steps are a ceiling)"
    if budget == "target":
        label = METRICS[train["monitor"]].label
        return words + f"time to validation {label} {train['target']:g} (the steps are a ceiling)"
    return words + "equal steps" + (f", or {minutes:g} min if that ends a run first" if minutes else "")


def time_to_target_table(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Per variant: how many runs reached the target, and their mean seconds and steps to it."""
    evals = frame[frame["stage"] == "eval"]
    reached = evals[evals["metric"] == "target_reached"]
    if reached.empty:
        return None
    lines = []
    for variant, group in reached.groupby("variant"):
        line: dict[str, Any] = {"variant": variant, "reached": f"{int(group['value'].sum())} of {len(group)} runs"}
        for metric in ("time_to_target", "steps_to_target"):
            values = evals.loc[(evals["variant"] == variant) & (evals["metric"] == metric), "value"]
            unit = METRICS[metric].unit
            column = f"{METRICS[metric].label} ({unit})"
            line[column] = round(float(values.mean()), 2 if unit == "s" else 1) if len(values) else "not reached"
        lines.append(line)
    return pd.DataFrame(lines)


def curve_points(frame: pd.DataFrame) -> pd.DataFrame:
    """The ``curve`` rows with their epoch, step and seconds (from ``extra``) as columns."""
    curves = frame[frame["stage"] == "curve"]
    points = pd.DataFrame([json.loads(e) for e in curves["extra"]], index=curves.index)
    curves = aggregate.with_folds(curves)
    return curves[["run_id", "variant", *aggregate.RUN, "metric", "value"]].join(points[["epoch", "step", "seconds"]])


def curve_label(metric: str) -> str:
    """'val_v_rand' -> 'validation V_rand', 'train_loss' -> 'training loss'."""
    label = metric_label(metric.removeprefix("val_"))
    return f"validation {label}" if metric.startswith("val_") else label


def curves_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    """Validation score and training loss after each epoch, against steps and against seconds."""
    if not (inputs.frame["stage"] == "curve").any():
        return None
    points = curve_points(inputs.frame)
    val_metrics = points.loc[points["metric"].str.startswith("val_"), "metric"]
    monitor = val_metrics.mode().iloc[0] if len(val_metrics) else None
    shown = [m for m in (monitor, "train_loss") if m is not None and (points["metric"] == m).any()]
    fig, axes = _plt().subplots(len(shown), 2, figsize=(10, 3.4 * len(shown)), squeeze=False)
    for row, metric in enumerate(shown):
        for col, (x, label) in enumerate((("step", "step"), ("seconds", "seconds (wall clock, validation included)"))):
            draw_curves(axes[row][col], points[points["metric"] == metric], x)
            axes[row][col].set_xlabel(label)
            axes[row][col].set_ylabel(curve_label(metric))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.98), fontsize=8, frameon=False)
    figures.save(fig, "learning_curves")
    drawn = " and ".join(curve_label(m) for m in shown)
    text = (
        f"{drawn[0].upper() + drawn[1:]} after each epoch of every retrained run, against "
        "the steps taken (left) and the seconds on the clock, validation included (right). Thin lines: one run "
        f"each; thick: the mean over {inputs.runs} at each epoch (a run that stopped early leaves the mean)."
    )
    return Section("Learning curves", text, curve_table(points, monitor), "learning_curves")


def draw_curves(ax: Any, points: pd.DataFrame, x: str) -> None:
    """One thin line per run, one thick mean line per variant, a colour per variant."""
    for number, (variant, group) in enumerate(points.groupby("variant")):
        colour = f"C{number % 10}"
        for _, run in group.groupby(["run_id", *aggregate.RUN]):
            run = run.sort_values("epoch")
            ax.plot(run[x], run["value"], color=colour, lw=0.8, alpha=0.35)
        mean = group.groupby("epoch")[[x, "value"]].mean()
        ax.plot(mean[x], mean["value"], color=colour, lw=2, marker="o", ms=3, label=variant)


def curve_table(points: pd.DataFrame, monitor: str | None) -> pd.DataFrame | None:
    """Per variant: runs, mean steps and seconds at the last epoch, and the mean best validation score."""
    if monitor is None:
        return None
    scores = points[points["metric"] == monitor]
    last = scores.sort_values("epoch").groupby(["variant", "run_id", *aggregate.RUN]).last()
    name = monitor.removeprefix("val_")
    best = scores.groupby(["variant", "run_id", *aggregate.RUN])["value"]
    best = best.max() if name in HIGHER_IS_BETTER else best.min()
    table = pd.DataFrame({
        "runs": last.groupby("variant").size(), "steps": last.groupby("variant")["step"].mean(),
        "seconds": last.groupby("variant")["seconds"].mean(), f"best {curve_label(monitor)}": best.groupby("variant").mean(),
    })  # fmt: skip
    return table.round(4).reset_index()


def with_image_intervals(
    deltas: pd.DataFrame, ranked: pd.DataFrame, baseline: str, metric: str, folds: bool = False
) -> pd.DataFrame:
    """``deltas`` with the hierarchical (run, image) bootstrap interval for each variant whose
    runs, like the baseline's, stored per-image scores; the others keep their interval over runs.
    A run is a seed, or a (seed, fold) pair under cross-validation."""
    hierarchical = stats.hierarchical_deltas(ranked, baseline, metric).set_index("variant")
    run = "seed, fold" if folds else "seed"
    deltas = deltas.assign(paired_by=run, images=0)
    has = deltas["variant"].isin(hierarchical.index)
    if not has.any():
        return deltas
    for column in ("ci_low", "ci_high", "images"):
        deltas.loc[has, column] = deltas.loc[has, "variant"].map(hierarchical[column])
    deltas.loc[has, "paired_by"] = f"{run}, image"
    return deltas


def ranking_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    """autorank's mean ranks and verdicts, the interquartile mean and the probability of
    improvement over the baseline (``bench.stats``), with the critical-difference diagram."""
    if inputs.quality["variant"].nunique() < 2:
        return None
    main = headline_metric(inputs.quality)
    analysis = inputs.rank
    table = ranking_table(inputs, main, analysis, ablation_baseline(inputs))
    caveat = stats.survivor_caveat(inputs.frame)
    if isinstance(analysis, str):
        return Section("Ranking", f"No rank test on {main}: {analysis}. {caveat}".strip(), table)
    figure = stats.cd_figure(analysis)
    if figure is not None:
        figures.save(figure, "ranking_cd")
    text = f"{ranking_text(analysis)} {caveat}".strip()
    return Section("Ranking", text, table, "ranking_cd" if figure is not None else None)


def ranking_table(
    inputs: ReportInputs, metric: str, analysis: stats.RankAnalysis | str, baseline: str | None
) -> pd.DataFrame:
    """Per variant, best first where ranked: mean rank, IQM and P(better than the baseline), each
    with its stratified bootstrap interval (none from fewer than 3 seeds: the bootstrap redraws
    seeds within each image, and under cross-validation an image has one run per seed)."""
    runs = inputs.quality[inputs.quality["metric"] == metric].set_index("variant")["n"]
    evals = inputs.ranked[(inputs.ranked["stage"] == "eval") & (inputs.ranked["metric"] == metric)]
    seeds = evals.groupby("variant")["seed"].nunique() if inputs.folds else runs
    ranked = [] if isinstance(analysis, str) else list(analysis.ranks["variant"])
    order = ranked + sorted(set(runs.index) - set(ranked))  # left out of the rank test: no mean rank
    rows = []
    for variant in order:
        row: dict[str, Any] = {"variant": variant, "seeds": int(seeds[variant])}
        if inputs.folds:
            row["runs"] = int(runs[variant])
        if not isinstance(analysis, str):
            row["mean rank"] = float(analysis.ranks.set_index("variant")["mean_rank"].get(variant, math.nan))
        row[f"IQM {metric}"] = interval_text(stats.iqm(inputs.ranked, variant, metric), row["seeds"])
        if baseline is not None and variant != baseline:
            poi = stats.probability_of_improvement(inputs.ranked, variant, baseline, metric)
            row[f"P(better than {baseline})"] = interval_text(poi, row["seeds"], digits=2)
        rows.append(row)
    return pd.DataFrame(rows)


def interval_text(estimate: tuple[float, float, float], n: int, digits: int = 4) -> str:
    """(value, low, high) as ``with_interval`` writes it."""
    value, low, high = estimate
    return with_interval(value, {"ci_low": low, "ci_high": high}, n, digits)


def ranking_text(analysis: stats.RankAnalysis) -> str:
    """What the rank test found, in words: which differences are resolved and which are not."""
    pairs = analysis.pairs
    resolved = ", ".join(f"{p.better} > {p.worse}" for p in pairs.itertuples() if p.resolved) or "none"
    unresolved = ", ".join(f"{p.better} vs {p.worse}" for p in pairs.itertuples() if not p.resolved) or "none"
    if analysis.test == "friedman":
        test = (f"Friedman test over {analysis.n_blocks} blocks ({analysis.blocks}): chi-square "
                f"{analysis.statistic:.2f}, p = {analysis.p_value:.3g}; Nemenyi post-hoc: two variants differ when "
                f"their mean ranks differ by more than the critical difference CD = {analysis.cd:.2f} (the bar in "
                "the diagram joins those that do not).")  # fmt: skip
    else:
        test = (f"Two variants: one-sided Wilcoxon signed-rank test over {analysis.n_blocks} blocks "
                f"({analysis.blocks}), p = {analysis.p_value:.3g}.")  # fmt: skip
    left_out = stats.left_out_text(analysis.left_out)
    left_out = f" {left_out[0].upper()}{left_out[1:]}." if left_out else ""
    return (f"autorank (nonparametric) on {analysis.metric}, rank 1 the best. {test} Resolved: {resolved}. "
            f"Not resolved: {unresolved}.{left_out} Blocks of one seed share a trained model, so p-values here are optimistic; "
            "the ablation intervals above are the primary evidence (docs/statistics.md).")  # fmt: skip


def at_main_setting(rows: pd.DataFrame, throughput: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``rows`` at the ``main_setting`` of ``throughput``, and that setting in words."""
    precision, size, setting = main_setting(throughput)
    chosen = rows[(rows["precision"] == precision) & (rows["input_size"] == size) & (rows["setting"] == setting)]
    return chosen, f"{precision}, {size} px input, {setting}"


def runtime_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:

    if inputs.throughput.empty:
        return None
    lines, plotted = at_main_setting(inputs.throughput, inputs.throughput)
    stem = draw_per_batch(figures, lines, "img/s", "throughput", plotted)
    table = profile_configurations(inputs.measured)
    mfu = ("model-FLOPs utilisation (MFU) against the device's dense peak" if "MFU" in table
           else "no MFU (no dense peak is known for this device)")  # fmt: skip
    eager = ("`x eager`: img/s over the eager line of the same run (same layout, batch and input); where the two "
             "intervals overlap, the difference is not resolved. " if "x eager" in table else "")  # fmt: skip
    return Section(
        "Runtime",
        "One line per measured configuration: median step time as img/s with the 95 % interval of the "
        f"median, output megapixels/s, latency percentiles, achieved TFLOP/s, {mfu}, and peak memory. "
        f"{eager}The figures show {plotted}.",
        table, stem,
    )  # fmt: skip


def draw_per_batch(figures: FigureFolder, rows: pd.DataFrame, label: str, stem: str, plotted: str) -> str:
    """Lines against batch size when several were measured (``STEM_vs_batch``), else one bar per
    variant and mode at the one batch size (``STEM``): a sweep of one point shows nothing."""
    import seaborn as sns

    fig, ax = _plt().subplots(figsize=(7, 4))
    if rows["batch_size"].nunique() > 1:
        sns.lineplot(data=rows, x="batch_size", y="mean", hue="variant", style="mode", marker="o", ax=ax)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="batch size", ylabel=label)
        stem = f"{stem}_vs_batch"
    else:
        bars = rows.sort_values("mean", ascending=False)
        sns.barplot(data=bars, y="variant", x="mean", hue="mode" if bars["mode"].nunique() > 1 else None, ax=ax)
        ax.set(xlabel=label, ylabel="")
        plotted += f", batch {int(rows['batch_size'].iloc[0])}"
    ax.set_title(plotted, fontsize=9)
    figures.save(fig, stem)
    return stem


def memory_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:

    if inputs.throughput.empty:
        return None
    rows, plotted = at_main_setting(inputs.profile, inputs.throughput)
    memory = memory_rows(rows)
    if memory.empty:
        return None
    stem = draw_per_batch(figures, memory, "peak memory (MiB)", "memory", plotted)
    return Section("Peak memory", MEMORY_MEANING[str(memory["metric"].iloc[0])] + f" The figure shows {plotted}.",
                   None, stem)  # fmt: skip


# what each of MODEL_MEMORY_METRICS is, as the Peak memory section says it
MEMORY_MEANING = {
    "peak_memory_allocated": "Peak CUDA memory allocated by the measured steps (max_memory_allocated after a reset).",
    "peak_memory_rss_increase": "On a CPU: how far the process's resident memory rose above its level before the "
    "measured steps (the kernel's high-water mark). It includes the allocator's caching and freed memory not yet "
    "handed back, so differences of a few tens of MiB between variants are within its noise.",
    "peak_memory_rss": "On a CPU: the process's peak resident memory during the measured steps, the interpreter "
    "and libraries included, so it says little about the model alone.",
}


def time_share_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    if inputs.throughput.empty:
        return None
    shares = time_share_table(inputs.measured)
    if shares.empty:
        return None
    return Section(
        "Where the time goes",
        "Share of a step's time in each kind of operation (torch.profiler over a few steps: kernel time "
        "on CUDA, operator time on CPU). Convolutions are the FLOPs; copies, casts, concatenation and "
        "element-wise work move memory and do little arithmetic, so their share is what keeps MFU low.",
        shares,
    )  # fmt: skip


def pareto_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    import seaborn as sns

    if inputs.quality.empty or inputs.throughput.empty:
        return None
    front = pareto_table(inputs.quality, inputs.profile)
    if front.empty:
        return None
    speed = "MPix/s" if "MPix/s" in front else "img/s"
    fig, ax = _plt().subplots(figsize=(7, 4.5))
    shown = front.assign(front=front["pareto"].map({True: "on the front", False: "dominated"}))
    sns.scatterplot(data=shown, x=speed, y="quality", hue="front", style="front", s=80, ax=ax)
    ax.set_ylabel(f"{metric_label(headline_metric(inputs.quality))} (mean over {inputs.runs})")
    ax.set_xlabel("output megapixels/s" if speed == "MPix/s" else "img/s")
    for _, row in front.iterrows():
        ax.annotate(row["variant"], (row[speed], row["quality"]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")  # fmt: skip
    figures.save(fig, "pareto")
    return Section(
        "Quality vs throughput (Pareto front)",
        "A variant is on the front when no other is both better and faster"
        + (", in output megapixels/s (valid and same padding yield different outputs from one tile)"
           if speed == "MPix/s" else "") + ", at the measurement the Summary shows. Throughput is a median of one measurement on this machine: a front decided by a few "
        "percent of speed is within its noise (see the intervals under Runtime).",
        front, "pareto",
    )  # fmt: skip


def search_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    """Each variant's tuning: untuned against tuned validation score, its tuned settings, its
    best-so-far curve, and the parameter importances."""
    trials = tuning.trial_results(inputs.frame)
    if trials.empty:
        return None
    objective = trials["metric"].iloc[0]
    curves = tuning.best_so_far(trials)
    fig, ax = _plt().subplots(figsize=(7, 3.8))
    for number, (variant, curve) in enumerate(curves.groupby("variant", sort=True)):
        ax.plot(curve["trial"], curve["value"], "o", color=f"C{number}", alpha=0.35)
        ax.step(curve["trial"], curve["best"], where="post", color=f"C{number}", label=variant)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trial (finished)")
    ax.set_ylabel(f"validation {metric_label(objective)}")
    ax.legend()
    figures.save(fig, "search_history")
    table = tuning.tuning_table(trials, tuning.trial_counts(inputs.frame)).round(4)
    importances = importance_table(inputs.frame[inputs.frame["stage"] == "search"])
    text = (
        f"Validation {metric_label(objective)} of each variant's Optuna study: dots are finished trials, lines "
        "the best so far (`trials` ran, `finished` reached their last epoch; pruned trials stop early and have no "
        "final value). `untuned` is the study's first "
        "trial, the suite's own settings; `tuned` its best trial, whose settings the variant was retrained with."
        + tuning_note(inputs.frame)
    )
    if importances is not None:
        text += " Parameter importances (fANOVA): " + importances + "."
    return Section("Tuning", text, table, "search_history")


def metric_label(name: str) -> str:
    """The metric's label from the one metric table, its name where it has none."""
    return METRICS[name].label if name in METRICS else name


def importance_table(search: pd.DataFrame) -> str | None:
    """The studies' parameter importances (``param_importance`` rows) as text, per variant; None
    where none were written."""
    importances = search[search["metric"] == "param_importance"]
    if importances.empty:
        return None
    params = importances["extra"].map(lambda e: json.loads(e).get("param"))
    parts = [
        f"{variant}: " + ", ".join(f"{p} {v:.2f}" for p, v in zip(params[group.index], group["value"]))
        for variant, group in importances.groupby("variant", sort=True)
    ]
    return "; ".join(parts)


def search_front_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    """A multi-objective search's Pareto front: its table, and every finished trial's quality
    against the first cost with the front drawn through."""
    frame = inputs.frame
    front = frame[frame["stage"] == "search-pareto"]
    if front.empty:
        return None
    quality = next(m for m in front["metric"].unique() if m in RESULT_METRICS)
    cost = next(m for m in front["metric"].unique() if m != quality)
    table = front.pivot_table(index="trial", columns="metric", values="value").reset_index().rename_axis(columns=None)
    params = front.drop_duplicates("trial").set_index("trial")["extra"]
    table["params"] = table["trial"].map(lambda t: json.dumps(json.loads(params[t]).get("params", {})))
    table = table.sort_values(cost)
    trials = frame[(frame["stage"] == "search") & frame["metric"].isin([quality, cost])]
    points = trials.pivot_table(index="trial", columns="metric", values="value").dropna()
    fig, ax = _plt().subplots(figsize=(7, 4))
    ax.plot(points[cost], points[quality], "o", alpha=0.5, label="finished trial")
    ax.plot(table[cost], table[quality], "o-", color="C3", label="Pareto front")
    ax.set_xlabel(metric_label(cost))
    ax.set_ylabel(metric_label(quality))
    ax.legend()
    figures.save(fig, "search_pareto")
    return Section(
        "Search: Pareto front", f"Trials that no other trial beats on {quality} and every cost at once "
        "(multi-objective study; every trial trained in full, none pruned).", table.round(4), "search_pareto",
    )  # fmt: skip


def isbi_reference_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    """The U-Net paper's ISBI 2012 table, next to results on that data."""
    if not inputs.frame["dataset"].str.contains("isbi", case=False).any():
        return None
    table1 = pd.DataFrame(reference.ISBI2012_TABLE1, columns=["group", "warping error", "Rand error", "pixel error"])
    return Section(
        "Reference: ISBI 2012, Table 1 of the U-Net paper",
        f"{reference.CITATION} Scored on the challenge's secret test labels; our numbers are on "
        "held-out training sections, so compare scale, not rank.", table1,
    )  # fmt: skip


def micro_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    micro = micro_table(inputs.frame)
    if micro.empty:
        return None
    return Section("Micro-benchmarks", "pytest-benchmark, bench/benchmarks/test_micro.py.", micro)


def fit_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    """fit() against the profiler's training step (``python -m bench.benchmarks.fit_vs_step``)."""
    rows = inputs.frame[inputs.frame["metric"].isin(FIT_METRICS)]
    if rows.empty:
        return None
    keys = ["run_id", "variant", "device_name", "precision", "batch_size", "input_size", "setting"]
    table = rows.pivot_table(index=keys, columns="metric", values="value", aggfunc="last").reset_index()
    names = {"fit_throughput": "fit img/s", "step_throughput": "step img/s", "fit_to_step": "fit / step"}
    table = table.reindex(columns=[*keys[1:], *names]).rename(columns=names).rename_axis(columns=None)
    return Section(
        "Training loop against its step",
        "img/s of fit() (tile sampling, elastic deformation, weight maps and weighted cross-entropy; its "
        "first epoch as warm-up, no validation) beside the profiler's bare training step of the same "
        "variant, batch, tile and precision, measured one after the other in one process. The target "
        "on a GPU is a ratio of at least 0.9.",
        table.round(3),
    )  # fmt: skip


def environment_section(inputs: ReportInputs, figures: FigureFolder) -> Section | None:
    if inputs.frame.empty:
        return None
    return Section("Environment", "", environment_table(inputs.frame))


# The report's sections in order; each builder shows what its rows allow, or nothing.
SECTIONS: tuple[SectionBuilder, ...] = (
    measured_section, summary_section, budget_section, untrained_section, quality_section, ablation_section, ranking_section,
    curves_section, runtime_section, memory_section, time_share_section, pareto_section, search_section,
    search_front_section, isbi_reference_section, micro_section, fit_section,
    environment_section,
)  # fmt: skip


class ReportFolderError(ForeignFileError):
    """A report folder holding files unet-bench did not write: a report never replaces them."""


MANIFEST = ".unet-bench-report"  # in a report folder: the files unet-bench wrote there, one per line


def check_report_folder(out_dir: Path) -> None:
    """Refuse, before writing anything, a folder where the report would replace a file it did
    not write (a user's ``report.md``, say): each existing ``report.md``, ``report.html`` and
    ``fig/`` file must be listed in the folder's manifest, which only a report writes."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ReportFolderError(f"{out_dir}: a link or a file where the report's folder would go; choose another -o")
    candidates = [out_dir / "report.md", out_dir / "report.html", out_dir / "fig"]  # a file named fig blocks fig/
    candidates += sorted(p for kind in ("png", "svg") for p in (out_dir / "fig").glob(f"*.{kind}"))
    check_owned(out_dir, MANIFEST, candidates, "choose another report folder (-o)", ReportFolderError)


def claim(out_dir: Path, *names: str) -> None:
    """List ``names`` in the folder's manifest before they are written, so a report killed
    half-way leaves no file of its own that the next report would take for a user's."""
    claim_files(out_dir, MANIFEST, names, "a report")


def build_report(results: Path, out_dir: Path, title: str | None = None, baseline: str | None = None) -> Report:
    """Aggregate every row under ``results`` into ``out_dir``/report.{md,html} and figures."""
    import seaborn as sns

    frame = read_results(results)
    if frame.empty:
        raise ResultsError(f"{results}: no result rows to report")
    scored = set(frame.loc[frame["stage"] == "eval", "variant"])  # a profiled-only variant has no deltas
    if baseline is not None and baseline not in scored:
        variants = ", ".join(sorted(scored)) or "none"
        raise ResultsError(f"--baseline {baseline!r}: no such variant with scores in {results} (scored: {variants})")
    check_report_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plt()  # the Agg backend before the theme and any figure
    sns.set_theme(style="whitegrid", context="notebook")
    configs = read_configs(results)
    inputs = ReportInputs.of(frame, baseline or stored_baseline(configs), configs)
    figures = FigureFolder(out_dir)
    sections = [section for build in SECTIONS if (section := build(inputs, figures)) is not None]
    report = Report(
        title or default_title(frame, configs), sections, figures.png, inputs.summary, untrained_table(inputs)
    )
    claim(out_dir, "report.md", "report.html")
    (out_dir / "report.md").write_text(to_markdown(report))
    (out_dir / "report.html").write_text(to_html(report))
    drawn = [f"fig/{stem}.{kind}" for stem in figures.png for kind in ("png", "svg")]
    drop_stale(out_dir, MANIFEST, ["report.md", "report.html", *drawn], "a report")
    return report


def default_title(frame: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]]) -> str:
    """The suites reported and, where every scored run trained on a CPU, how short their training
    was: such numbers show the pipeline and an effect's direction, not full-size quality, and the
    title says so wherever the report is regenerated (not only in a hand-written one)."""
    suites = ", ".join(sorted(frame["suite"].unique()))
    evals = frame[frame["stage"] == "eval"]
    if evals.empty:
        return f"unetbench report: {suites}"
    title = f"unetbench: {suites} suite"
    if set(evals["device"]) != {"cpu"}:
        return title
    hashes = set(evals["config_hash"])
    scored = [s["train_cfg"] for k, s in configs.items() if k in hashes and "train_cfg" in s]
    steps = sorted({int(t["epochs"]) * int(t["steps_per_epoch"]) for t in scored})
    span = "" if not steps else f", {steps[0]}" + (f"-{steps[-1]}" if len(steps) > 1 else "") + " steps per run"
    return f"{title} (CPU-sized: trained on a CPU{span})"


ENVIRONMENT_DETAILS = [
    "device_count",
    "driver_version",
    "cudnn_version",
    "cpu_model",
    "cpu_id",
    "cpu_capability",
    "cpu_threads",
]


def environment_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One line per distinct machine and software: the row columns, and the rest of the
    fingerprint where rows carry it in ``extra["env"]`` (profiles and micro-benchmarks)."""
    columns = list(ENVIRONMENT_COLUMNS)
    candidates = frame.drop_duplicates([*columns, "extra"])  # a few distinct extras per run, not one per row
    details = pd.DataFrame(
        [json.loads(e).get("env") or {} for e in candidates["extra"]], index=candidates.index, dtype=object
    )
    shown = [c for c in ENVIRONMENT_DETAILS if c in details]
    lines = pd.concat([candidates[columns], details[shown]], axis=1).astype(object)
    known = details[shown].notna().any(axis=1) if shown else pd.Series(False, index=lines.index)
    # a machine's rows without a fingerprint (scores written before rows carried one) add nothing
    # where others of it have one; distinct threads or kernels on one machine are lines of their own
    described = lines[known].drop_duplicates()
    bare = lines[~known].drop_duplicates(columns)
    bare = bare[~bare.set_index(columns).index.isin(described.set_index(columns).index)]
    return pd.concat([described, bare]).sort_index().reset_index(drop=True).fillna("")


def memory_rows(prof: pd.DataFrame) -> pd.DataFrame:
    """The rows of the memory the measured model needed (``MODEL_MEMORY_METRICS``, in order)."""
    for name in MODEL_MEMORY_METRICS:
        rows = prof[prof["metric"] == name]
        if not rows.empty:
            return rows
    return prof.iloc[0:0]


def main_setting(throughput: pd.DataFrame) -> tuple[str, int, str]:
    """The (precision, input size, setting) with the most throughput rows: figures draw it, so a
    line never averages bf16 with fp32 or one resolution with another."""
    counts = throughput.groupby(["precision", "input_size", "setting"]).size()
    precision, size, setting = counts.idxmax()
    return str(precision), int(size), str(setting)


def summary_table(quality: pd.DataFrame, prof: pd.DataFrame, runs: str = "seeds") -> pd.DataFrame:
    """One row per variant: headline quality with CIs next to throughput and memory, at the
    measurement ``compared_throughput`` picks; ``at`` says which, since img/s differ by size and
    setting. ``runs`` names the column of the quality's sample size ("runs" under cross-validation)."""
    rows: dict[str, dict[str, Any]] = {}
    for _, q in quality[quality["metric"].isin(RANKED_METRICS)].iterrows():
        label = METRICS[q["metric"]].label
        rows.setdefault(q["variant"], {"variant": q["variant"]})[label] = with_interval(q["mean"], q, int(q["n"]))
        rows[q["variant"]][runs] = int(q["n"])
    memory = memory_rows(prof)
    for variant, best in compared_throughput(prof[prof["metric"] == "throughput"]).iterrows():
        entry = rows.setdefault(variant, {"variant": variant})
        entry["img/s"] = round(float(best["mean"]), 2)
        entry["at"] = f"{best['mode']} {best['precision']} b{best['batch_size']} {best['input_size']} px" + (
            "" if best["setting"] == "eager" else f", {best['setting']}"
        )
        match = memory[(memory[MEASUREMENT] == best[MEASUREMENT]).all(axis=1)]
        if not match.empty:
            entry["peak MiB"] = round(float(match["mean"].max()), 1)
    return pd.DataFrame(list(rows.values()))


# what makes two rows of ``profile_table`` one measurement: its memory, MPix/s and img/s belong together
MEASUREMENT = ["variant", "mode", "precision", "batch_size", "input_size", "setting"]


def compared_throughput(throughput: pd.DataFrame) -> pd.DataFrame:
    """The throughput line per variant (index) that variants are compared by: the best inference
    measurement (training where none) at the variant's most measured input size, among the
    configurations (setting, precision, batch) most variants share where it has one, so that a
    compiled batch-64 run is not set against eager batch-8 ones."""
    alike = ["setting", "precision", "batch_size"]
    counts = throughput.groupby(alike)["variant"].nunique()
    shared = pd.MultiIndex.from_tuples(counts[counts == counts.max()].index, names=alike) if len(counts) else None
    chosen = {}
    for variant, group in throughput.groupby("variant"):
        infer = group[group["mode"] == "infer"]
        group = infer if not infer.empty else group
        common = group[pd.MultiIndex.from_frame(group[alike]).isin(shared)] if shared is not None else group
        group = common if not common.empty else group
        group = group[group["input_size"] == group["input_size"].mode().iloc[0]]
        chosen[variant] = group.loc[group["mean"].idxmax()]
    return pd.DataFrame.from_dict(chosen, orient="index")


def _with_ci(summary: pd.DataFrame) -> pd.DataFrame:
    table = summary[["variant", "metric", "mean", "ci_low", "ci_high", "std", "n"]].copy()
    return table.round(5)


CONFIGURATION = ["variant", "mode", "precision", "batch_size", "input_size", "output_size", "setting"]
# profile metric -> column of the Runtime table
RUNTIME_COLUMNS = {
    "throughput_mpix": "MPix/s", "latency_p50": "p50 ms", "latency_p99": "p99 ms",
    "tflops_achieved": "TFLOP/s", "mfu": "MFU",
}  # fmt: skip


def profile_configurations(measured: pd.DataFrame) -> pd.DataFrame:
    """One line per measured configuration (repeated measurements: the latest), with img/s and
    its interval, MPix/s, latency, TFLOP/s, MFU, peak memory, and why a line has no numbers."""
    lines = []
    for keys, group in measured.groupby(CONFIGURATION, sort=False):
        latest = group[group["run_id"] == group["run_id"].iloc[-1]].drop_duplicates("metric", keep="last")
        values = latest.set_index("metric")
        line: dict[str, Any] = dict(zip(CONFIGURATION, keys))
        line["_run"], line["_img_s"] = latest["run_id"].iloc[0], (math.nan, math.nan, math.nan)
        if "throughput" in values.index:
            t = values.loc["throughput"]
            line["img/s"] = f"{t['value']:.1f} [{t['ci_low']:.1f}, {t['ci_high']:.1f}]"
            line["_img_s"] = (float(t["value"]), float(t["ci_low"]), float(t["ci_high"]))
        for measure, column in RUNTIME_COLUMNS.items():
            if measure in values.index:
                line[column] = round(float(values.loc[measure, "value"]), 3)
        memory = [m for m in MODEL_MEMORY_METRICS if m in values.index]
        if memory:
            line["peak MiB"] = round(float(values.loc[memory[0], "value"]), 1)
        if "throughput" not in values.index:  # a failure retried with success keeps its measurement
            outcome = next((o for o in ("oom", "skipped") if o in values.index), "failed")
            reason = json.loads(values.loc[outcome, "extra"]).get(outcome)
            line["img/s"] = "out of memory" if outcome == "oom" else f"{outcome}: {reason}"
        lines.append(line)
    table = pd.DataFrame(lines)
    if any(setting not in ("eager", "channels_last") for setting in table["setting"]):
        table.insert(table.columns.get_loc("img/s") + 1, "x eager", against_eager(table))
    table = table.drop(columns=["_run", "_img_s"])
    table = table.sort_values(["variant", "mode", "precision", "input_size", "setting", "batch_size"], kind="stable")
    return table.astype(object).where(table.notna(), "")


def against_eager(table: pd.DataFrame) -> list[str]:
    """Each line's img/s over its eager twin's (same variant, mode, precision, batch, input and
    layout) in the same run, so a fast-path setting is never compared with another run's eager."""
    lines = table.to_dict("records")
    twin = ["variant", "mode", "precision", "batch_size", "input_size", "_run"]
    eager = {(*(line[k] for k in twin), line["setting"]): line["_img_s"] for line in lines}
    column = []
    for line in lines:
        base = "channels_last" if "channels_last" in str(line["setting"]).split(", ") else "eager"
        value, low, high = line["_img_s"]
        ref_value, ref_low, ref_high = eager.get((*(line[k] for k in twin), base), (math.nan,) * 3)
        if line["setting"] == base or math.isnan(value) or math.isnan(ref_value):
            column.append("")
            continue
        overlap = low <= ref_high and ref_low <= high  # the medians' intervals: not resolved
        column.append(f"{value / ref_value:.2f}x" + (" (intervals overlap)" if overlap else ""))
    return column


def micro_table(frame: pd.DataFrame) -> pd.DataFrame:
    """pytest-benchmark rows (``unet-bench ingest``): median ms with the interquartile range."""
    micro = frame[frame["metric"].str.startswith("micro_")]
    table = micro[["metric", "variant", "mode", "batch_size", "input_size", "device_name", "value"]].copy()
    table["IQR ms"] = [round(json.loads(e).get("iqr_ms", float("nan")), 4) for e in micro["extra"]]
    table["metric"] = table["metric"].str.removeprefix("micro_")
    return table.rename(columns={"value": "median ms"}).round(4).reset_index(drop=True)


def time_share_table(measured: pd.DataFrame) -> pd.DataFrame:
    """Per configuration with a breakdown: the share of each operation kind, in percent."""
    shares = measured[measured["metric"].str.startswith("time_share_")].copy()
    if shares.empty:
        return shares
    shares["kind"] = shares["metric"].str.removeprefix("time_share_")
    table = shares.pivot_table(index=CONFIGURATION, columns="kind", values="value", aggfunc="last") * 100
    return table.round(1).fillna(0.0).reset_index().rename_axis(columns=None)  # no stray 'kind' header


def pareto_table(quality: pd.DataFrame, profile: pd.DataFrame) -> pd.DataFrame:
    """Each variant's main quality metric against its compared throughput (``compared_throughput``),
    with front membership by output megapixels/s where measured: a same-padded net's tile yields
    3.8x the output pixels of a valid one's at 380 px, so per image it would be undersold."""
    main = headline_metric(quality)
    q = quality[quality["metric"] == main].set_index("variant")["mean"].rename("quality")
    best = compared_throughput(profile[profile["metric"] == "throughput"])
    mpix = profile[profile["metric"] == "throughput_mpix"].set_index(MEASUREMENT)["mean"]
    at = (
        pd.MultiIndex.from_frame(best[MEASUREMENT])
        if not best.empty
        else pd.MultiIndex.from_tuples([], names=MEASUREMENT)
    )
    cost = pd.DataFrame({"img/s": best["mean"], "MPix/s": mpix.reindex(at).to_numpy()}, index=best.index)
    table = pd.concat([q, cost], axis=1).dropna(subset=["quality", "img/s"]).rename_axis("variant").reset_index()
    if table.empty:
        return table
    by = "MPix/s" if table["MPix/s"].notna().all() else "img/s"
    table["pareto"] = aggregate.pareto_front(table, "quality", by, main in HIGHER_IS_BETTER, True)
    return table.dropna(axis=1, how="all")


def _markdown_table(table: pd.DataFrame) -> str:
    header = "| " + " | ".join(str(c) for c in table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def with_interval(value: float, ci: Any, n: int, digits: int = 4) -> str:
    """'0.8100 [0.8000, 0.8200]', or 'n=2: no interval' beside the value where too few independent
    values make one (``aggregate.MIN_INTERVAL_N``)."""
    if pd.isna(ci["ci_low"]) or pd.isna(ci["ci_high"]):
        return f"{value:.{digits}f} (n={n}: no interval)"
    return f"{value:.{digits}f} [{ci['ci_low']:.{digits}f}, {ci['ci_high']:.{digits}f}]"


def _cell_text(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "–"  # not a number: no interval, no p-value, nothing measured
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def _md_cell(value: Any) -> str:
    return html.escape(_cell_text(value)).replace("|", "\\|")


def text_rows(table: pd.DataFrame) -> list[dict[str, str]]:
    """``table`` as text for the terminal, each cell written as the Markdown report writes it
    (missing ones blank): `unet-bench run` prints the report's Summary digit for digit."""
    return [{column: "" if pd.isna(value) else _cell_text(value) for column, value in row.items()}
            for row in table.to_dict("records")]  # fmt: skip


def to_markdown(report: Report) -> str:
    parts = [f"# {html.escape(report.title)}", ""]
    for section in report.sections:
        parts += [f"## {html.escape(section.title)}", ""]
        if section.text:  # names in the text (a variant, an arm) are data: no tag or entity may start
            parts += [section.text.replace("&", "&amp;").replace("<", "&lt;"), ""]
        if section.figure:
            parts += [f"![{section.figure}](fig/{section.figure}.png)", ""]
        if section.table is not None:
            parts += [_markdown_table(section.table), ""]
    return "\n".join(parts)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
"""


def to_html(report: Report) -> str:
    """One file: CSS inline, figures as data URIs, every text escaped."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(report.title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]  # fmt: skip
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.extend(f"<p>{html.escape(paragraph)}</p>" for paragraph in section.text.split("\n\n"))
        if section.figure and section.figure in report.figures:
            data = base64.b64encode(report.figures[section.figure]).decode()
            parts.append(f'<img alt="{html.escape(section.figure)}" src="data:image/png;base64,{data}">')
        if section.table is not None:
            table = section.table.to_html(
                index=False, escape=True, float_format=lambda v: f"{v:.5g}", na_rep="–", border=0
            )
            parts.append(table)
    parts.append("</body></html>")
    return "\n".join(parts)
