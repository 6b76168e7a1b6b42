"""Aggregation and reports from the golden results tree, checked against independent math."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench import aggregate, report_measured
from bench.console import format_table
from bench.report import SECTIONS, FigureFolder, ReportInputs, build_report, environment_section, text_rows
from bench.store import read_configs, read_results

GOLDEN = Path(__file__).parent / "data" / "golden"
REPO = Path(__file__).parent.parent
# the golden report's sections, in order (as before the report was split into section builders)
GOLDEN_TITLES = [
    "What was measured", "Summary", "Quality per variant", "Ablation deltas against unet-original", "Ranking", "Runtime", "Peak memory",
    "Quality vs throughput (Pareto front)", "Reference: ISBI 2012, Table 1 of the U-Net paper", "Environment",
]  # fmt: skip
V_RAND = {
    "unet-original": [0.80, 0.82, 0.81],
    "unet-gelu": [0.84, 0.85, 0.83],
    "resunet": [0.78, 0.77, 0.79],
    "<b>&evil</b>": [0.70, 0.71, 0.72],
}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return read_results(GOLDEN)


def test_summary_means_and_cis(frame: pd.DataFrame) -> None:
    summary = aggregate.summarize(frame[frame["metric"] == "v_rand"], by=("variant",)).set_index("variant")
    for variant, values in V_RAND.items():
        assert summary.loc[variant, "mean"] == pytest.approx(np.mean(values))
        assert summary.loc[variant, "std"] == pytest.approx(np.std(values, ddof=1))
        low, high = summary.loc[variant, "ci_low"], summary.loc[variant, "ci_high"]
        # Student's t with n - 1 degrees of freedom: from 3 seeds, wider than the seeds' range
        half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
        assert (low, high) == pytest.approx((np.mean(values) - half, np.mean(values) + half))
        assert low < min(values) and high > max(values)


def test_ablation_deltas_are_paired_differences(frame: pd.DataFrame) -> None:
    deltas = aggregate.ablation_deltas(frame, "unet-original", "v_rand").set_index("variant")
    for variant in ("unet-gelu", "resunet"):
        diff = np.array(V_RAND[variant]) - np.array(V_RAND["unet-original"])
        assert deltas.loc[variant, "delta"] == pytest.approx(diff.mean())
        assert deltas.loc[variant, "effect_size_dz"] == pytest.approx(diff.mean() / diff.std(ddof=1))
        assert deltas.loc[variant, "p_wilcoxon"] == pytest.approx(stats.wilcoxon(diff).pvalue)
    assert bool(deltas.loc["unet-gelu", "better"]) and not bool(deltas.loc["resunet", "better"])


def test_a_delta_is_called_better_or_worse_only_when_its_interval_excludes_zero() -> None:
    from bench.report import interval_verdict

    assert interval_verdict(0.01, 0.05, "v_rand") == "better" and interval_verdict(-0.05, -0.01, "v_rand") == "worse"
    assert interval_verdict(-0.05, -0.01, "pixel_error") == "better", "lower pixel error is better"
    assert interval_verdict(-0.02, 0.05, "v_rand") == "not resolved"
    assert interval_verdict(float("nan"), float("nan"), "v_rand") == "no interval"


def test_the_deltas_are_said_in_one_sentence_with_their_intervals() -> None:
    from bench.report import deltas_in_words

    deltas = pd.DataFrame({"variant": ["no-weight-map", "sigma-10", "three-class"], "delta": [-0.031, 0.004, 0.02],
                           "ci_low": [-0.052, -0.01, float("nan")], "ci_high": [-0.012, 0.02, float("nan")],
                           "verdict": ["worse", "not resolved", "no interval"]})  # fmt: skip
    assert deltas_in_words(deltas, "weight-map", "dsb_ap") == (
        "In words, against weight-map: no-weight-map is worse (DSB AP -0.0310 [-0.0520, -0.0120]); "
        "sigma-10 not resolved (DSB AP +0.0040 [-0.0100, +0.0200]); three-class no interval (DSB AP +0.0200)."
    )


def test_pareto_membership() -> None:
    # best throughput (batch 4) of each golden variant: 3 x its batch-1 img/s
    table = pd.DataFrame({"variant": list(V_RAND), "quality": [np.mean(v) for v in V_RAND.values()],
                          "img/s": [30.0, 24.0, 21.0, 60.0]})  # fmt: skip
    front = aggregate.pareto_front(table, "quality", "img/s", True, True)
    q, t = table["quality"].to_numpy(), table["img/s"].to_numpy()
    for i in range(4):  # dominated = another row at least as good on both and better on one
        dominated = any(q[j] >= q[i] and t[j] >= t[i] and (q[j] > q[i] or t[j] > t[i]) for j in range(4))
        assert front.iloc[i] == (not dominated)
    assert front.tolist() == [True, True, False, True], "resunet is slower and worse than unet-original"


def test_scaling_fit_recovers_a_line() -> None:
    fit = aggregate.scaling_fit([1, 2, 4], [900, 1800, 3600])
    assert fit["slope"] == pytest.approx(900) and fit["intercept"] == pytest.approx(0, abs=1e-9) and fit["r2"] == pytest.approx(1)


def test_report_tables_figures_and_escaping(tmp_path: Path) -> None:
    report = build_report(GOLDEN, tmp_path / "golden")
    markdown = (tmp_path / "golden" / "report.md").read_text()
    page = (tmp_path / "golden" / "report.html").read_text()
    titles = [s.title for s in report.sections]
    assert titles == GOLDEN_TITLES
    sections = {s.title: s for s in report.sections}
    summary = sections["Summary"]
    # ranked by mean V_rand, best first (0.84, 0.81, 0.78, 0.71), and the takeaway names the best
    assert summary.table["variant"].tolist() == ["unet-gelu", "unet-original", "resunet", "<b>&evil</b>"]
    assert summary.table["rank"].tolist() == [1, 2, 3, 4]
    assert summary.text.startswith("Takeaway: best mean V_rand: unet-gelu, 0.8400 [")
    assert "<p>Takeaway: best mean V_rand" in page, "the takeaway is a paragraph of its own"
    measured = sections["What was measured"].table.set_index("variant")
    assert measured.loc["unet-gelu", "seeds"] == 3
    overview = summary.table.set_index("variant")
    assert overview.loc["unet-gelu", "V_rand"].startswith("0.8400 [")
    assert overview.loc["unet-gelu", "img/s"] == pytest.approx(24.0)  # best of batch 1, 2, 4
    assert overview.loc["unet-gelu", "peak MiB"] == pytest.approx(950.0 * 4)
    assert "Runtime" in titles and "Quality vs throughput (Pareto front)" in titles
    quality = sections["Quality per variant"].table
    row = quality[(quality["variant"] == "unet-gelu") & (quality["metric"] == "v_rand")].iloc[0]
    assert row["mean"] == pytest.approx(0.84)
    pareto = next(s.table for s in report.sections if s.title.startswith("Quality vs throughput")).set_index("variant")
    assert pareto["pareto"].to_dict() == {"<b>&evil</b>": True, "resunet": False, "unet-gelu": True, "unet-original": True}
    assert pareto.loc["resunet", "img/s"] == pytest.approx(21.0)
    for stem in ("quality", "ablation", "throughput_vs_batch", "memory_vs_batch", "pareto"):
        assert (tmp_path / "golden" / "fig" / f"{stem}.png").stat().st_size > 1000
        assert (tmp_path / "golden" / "fig" / f"{stem}.svg").exists()
    # the hostile variant name never reaches the page unescaped
    assert "<b>&evil</b>" not in page and "&lt;b&gt;&amp;evil&lt;/b&gt;" in page
    assert "<b>&evil</b>" not in markdown
    # self-contained: every image is a data URI, nothing is fetched
    sources = re.findall(r'src="([^"]+)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<script" not in page and "http" not in page.replace("https://", "")


def test_runtime_lines_keep_settings_apart_and_the_breakdown_has_its_section(tmp_path: Path) -> None:
    """channels_last and eager are two measurements, not one averaged line; a failure that a
    resumed suite retried with success shows the measurement; a breakdown shows where the time
    went; the summary says at which setting its img/s was measured."""
    from bench.profile import Measurement, ProfileCfg, measure
    from bench.store import ResultWriter

    fast = dict(input_size=188, warmup=1, min_reps=2, max_reps=3, max_seconds=0.5, device="cpu")
    rows = Measurement.failure(ProfileCfg("unet-16", **fast), RuntimeError("boom")).rows("run-1", suite="settings")
    for cfg in (ProfileCfg("unet-16", **fast), ProfileCfg("unet-16", channels_last=True, breakdown=True, **fast)):
        rows += measure(cfg).rows("run-1", suite="settings")
    ResultWriter(tmp_path / "results" / "run-1").append(rows)
    report = build_report(tmp_path / "results", tmp_path / "report")
    sections = {s.title: s for s in report.sections}
    runtime = sections["Runtime"].table
    assert sorted(runtime["setting"]) == ["channels_last", "eager"] and runtime["img/s"].str.contains(r"\[").all()
    shares = sections["Where the time goes"].table
    assert len(shares) == 1 and shares["setting"].iloc[0] == "channels_last" and shares["convolution"].iloc[0] > 20
    assert sections["Summary"].table["at"].iloc[0].startswith("infer fp32 b1 188 px")
    build_report(tmp_path / "results", tmp_path / "again")  # the same rows give the same files
    for path in (tmp_path / "report").rglob("*.*"):
        assert path.read_bytes() == (tmp_path / "again" / path.relative_to(tmp_path / "report")).read_bytes(), path


def test_section_builders_show_nothing_without_their_rows(frame: pd.DataFrame, tmp_path: Path) -> None:
    """Rows in, a section or nothing out: no builder fails or shows an empty section on rows
    that lack what it draws, and none draws a figure then."""
    figures = FigureFolder(tmp_path / "fig")
    nothing = ReportInputs.of(frame.iloc[0:0])
    assert [build(nothing, figures) for build in SECTIONS] == [None] * len(SECTIONS) and not figures.png
    evals_only = ReportInputs.of(frame[frame["stage"] == "eval"])
    shown = {build.__name__ for build in SECTIONS if build(evals_only, figures) is not None}
    assert shown == {"measured_section", "summary_section", "quality_section", "ablation_section", "ranking_section",
                     "isbi_reference_section", "environment_section"}  # fmt: skip
    assert environment_section(evals_only, figures) is not None
    profiles_only = ReportInputs.of(frame[frame["stage"] == "profile"])
    shown = {build.__name__ for build in SECTIONS if build(profiles_only, figures) is not None}
    assert shown == {"summary_section", "runtime_section", "memory_section", "isbi_reference_section",
                     "environment_section"}  # fmt: skip


def test_a_results_tree_of_eval_rows_alone_reports_quality_only(tmp_path: Path) -> None:
    for part in (GOLDEN / "golden").glob("rows-*.csv"):  # keep the header and the eval rows
        header, *rows = part.read_text().splitlines()
        evals = [row for row in rows if row.split(",")[header.split(",").index("stage")] == "eval"]
        (tmp_path / "evals" / "run").mkdir(parents=True, exist_ok=True)
        (tmp_path / "evals" / "run" / part.name).write_text("\n".join([header, *evals]) + "\n")
    report = build_report(tmp_path / "evals", tmp_path / "report")
    titles = [s.title for s in report.sections]
    profile_titles = ("Runtime", "Peak memory", "Quality vs throughput (Pareto front)")
    assert titles == [title for title in GOLDEN_TITLES if title not in profile_titles]
    assert "img/s" not in report.summary and sorted(report.figures) == ["ablation", "quality"]


def test_the_terminal_summary_is_the_reports_summary(tmp_path: Path) -> None:
    """`unet-bench run` prints ``text_rows(report.summary)``: the same columns and, cell for cell,
    the text of the report's Summary table."""
    report = build_report(GOLDEN, tmp_path)
    rows = text_rows(report.summary)
    markdown = (tmp_path / "report.md").read_text()
    summary = markdown.split("## Summary")[1].split("## ")[0]
    table = [line.strip("|").split(" | ") for line in summary.splitlines() if line.startswith("| ")]
    table = [[cell.strip() for cell in line] for line in table]
    # the metric it is ranked by comes first (it came after pixel error, alphabetical, on every ISBI page)
    assert table[0] == list(rows[0]) == ["rank", "variant", "V_rand", "seeds", "pixel error", "img/s", "at", "peak MiB"]
    assert [[html.unescape(cell) for cell in line] for line in table[1:]] == [list(row.values()) for row in rows]
    original = next(row for row in rows if row["variant"] == "unet-original")
    assert original["V_rand"] == "0.8100 [0.7852, 0.8348]" and original["img/s"] == "30"  # best of batch 1, 2, 4
    printed = format_table(rows, list(rows[0]))
    assert all(cell in printed for row in rows for cell in row.values())


def test_fewer_than_three_values_give_no_interval(tmp_path: Path) -> None:
    """Two seeds are not enough for an interval: the summary says so in words, the tables show a
    dash, never an interval of two values ("0.621 [0.621, 0.621]")."""
    assert all(np.isnan(aggregate.mean_interval([0.62, 0.62]))) and all(np.isnan(aggregate.mean_interval([0.5])))
    low, high = aggregate.mean_interval([0.60, 0.62, 0.64])
    assert low < 0.62 < high
    frame = read_results(GOLDEN)
    two_seeds = frame[frame["seed"] < 2]
    (tmp_path / "run").mkdir()
    two_seeds.to_csv(tmp_path / "run" / "rows-two.csv", index=False)
    report = build_report(tmp_path / "run", tmp_path / "report")
    summary = {s.title: s for s in report.sections}["Summary"].table
    assert summary["V_rand"].str.endswith("(n=2: no interval)").all()
    quality = (tmp_path / "report" / "report.md").read_text().split("## Quality per variant")[1].split("##")[0]
    assert quality.count("| – | – |") == 8, "ci_low and ci_high of 4 variants x 2 metrics"


def test_the_summary_says_when_one_variants_tuning_served_all(tmp_path: Path) -> None:
    """A search of the baseline alone, applied to every variant, is not an equal tuning budget:
    the Summary says so; without a search it says nothing about tuning."""
    frame = read_results(GOLDEN)
    assert "Tuning:" not in build_report(GOLDEN, tmp_path / "plain").sections[1].text
    trials = frame[frame["variant"] == "unet-original"].head(2).assign(stage="search", trial=[0, 1])
    (tmp_path / "run").mkdir()
    pd.concat([frame, trials]).to_csv(tmp_path / "run" / "rows-all.csv", index=False)
    text = build_report(tmp_path / "run", tmp_path / "tuned").sections[1].text
    assert "only unet-original was searched (2 trials)" in text and "not at their own" in text


def test_figures_show_something_and_no_legend_covers_the_data(tmp_path: Path) -> None:
    """The quick run profiles one batch size: its runtime and memory figures are bars per
    variant, not a sweep of one point; every legend lies beside the plot, outside its axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from bench.report import legends_beside_the_data

    quick = max(p for p in (REPO / "results" / "quick").iterdir() if p.is_dir())
    build_report(GOLDEN, tmp_path / "quick")  # batch sweeps: lines against batch size
    assert (tmp_path / "quick" / "fig" / "throughput_vs_batch.png").exists()
    (tmp_path / "quick" / "notes.txt").write_text("the user's")
    report = build_report(quick, tmp_path / "quick")  # the same folder, rebuilt from one batch size
    assert {"throughput", "memory"} <= set(report.figures) and not {"throughput_vs_batch", "memory_vs_batch"} & set(
        report.figures
    )
    left = sorted(p.name for p in (tmp_path / "quick" / "fig").iterdir())
    assert left == sorted(f"{stem}.{kind}" for stem in report.figures for kind in ("png", "svg")), "no stale figure"
    assert (tmp_path / "quick" / "notes.txt").read_text() == "the user's"
    assert "Takeaway: best mean V_rand" in next(s.text for s in report.sections if s.title == "Summary")
    fig, ax = plt.subplots()
    sns.lineplot(x=[0, 1, 2], y=[2, 1, 0], hue=["a", "b", "b"], ax=ax)  # seaborn puts its legend inside
    legends_beside_the_data(fig)
    fig.canvas.draw()
    legend, axes = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes.x1, "the legend starts right of the axes"
    plt.close(fig)


def test_the_opening_says_when_equal_steps_are_not_equal_pixels() -> None:
    """A valid-padded net on a 380 px tile is scored on 196 x 196 pixels, a same-padded one on all
    of 384: the report must say the budget is equal in steps only."""
    from bench.report_measured import area_note, tile_text

    valid = {"variant": "unet-original", "overrides": {"base_width": 4}, "train_cfg": {"tile": 384}}
    same = {"variant": "monai-basicunet", "overrides": {}, "train_cfg": {"tile": 384}}
    assert tile_text(valid) == "380 → 196 px" and tile_text(same) == "384 → 384 px"
    assert "196 to 384 px" in area_note([valid, same]) and f"{(384 / 196) ** 2:.1f}x" in area_note([valid, same])
    assert "tiles (380 to 384 px: each network's nearest accepted size)" in area_note([valid, same]), "not 384 for all"
    assert area_note([valid, valid]) == ""


def test_a_profile_only_report_compares_variants_in_the_configuration_they_share(tmp_path: Path) -> None:
    """results/gpu (an H200 run): every variant was measured eager at bf16, batch 8; unet-original
    also compiled and at batches 1-256. Its Summary line is the shared configuration, not its
    compiled or batch-64 best; the page claims no ranking of quality it does not have, its model
    table gives the forward pass's GFLOP (the paper's 300.9), the time-share table has no stray
    pivot header, and the Runtime text names MFU only where the table has it."""
    results = REPO / "results" / "gpu"
    report = build_report(results, tmp_path)
    summary = report.summary.set_index("variant")
    assert set(summary["at"].str.removeprefix("infer bf16 b8 ").str.split(" ").str[0]) == {"572", "576"}
    assert (summary["at"].str.endswith("px, channels_last")).all(), "no compiled line beside eager ones"
    frame = read_results(results)
    shared = frame[(frame["variant"] == "unet-original") & (frame["metric"] == "throughput") & (frame["mode"] == "infer")
                   & (frame["batch_size"] == 8) & (frame["input_size"] == 572) & (frame["setting"] == "channels_last") & (frame["precision"] == "bf16")]  # fmt: skip
    assert summary.loc["unet-original", "img/s"] == pytest.approx(shared["value"].mean(), abs=0.01)
    sections = {s.title: s for s in report.sections}
    assert "Ranked by" not in sections["Summary"].text and "trained" not in sections["Summary"].text
    models = sections["What was measured"].table.set_index("variant")
    assert models.loc["unet-original", "GFLOP / image"] == "301 at 572 px", "a forward pass, not a training step"
    assert "model-FLOPs utilisation (MFU)" in sections["Runtime"].text
    page = (tmp_path / "report.html").read_text()
    assert "<th>kind</th>" not in page and "| kind |" not in (tmp_path / "report.md").read_text()
    cpu = {s.title: s for s in build_report(GOLDEN, tmp_path / "cpu").sections}
    assert "no MFU (no dense peak is known for this device)" in cpu["Runtime"].text
    # the Peak memory section says which memory it plots: CUDA's allocations, or a CPU's resident set
    assert sections["Peak memory"].text.startswith("Peak CUDA memory allocated by the measured steps")
    assert cpu["Peak memory"].text.startswith("On a CPU: the process's peak resident memory")


def test_the_page_says_when_membrane_scores_took_their_threshold_on_the_scored_images() -> None:
    """The ISBI 2012 organisers (and the paper's Table 1) scored each metric at the best of ten
    thresholds for the test stack; the committed ISBI runs do the same, so their pages say that
    this choice saw the test images. DSB runs decode at validation's threshold and say nothing."""
    for suite, says in (("ablation-filters", True), ("dsb2018", False)):
        run = sorted((REPO / "results" / suite).glob("*/"))[-1]
        settings = next(iter(read_configs(run).values()))
        text = report_measured.split_text(settings)
        assert text.startswith("validation images") and ("a choice made on those images" in text) == says
        assert ("thresholds 0.1 ... 0.9" in text) == (settings["train_cfg"]["val_thresholds"] == "best" and says)


def test_the_pareto_front_counts_output_pixels_where_outputs_differ(tmp_path: Path) -> None:
    """dsb2018: unet-same's 384 px tile yields 384 x 384 output pixels, unet-original's 380 px tile
    196 x 196; per image unet-same is slower, per output pixel faster, and the front says so."""
    report = build_report(sorted((REPO / "results" / "dsb2018").glob("*/"))[-1], tmp_path)
    pareto = {s.title: s for s in report.sections}["Quality vs throughput (Pareto front)"]
    table = pareto.table.set_index("variant")
    same, valid = table.loc["unet-same"], table.loc["unet-original"]
    assert same["img/s"] < valid["img/s"] and same["MPix/s"] > valid["MPix/s"]
    assert same["MPix/s"] / same["img/s"] == pytest.approx(384 * 384 / 1e6, rel=0.02)
    assert valid["MPix/s"] / valid["img/s"] == pytest.approx(196 * 196 / 1e6, rel=0.02)
    front = aggregate.pareto_front(table, "quality", "MPix/s", True, True)
    assert table["pareto"].tolist() == front.tolist() and bool(table.loc["unet-same", "pareto"])
    assert "output megapixels/s" in pareto.text


def test_the_budget_names_the_tile_every_network_actually_trained_on() -> None:
    """ablation-kernels said 'at 380 px tiles' above a model table of 384 px tiles: same-padded
    nets take a multiple of 16. Where some network trains at the requested size, nothing is added."""
    from bench.report import budget_text

    train = {"epochs": 2, "steps_per_epoch": 50, "batch_size": 1, "tile": 380, "optimizer": "adamw", "lr": 1e-3}
    same = [{"variant": v, "overrides": {"base_width": 16}, "train_cfg": train} for v in ("unet-same", "unet-k5")]
    assert budget_text(same).endswith("at 380 px tiles (100 steps), AdamW; budget: equal steps. Learning rate 0.001 "
                                      "for every run. Every network trained on 384 px tiles, the nearest size it accepts.")
    mixed = [*same, {"variant": "unet-original", "overrides": {}, "train_cfg": train}]
    assert "Every network trained on" not in budget_text(mixed)


def test_the_environment_table_shows_each_fingerprint_and_no_bare_line_beside_it() -> None:
    """It kept the first row of each machine: a score written before rows carried a fingerprint
    hid the profile rows' threads and CPU, and runs on 1 and 2 threads made one line."""
    import json as json_module

    from bench.report import environment_table
    from bench.schema import ResultRow

    common = {"run_id": "r", "suite": "s", "variant": "v", "config_hash": "c", "seed": 0, "host": "h", "git_sha": "g"}
    env = {"cpu_model": "AMD EPYC", "cpu_id": "25/17", "cpu_capability": "AVX512", "device_count": 1}
    rows = [ResultRow(stage="eval", metric="v_rand", value=0.5, **common),  # no fingerprint, first
            *(ResultRow(stage="profile", metric="throughput", value=10.0 * threads, seed=threads,
                        extra=json_module.dumps({"env": {**env, "cpu_threads": threads}}),
                        **{k: v for k, v in common.items() if k != "seed"}) for threads in (1, 2, 2))]  # fmt: skip
    table = environment_table(pd.DataFrame([vars(r) for r in rows]))
    assert table["cpu_threads"].tolist() == [1, 2] and set(table["cpu_capability"]) == {"AVX512"}
    assert table["cpu_id"].tolist() == ["25/17", "25/17"]
