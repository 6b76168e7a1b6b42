"""The report's opening: what was measured, and what the comparison says in plain words.

A reader must know, before any number, on what data, at which model size, with what budget and
how many seeds, on which machine: a 29 k-parameter net on synthetic images and the paper's 31 M
network on ISBI 2012 print the same column names. The takeaway then states only what the rank
analysis resolved, so a best mean inside overlapping intervals is not read as a winner.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from bench.data import DataSpec
from bench.errors import UserError
from bench.metrics import INSTANCE_METRICS, METRICS
from bench.stats import RankAnalysis


def describe_data(spelling: str) -> str:
    """A data spelling as a reader says it: 'built-in synthetic EM images (12 of 128 px, seed 0)'."""
    try:
        spec = DataSpec.parse(spelling) if spelling.startswith("synthetic") else None
    except UserError:
        spec = None
    if spec is not None:
        return f"built-in synthetic EM-like images ({spec.count} of {spec.size} x {spec.size} px, seed {spec.seed})"
    return f"`{spelling}`"


def sections_text(indices: list[int]) -> str:
    from bench.data import format_sections

    return format_sections(indices) if indices else "none"


def split_text(settings: Mapping[str, Any]) -> str:
    """Which images trained, chose checkpoints and scored, from a run's stored settings."""
    val, test = list(settings.get("val_sections", [])), list(settings.get("test_sections", []))
    scored = f"test images {sections_text(test)} (every quality number)" if test else "the validation images"
    split = f"validation images {sections_text(val)} (checkpoint choice and the search), {scored}; training on the rest"
    return split + challenge_scoring_text(settings)


def challenge_scoring_text(settings: Mapping[str, Any]) -> str:
    """Where membrane maps were scored at their best threshold, that this choice saw the scored
    images: the ISBI 2012 organisers' scoring (and the paper's Table 1), optimistic in absolute terms."""
    train = settings.get("train_cfg", {})
    if train.get("val_thresholds", "best") != "best" or train.get("monitor") in INSTANCE_METRICS:
        return ""
    return ("; each membrane metric is scored as the ISBI 2012 organisers scored it (and the paper's Table 1): at "
            "whichever of the thresholds 0.1 ... 0.9 is best for the whole scored stack, a choice made on those "
            "images, so absolute values are optimistic; every variant is scored the same way")  # fmt: skip


def model_settings(overrides: Mapping[str, Any]) -> str:
    """A variant's model overrides in words ('base_width=8, depth=2'); 'as registered' when none."""
    shown = {k: v for k, v in overrides.items() if k != "dropout"}  # dropout is tuned, not a size
    return ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "as registered"


def model_table(frame: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Per variant: the model as trained (overrides), its parameters and GFLOP per image at the
    profiled size, and how many runs scored it."""
    rows: dict[str, dict[str, Any]] = {}
    evals = frame[frame["stage"] == "eval"]
    for key, settings in sorted(configs.items()):
        if key in set(evals["config_hash"]):
            variant = str(settings.get("label") or settings["variant"])  # a suite's arm by its name
            rows[variant] = {"variant": variant, "model settings": model_settings(settings.get("overrides", {})),
                             "training tile → output": tile_text(settings)}  # fmt: skip
            if "arm_settings" in settings:
                rows[variant]["arm"] = arm_text(settings)
    profiled = frame[(frame["stage"] == "profile") & frame["metric"].isin(["params", "gflops_per_image"])]
    for (variant, metric), group in profiled.groupby(["variant", "metric"]):
        row = rows.setdefault(str(variant), {"variant": variant})
        if metric == "params":
            row["parameters"] = f"{int(group['value'].iloc[0]):,}"
        else:  # a forward pass, as the registry counts it; a training step (about 3x) only where none
            forward = group[group["mode"] == "infer"]
            group, step = (forward, "") if not forward.empty else (group, ", training step")
            size = int(group["input_size"].mode().iloc[0])
            row["GFLOP / image"] = f"{group[group['input_size'] == size]['value'].iloc[0]:.3g} at {size} px{step}"
    for variant, n in evals.groupby("variant")["seed"].nunique().items():
        rows.setdefault(str(variant), {"variant": variant})["seeds"] = int(n)
    return pd.DataFrame(list(rows.values()))


def arm_text(settings: Mapping[str, Any]) -> str:
    """What a suite's arm changed ('w0=0.0 on unet-16'), or 'the suite settings' for an empty arm."""
    changed = ", ".join(f"{k}={v}" for k, v in sorted(settings["arm_settings"].items())) or "the suite settings"
    return f"{changed} on {settings['variant']}"


def trained_sides(settings: Mapping[str, Any]) -> tuple[int, int] | None:
    """The tile side a job trained on (the nearest its network accepts) and its output side;
    None where the variant is no longer registered or the settings lack a tile."""
    from variants import resolve_config

    try:
        config = resolve_config(str(settings["variant"]), **settings.get("overrides", {}))
        tile = config.valid_input_size(int(settings["train_cfg"]["tile"]))
        return tile, config.output_size(tile)
    except (KeyError, UserError):
        return None


def tile_text(settings: Mapping[str, Any]) -> str:
    sides = trained_sides(settings)
    return f"{sides[0]} → {sides[1]} px" if sides else "–"


def area_note(settings: list[Mapping[str, Any]]) -> str:
    """Said when the variants' training outputs differ in size: equal steps are then not equal
    supervised pixels, and a reader must weigh the comparison with that."""
    outputs = {s for s in (trained_sides(c) for c in settings) if s is not None}
    sides = sorted({output for _, output in outputs})
    if len(sides) < 2:
        return ""
    ratio = (sides[-1] / sides[0]) ** 2
    inputs = sorted({tile for tile, _ in outputs})
    tiles = (
        f"tiles ({inputs[0]} to {inputs[-1]} px: each network's nearest accepted size)" if len(inputs) > 1 else "tiles"
    )
    return (f"The variants' training {tiles} give outputs of {sides[0]} to {sides[-1]} px a side: at equal steps the "
            f"largest sees {ratio:.1f}x the supervised pixels of the smallest (valid convolutions lose a border), "
            "so the budget is equal in steps, not in pixels.")  # fmt: skip


def machine_text(frame: pd.DataFrame) -> str:
    machines = frame.drop_duplicates(["device", "device_name"])
    names = [f"{m.device_name} ({m.device})" if m.device_name else str(m.device) for m in machines.itertuples()]
    torch = ", ".join(sorted(set(frame["torch_version"].astype(str)) - {""}))
    return f"{'; '.join(names)}, torch {torch}" if torch else "; ".join(names)


def measured_text(frame: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]], budget: str) -> str:
    """Data, split, budget and machine in a few sentences (the models are in the table)."""
    scored = set(frame.loc[frame["stage"] == "eval", "config_hash"])
    settings = [s for k, s in sorted(configs.items()) if k in scored]
    parts = []
    if settings:
        data = sorted({str(s["data"]) for s in settings})
        parts.append(f"Data: {', '.join(describe_data(d) for d in data)}; {split_text(settings[0])}.")
    if budget:
        parts.append(budget)
    parts.append(area_note(settings))
    parts.append(f"Machine: {machine_text(frame)}.")
    return " ".join(p for p in parts if p)


def ranked_summary(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The summary, best first by the headline metric's mean, with its position as 'rank'."""
    label = METRICS[metric].label
    if summary.empty or label not in summary:
        return summary
    means = summary[label].astype(str).str.split(" ").str[0].astype(float)
    order = means.sort_values(ascending=not METRICS[metric].higher_is_better, kind="stable").index
    ranked = summary.loc[order].reset_index(drop=True)
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    first = ["rank", "variant", label, *(c for c in ("seeds", "runs") if c in ranked)]  # ranked by: shown first
    return ranked[first + [c for c in ranked.columns if c not in first]]


def takeaway(ranked: pd.DataFrame, metric: str, analysis: RankAnalysis | str) -> str:
    """One plain sentence or two: the best mean, and which differences the rank test resolved."""
    label = METRICS[metric].label
    if ranked.empty or label not in ranked:
        return ""
    top = ranked.iloc[0]
    head = f"Takeaway: best mean {label}: {top['variant']}, {top[label]}."
    if isinstance(analysis, str):
        return f"{head} No rank test ({analysis}), so no difference between variants is claimed."
    resolved = [f"{p.better} over {p.worse}" for p in analysis.pairs.itertuples() if p.resolved]
    if not resolved:
        return (f"{head} No difference between variants is resolved by the rank test at this budget and seed count: "
                "the order above is not evidence that one variant is better.")  # fmt: skip
    open_pairs = int((~analysis.pairs["resolved"]).sum())
    return (f"{head} Resolved by the rank test: {', '.join(resolved)}; {open_pairs} other pair(s) not resolved "
            "(see Ranking). Its p-values are optimistic (the blocks of one seed share a trained model): where "
            "the ablation deltas' intervals disagree, trust the intervals.")  # fmt: skip
