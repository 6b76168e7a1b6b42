"""The ``unet-bench`` command line. Each sub-command is a thin shell over a library function."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import textwrap
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from bench.console import format_table
from bench.errors import UsageError, UserError, first_line
from bench.outputs import OutputRoot, add_out_argument, dashboard_line, output_root
from bench.schema import COMPILE_MODES

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from bench.profile import Measurement
    from bench.suite import SuiteCfg

BUG_HINT = (
    "unet-bench: this is a bug in unet-bench, not in your input; please report it with the command and the "
    "traceback above"
)


def cmd_list(args: argparse.Namespace) -> int:
    from variants import list_variants, summarize_variant

    names = list_variants(args.pattern)
    if not names:
        print(f"no variant matches {args.pattern!r}; try `unet-bench list` for all", file=sys.stderr)
        return 1
    rows = [summarize_variant(n, args.input) for n in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        row["params (M)"] = row["params"] / 1e6
        row["size"] = f"{row['input_size']} -> {row['output_size']}"
    print(format_table(rows, ["name", "family", "source", "citation", "params (M)", "gflops", "size", "description"]))
    print(f"\n{len(rows)} variants; GFLOPs = forward FLOPs per image at the input size shown.")
    return 0


def parse_assignments(items: Sequence[str]) -> dict[str, object]:
    """``key=value`` pairs; values are read as TOML literals (numbers, booleans, strings)."""
    import tomllib

    parsed: dict[str, object] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        try:
            parsed[key.strip()] = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            parsed[key.strip()] = raw  # a bare word is a string
    return parsed


def cmd_train(args: argparse.Namespace) -> int:
    from bench.config import RECIPES, default_recipe, split_settings
    from bench.curves import target_line
    from bench.data import DataSpec, parse_indices
    from bench.job import TrainJob, check_run_folder, run_job
    from bench.progress import EpochPrinter
    from bench.runlock import run_lock
    from bench.runner import format_metrics, size_notice

    model_overrides, train_overrides = split_settings(parse_assignments(args.set or ()))
    if args.epochs is not None:
        train_overrides["epochs"] = args.epochs
    if args.minutes is not None:
        train_overrides["max_minutes"] = args.minutes
        train_overrides.setdefault("epochs", 10_000)  # the clock decides
        train_overrides.setdefault("budget", "seconds")
    data = DataSpec.parse(args.data)
    recipe = args.recipe or default_recipe(data.instance_task)
    job = TrainJob(
        variant=args.variant, data=data,
        train=RECIPES[recipe].with_overrides(train_overrides, owner="--set"), overrides=model_overrides,
        val_sections=tuple(parse_indices(args.val_sections)) if args.val_sections else None,
        test_sections=tuple(parse_indices(args.test_sections)) if args.test_sections else (),
    )  # fmt: skip
    config = job.model_config()
    out_dir = Path(args.output) if args.output else output_root(args).checkpoints(args.variant)
    with run_lock(out_dir):  # one process per run folder: a second --resume would train the same epochs
        check_run_folder(out_dir, job, args.resume)
        print(f"recipe: {recipe}" + ("" if args.recipe else f" (the default for {data})"), file=sys.stderr)
        for what, size in (("tile", job.train.tile), ("val_tile", job.train.val_tile)):
            if notice := size_notice(config, size, what):
                print(notice, file=sys.stderr)
        run = run_job(job, out_dir, resume=args.resume, callbacks=(EpochPrinter(job.train.epochs),))
    if args.json:
        print(json.dumps({"checkpoint": str(run.checkpoint), "metrics": run.final, "history": run.fit.history}))
    else:
        print(f"best checkpoint: {run.checkpoint}")
        print(f"held-out {held_out_label(run.split, len(run.per_image))}: {format_metrics(run.final)}")
        if job.train.budget == "target":
            print(target_line(run.fit.history, job.train))
    if run.untrained:
        print(f"warning: this run did not train: {run.untrained}", file=sys.stderr)
    return 0


def held_out_label(split: str, images: int) -> str:
    """'sections test 25-29 (5 images)'; a split too scattered to read (DSB's stratified test
    images) is named by its kind and size only: the checkpoint keeps the indices."""
    if len(split) > 40:
        split = "test split" if split.startswith("test ") else "validation split"
    return f"sections {split} ({images} images)"


def cmd_eval(args: argparse.Namespace) -> int:
    from bench.data import parse_indices
    from bench.job import evaluate_checkpoint
    from bench.runner import format_metrics

    sections = parse_indices(args.val_sections) if args.val_sections else None
    metrics = evaluate_checkpoint(Path(args.checkpoint), args.data, sections)
    print(json.dumps(metrics) if args.json else format_metrics(metrics))
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from bench.runner import format_metrics, score_folders, score_instance_folders

    score = score_instance_folders if args.instances else score_folders
    metrics = score(Path(args.pred), Path(args.truth))
    print(json.dumps(metrics) if args.json else format_metrics(metrics))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from bench.predict import predict_folder

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    out_dir = Path(args.output)
    written = predict_folder(Path(args.checkpoint), Path(args.images), out_dir, args.threshold, args.tile, log)
    print(f"{len(written)} probability maps -> {out_dir / 'probabilities'} (float32 TIFF, P(interior) in [0, 1])")
    print(f"{len(written)} masks -> {out_dir / 'masks'} (PNG, 255 = interior, threshold {args.threshold:g})")
    if (out_dir / "instances").is_dir():
        print(f"{len(written)} instance label images -> {out_dir / 'instances'} (16-bit PNG, 0 = background)")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from bench.fetch import fetch_dataset

    fetch_dataset(args.name, Path(args.dest) if args.dest else None, args.url)
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    """Read a data set the way training will, so a bad file fails now and not at 3 a.m."""
    from bench.data import load_data

    data = load_data(args.spec)
    sizes = sorted({s.image.shape for s in data.samples})
    interior = sum(float(s.mask.mean()) for s in data.samples) / max(len(data), 1)
    shown = ", ".join(f"{w}x{h}" for h, w in sizes[:4]) + (" ..." if len(sizes) > 4 else "")
    instances = sum(s.instances is not None for s in data.samples)
    print(f"{data.source}: {len(data)} images ({shown}), binary labels, {interior:.1%} interior"
          + (f", instance labels for {instances}" if instances else ""))  # fmt: skip
    return 0


def profile_suite(args: argparse.Namespace) -> int:
    """``profile --suite``: every configuration of a profile suite, written as it is measured."""
    from bench.profile_suite import run_profile_suite

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    run_dir, done = run_profile_suite(
        args.suite, Path(args.results or "results"), args.device, args.minutes, log, resume=args.resume
    )
    print(f"{len(done)} measurements written to {run_dir}")
    return 0


def profile_measurements(args: argparse.Namespace) -> list[Measurement]:
    """One measurement per mode asked for, or a batch sweep per mode with ``--batch auto``."""
    from bench.profile import Mode, ProfileCfg, batch_sweep, measure

    modes: list[Mode] = ["infer", "train"] if args.mode == "both" else [args.mode]
    measurements: list[Measurement] = []
    for mode in modes:
        cfg = ProfileCfg(
            variant=args.variant, input_size=args.input, batch_size=1 if args.batch == "auto" else int(args.batch),
            mode=mode, precision=args.precision, channels_last=args.channels_last,
            compile=args.compile, cuda_graphs=args.cuda_graphs, fused_conv=args.fused_conv,
            concat_buffers=args.concat_buffers, device=args.device, max_seconds=args.max_seconds,
            memory_cap_mib=args.memory_cap_mib, breakdown=args.breakdown,
        )  # fmt: skip
        measurements += list(batch_sweep(cfg, args.max_batch)) if args.batch == "auto" else [measure(cfg)]
    return measurements


def cmd_profile(args: argparse.Namespace) -> int:
    if args.suite:
        return profile_suite(args)
    if not args.variant:
        raise UsageError("profile needs --variant NAME (or --suite NAME)")
    import uuid

    from bench.profile_table import profile_table_lines
    from bench.runner import size_notice
    from bench.store import ResultWriter
    from variants import resolve_config

    if notice := size_notice(resolve_config(args.variant), args.input, "--input"):
        print(notice, file=sys.stderr)
    measurements = profile_measurements(args)
    run_id = f"profile-{uuid.uuid4().hex[:8]}"
    rows = [row for m in measurements for row in m.rows(run_id)]
    if args.results:
        path = ResultWriter(Path(args.results) / run_id).append(rows)
        print(f"rows written to {path}", file=sys.stderr)
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], default=str, indent=1))
    else:
        print("\n".join(profile_table_lines(measurements)))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from bench.paths import safe_part
    from bench.report import build_report, check_report_folder
    from bench.report_folders import report_folders
    from bench.store import ResultsError

    results = Path(args.run_folder)
    # the folder's own name (`report ..` names the parent folder), never a path that leaves reports/
    name = safe_part(results.resolve().name, f"the name of results folder {args.run_folder!r}")
    out_dir = Path(args.output) if args.output else output_root(args).reports / name
    folders = report_folders(results)
    if len(folders) > 1 and args.baseline:
        raise ResultsError(
            f"--baseline {args.baseline!r} names one suite's variant, but {results} holds {len(folders)} "
            f"suites' folders: report one of them (unet-bench report {folders[0]} --baseline ...)"
        )
    targets = {folder: out_dir if folder == results else out_dir / safe_part(folder.name, "a results folder's name")
               for folder in folders}  # fmt: skip
    for target in targets.values():  # every folder refused before any report is written
        check_report_folder(target)
    for folder, target in targets.items():
        report = build_report(folder, target, baseline=args.baseline)
        print(f"{len(report.sections)} sections, {len(report.figures)} figures -> {target / 'report.html'}")
    return 0


# `compare --fail-on-regression` exits with this when a metric regressed (2 is a user error)
REGRESSION_EXIT = 3


def compared_rows(args: argparse.Namespace) -> pd.DataFrame:
    """Both runs' rows that ``compare`` keeps (search rows only when asked; ``--metric`` globs)
    and the table of ``compare_runs`` over them."""
    from fnmatch import fnmatchcase

    from bench.aggregate import compare_runs
    from bench.store import ResultsError, read_results

    frames = []
    for run in (args.run_a, args.run_b):
        frame = read_results(Path(run))
        keep = (frame["stage"] != "search") | args.include_search
        if args.metric:
            keep &= frame["metric"].map(lambda m: any(fnmatchcase(m, g) for g in args.metric))
        frames.append(frame[keep])
    table = compare_runs(frames[0], frames[1], threshold_pct=args.threshold)
    if table.empty:
        kept = f" (metrics {', '.join(args.metric)})" if args.metric else ""
        raise ResultsError(f"{args.run_a} and {args.run_b} share no (variant, metric, setting) to compare{kept}")
    return table


def measured_where(row: dict[str, object]) -> str:
    """A profile row's setting in words ("infer eager fp32 b1 96px"); empty for quality rows."""
    parts = [row["mode"], row["setting"]]
    if row["batch_size"]:
        parts += [row["precision"], f"b{row['batch_size']}", f"{row['input_size']}px"]
    return " ".join(str(p) for p in parts if p)


def with_interval(value: float, low: float, high: float) -> str:
    import math

    return f"{value:.4g}" + ("" if math.isnan(low) or math.isnan(high) else f" [{low:.4g}, {high:.4g}]")


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.aggregate import REGRESSED

    table = compared_rows(args)
    regressed = table[table["verdict"] == REGRESSED]
    if args.json:
        print(table.to_json(orient="records"))
    else:
        rows = table.to_dict("records")
        for row in rows:
            row["where"] = measured_where(row)
            row["A"], row["B"] = (with_interval(row[s], row[f"{s}_ci_low"], row[f"{s}_ci_high"]) for s in "ab")
            row["change %"] = f"{row['change_pct']:+.1f}"
        print(format_table(rows, ["variant", "stage", "metric", "where", "A", "B", "change %", "verdict"]))
        counts = table["verdict"].value_counts()
        print(f"\n{len(table)} compared (threshold {args.threshold:g} %): "
              + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()))  # fmt: skip
    if not regressed.empty:
        names = [f"{r['variant']} {r['metric']}" + (f" ({w})" if (w := measured_where(r)) else "")
                 for r in regressed.to_dict("records")]  # fmt: skip
        print(f"regressed: {', '.join(names)}", file=sys.stderr if args.json else sys.stdout)
    return REGRESSION_EXIT if args.fail_on_regression and not regressed.empty else 0


def cmd_search(args: argparse.Namespace) -> int:
    from bench.search import mask_url, run_search
    from bench.suite import load_suite

    suite = load_suite(args.suite)
    if args.variant:
        from variants import get_variant

        get_variant(args.variant)  # an unknown name is refused as one, before it names a study
    variants = [args.variant] if args.variant else list(suite.searched_variants())
    if args.study and len(variants) > 1:
        raise UsageError(f"--study names one study, and {suite.name} tunes {len(variants)} variants: add --variant")
    run_dir = Path(args.output) if args.output else output_root(args).search(suite.name)
    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus is not None else None
    storage = mask_url(args.storage) if args.storage else f"sqlite:///{(run_dir / 'study.db').resolve()}"
    for variant in variants:
        study = run_search(suite, run_dir, args.storage, args.study, args.workers, gpus, variant=variant)
        print(f"study {study.study_name!r} in {storage}: {len(study.trials)} trials")
        print_study(suite, study, run_dir, variant)
    print(f"\nrows: {run_dir}")
    if not args.storage:
        print(f"dashboard: {dashboard_line(run_dir)}")
    return 0


def print_study(suite: SuiteCfg, study: optuna.Study, run_dir: Path, variant: str) -> None:
    """A study's Pareto front (multi-objective) and the trial the suite would retrain."""
    from bench.search import chosen_trial

    search = suite.search
    assert search is not None  # run_search refuses a suite without [search]
    if search.multi_objective:
        names = (search.objective, *search.costs)
        part = run_dir / f"rows-search-pareto-{variant}.csv"
        print(f"Pareto front ({len(study.best_trials)} trials; rows in {part}):")
        for t in sorted(study.best_trials, key=lambda t: t.values[0], reverse=True):
            values = ", ".join(f"{n} {v:.4g}" for n, v in zip(names, t.values))
            print(f"  trial {t.number}: {values}, params {json.dumps(t.params)}")
    best = chosen_trial(study)
    print(f"best: trial {best.number}, {search.objective} {best.values[0]:.4f}, params {json.dumps(best.params)}")


def cmd_status(args: argparse.Namespace) -> int:
    from bench.distributed import status_lines

    print("\n".join(status_lines(Path(args.run_folder), args.storage)))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from bench.data import DataSpec
    from bench.run import run_suite
    from bench.suite import load_suite

    suite = load_suite(args.suite)
    if args.data:
        suite = dataclasses.replace(suite, data=DataSpec.parse(args.data))
    if args.workers is not None or args.join:
        from bench.distributed import check_shared_storage, join_run

        url = check_shared_storage(args.storage, args.workers or 1)
        if args.join:
            run_dir = join_run(suite, run_roots(args)[0], url, args.seeds or suite.seeds, args.workers or 1)
            print(f"joined {run_dir}: every job is done; the machine that started the run writes its report")
            return 0
    results, reports = run_roots(args)
    result = run_suite(suite, results, reports, args.resume, args.seeds, args.storage, workers=args.workers)
    if result.summary:  # the report's Summary, the same cells
        print(format_table(result.summary, list(result.summary[0])))
    for run in result.untrained:
        fold = f" fold {run['fold']}" if "fold" in run else ""
        print(f"did not train, left out of the ranking: {run['variant']} seed {run['seed']}{fold}: {run['why']}")
    if result.ranking:
        print("\n" + "\n".join(result.ranking))
    print(f"\nresults: {result.run_dir}\nreport:  {result.report_dir / 'report.html'}")
    if not args.storage:
        print(f"study:   {dashboard_line(result.run_dir / 'search')}")
    return 0


def run_roots(args: argparse.Namespace) -> tuple[Path, Path]:
    """``run``'s results and reports roots: ``-o`` / ``--reports`` when given, else the checkout's
    committed ``results/`` and ``reports/`` with ``--reference``, else the output root's."""
    root = OutputRoot(Path(".")) if args.reference else output_root(args)
    results = Path(args.output) if args.output else root.results
    return results, Path(args.reports) if args.reports else root.reports


def cmd_ingest(args: argparse.Namespace) -> int:
    from bench.ingest import benchmark_rows
    from bench.store import ResultWriter

    rows = benchmark_rows(Path(args.json_file))
    path = ResultWriter(Path(args.results) / rows[0].run_id).append(rows)
    print(f"{len(rows)} rows from {args.json_file} -> {path}")
    return 0


# One function per sub-command: each registers its arguments and the function that runs it.
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default after its help (none for options without one), and the example
    epilogues kept as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)


def positive_int(text: str) -> int:
    """argparse type of counts and sizes (--seeds, --workers, --tile, ...): 0 or less means nothing."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def image_side(text: str) -> int:
    """argparse type of --input and --tile: a positive side of at most ``MAX_SIDE`` pixels."""
    from bench.config import MAX_SIDE

    value = positive_int(text)
    if value > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"at most {MAX_SIDE} pixels, got {value}")
    return value


def batch_size(text: str) -> int | str:
    """argparse type of profile --batch: 'auto' or a positive whole number."""
    return "auto" if text == "auto" else positive_int(text)


def command(sub: Commands, name: str, help: str, *examples: str) -> argparse.ArgumentParser:
    """A sub-command whose ``--help`` shows defaults and ends with real command lines."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return sub.add_parser(
        name, help=help, description=textwrap.fill(help, 79), epilog=epilog, formatter_class=HelpFormatter
    )


def add_list(sub: Commands) -> None:
    p = command(sub, "list", "list registered variants with parameters, FLOPs and sizes",
                "unet-bench list", "unet-bench list 'unet-*' --input 508", "unet-bench list --json")  # fmt: skip
    p.add_argument("pattern", nargs="?", help="shell-style filter, e.g. 'unet-*' or 'res*' (default: all)")
    p.add_argument("--input", type=image_side, default=572, metavar="N", help="reference input side")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=cmd_list)


def add_train(sub: Commands) -> None:
    p = command(sub, "train", "train one variant and evaluate it on held-out sections",
                "unet-bench train --variant unet-16 --epochs 5",
                "unet-bench train --variant unet-original --data ../shared/data/isbi2012/train --minutes 10 -o runs/isbi",
                "unet-bench train --variant resunet --set lr=3e-4 --set model.base_width=8 --resume -o runs/res")  # fmt: skip
    p.add_argument("--variant", required=True, help="a registered variant (see `unet-bench list`)")
    p.add_argument("--data", default="synthetic", help="'synthetic' (built in) or a data folder")
    p.add_argument("--val-sections", metavar="LIST", help="held-out indices, e.g. 25-29 (default: the last sixth)")
    p.add_argument("--test-sections", metavar="LIST", help="a test split kept out of training and checkpoint choice; "
                   "the final scores are on it (default: none)")  # fmt: skip
    p.add_argument("--epochs", type=int, help="number of epochs (default: the recipe's)")
    p.add_argument("--minutes", type=float, help="wall-clock budget, validation included (default: none)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="training (lr=1e-3, optimizer=adamw) or model (model.base_width=8) settings; repeatable")  # fmt: skip
    p.add_argument("--recipe", choices=["paper", "adamw", "instances"],
                   help="starting settings: the paper's SGD (momentum 0.99), AdamW (fast on CPUs), or AdamW "
                   "for instance data (default: instances for instance labels, else adamw)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in -o")
    add_out_argument(p)
    p.add_argument("-o", "--output", help="checkpoint folder (default: OUT/checkpoints/train-VARIANT)")
    p.add_argument("--json", action="store_true", help="print metrics and history as JSON")
    p.set_defaults(func=cmd_train)


def add_eval(sub: Commands) -> None:
    p = command(sub, "eval", "evaluate a checkpoint (default: its held-out sections)",
                "unet-bench eval unetbench-out/checkpoints/train-unet-16/best.pt",
                "unet-bench eval runs/isbi/best.pt --val-sections 20-29 --json",
                "unet-bench eval runs/isbi/best.pt --data ../shared/data/isbi2012/train")  # fmt: skip
    p.add_argument("checkpoint", help="a best.pt or last.pt written by `unet-bench train` (or a suite run)")
    p.add_argument("--data", help="another data set: every image of it is scored (default: the checkpoint's)")
    p.add_argument("--val-sections", metavar="LIST", help="score these sections instead (default: the held-out ones)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_eval)


def add_score(sub: Commands) -> None:
    p = command(sub, "score", "score prediction images against labels, as the challenge did",
                "unet-bench score --pred out/probabilities --truth ../shared/data/isbi2012/train/labels",
                "unet-bench score --pred out/masks --truth labels/ --json",
                "unet-bench score --instances --pred out/instances --truth ../shared/data/dsb2018/train/labels")  # fmt: skip
    p.add_argument("--pred", required=True,
                   help="folder of P(interior) maps or masks (bright = interior); with --instances, of label images")  # fmt: skip
    p.add_argument("--truth", required=True, help="folder of labels with the same file names")
    p.add_argument("--instances", action="store_true",
                   help="predictions and labels are instance label images (0 = background, one integer id per "
                        "object): print the DSB 2018 score, precision / recall / F1 at IoU 0.5, SEG and AJI")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_score)


def add_predict(sub: Commands) -> None:
    p = command(sub, "predict", "segment every image of a folder with a checkpoint (overlap-tile prediction)",
                "unet-bench predict runs/isbi/best.pt ../shared/data/isbi2012/test/images -o predictions/isbi",
                "unet-bench predict unetbench-out/checkpoints/train-unet-16/best.pt my-images/ -o my-masks --threshold 0.4")  # fmt: skip
    p.add_argument("checkpoint", help="a best.pt written by `unet-bench train` (loaded as tensors only)")
    p.add_argument("images", help="a folder of PNG or single-page TIFF images (greyscale; RGB is averaged)")
    p.add_argument("-o", "--output", required=True, help="output folder: probabilities/STEM.tif (float32 "
                   "P(interior) in [0, 1]) and masks/STEM.png (255 = interior, 0 = membrane)")  # fmt: skip
    p.add_argument("--threshold", type=float, default=0.5, help="P(interior) above which a mask pixel is interior")
    p.add_argument("--tile", type=image_side, help="input tile side (default: the checkpoint's validation tile)")
    p.set_defaults(func=cmd_predict)


def add_suite_and_storage(p: argparse.ArgumentParser, storage_help: str) -> None:
    """The arguments ``run`` and ``search`` share: the suite and the Optuna storage."""
    p.add_argument("suite", help="a suite name (quick, paper, ablation-..., gpu) or a TOML path")
    p.add_argument("--storage", help=storage_help)


def add_status(sub: Commands) -> None:
    p = command(sub, "status", "what a run with --workers has done: search trials and retrain jobs per variant",
                "unet-bench status unetbench-out/results/quick/20261201-101500-abc123 --storage postgresql://u@host/db")  # fmt: skip
    p.add_argument(
        "run_folder", help="the run's folder (results/SUITE/RUN): its name and its suite's name the studies'"
    )
    p.add_argument("--storage", required=True, help="the SQLAlchemy URL the run's workers share")
    p.set_defaults(func=cmd_status)


def add_run(sub: Commands) -> None:
    p = command(sub, "run", "run a whole suite: search, retrain with seeds, evaluate, profile, report",
                "unet-bench run quick", "unet-bench run quick --resume", "unet-bench run quick --reference",
                "unet-bench run paper --data ../shared/data/isbi2012/train --seeds 5 -o results/paper")  # fmt: skip
    add_suite_and_storage(p, "SQLAlchemy URL for the search (default: SQLite in the run folder)")
    p.add_argument("--data", help="override the suite's data: 'synthetic' or a folder (default: the suite's)")
    p.add_argument("--seeds", type=positive_int, help="seeds per variant (default: the suite's)")
    p.add_argument("--workers", type=positive_int,
                   help="processes claiming the suite's search trials and retrain jobs through --storage (a "
                        "database, which other machines can join; docs/scale-out.md); default: all in this process")  # fmt: skip
    p.add_argument("--join", action="store_true",
                   help="add --workers to the suite's latest run under -o (started on another machine, -o shared)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the suite's latest run, skipping finished stages")
    add_out_argument(p)
    p.add_argument("--reference", action="store_true",
                   help="regenerate the committed reference: write into ./results and ./reports of the checkout")  # fmt: skip
    p.add_argument("-o", "--output", help="results root (default: OUT/results)")
    p.add_argument("--reports", help="reports root (default: OUT/reports)")
    p.set_defaults(func=cmd_run)


def add_search(sub: Commands) -> None:
    p = command(sub, "search", "Optuna search of a suite's [search] space (resumable, multi-worker)",
                "unet-bench search quick --variant resunet",
                "unet-bench search quick --workers 2 --gpus 0,1",
                "unet-bench search quick --storage postgresql://user@host/db --study quick-resunet --variant resunet")  # fmt: skip
    add_suite_and_storage(p, "SQLAlchemy URL shared by workers (default: SQLite in the run folder)")
    p.add_argument("--variant", help="tune only this variant (default: every variant the suite tunes)")
    p.add_argument("--study", help="study name (default: SUITE-VARIANT); the same name joins the same study")
    p.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine")
    p.add_argument("--gpus", metavar="LIST", help="GPUs the workers take one each, in turn, e.g. 0,1 "
                   "(default: every visible GPU; empty: none)")  # fmt: skip
    add_out_argument(p)
    p.add_argument("-o", "--output", help="run folder for rows and the default SQLite file "
                   "(default: OUT/results/search-SUITE)")  # fmt: skip
    p.set_defaults(func=cmd_search)


def add_profile(sub: Commands) -> None:
    p = command(sub, "profile", "throughput, latency, memory and FLOPs of a variant",
                "unet-bench profile --variant unet-original --input 572",
                "unet-bench profile --variant unet-bn --mode both --batch auto --device cuda --precision bf16",
                "unet-bench profile --suite cpu-smoke --results results")  # fmt: skip
    p.add_argument("--variant", help="a registered variant (or --suite)")
    p.add_argument("--suite", help="run a profile suite instead (gpu, gpu-fast, cpu-smoke, or a TOML path)")
    p.add_argument("--minutes", type=float, help="with --suite: time budget (default: the suite's)")
    p.add_argument("--resume", action="store_true",
                   help="with --suite: go on with its latest run under --results, skipping what it measured")  # fmt: skip
    p.add_argument("--input", type=image_side, default=572, metavar="N", help="input side (nearest accepted is used)")
    p.add_argument("--batch", type=batch_size, default=1, metavar="N|auto",
                   help="batch size, or 'auto': double until out of memory")  # fmt: skip
    p.add_argument("--max-batch", type=positive_int, default=1024, help="largest batch an auto sweep tries")
    p.add_argument("--mode", choices=["infer", "train", "both"], default="infer",
                   help="measure inference (forward), training steps (forward, backward, optimizer) or both")  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "tf32", "fp16", "bf16"], default="fp32",
                   help="numeric precision (fp16 / bf16 under autocast; tf32 matmuls on Ampere and later)")  # fmt: skip
    p.add_argument("--channels-last", action="store_true", help="NHWC memory layout for model and input")
    p.add_argument("--compile", nargs="?", const="default", choices=COMPILE_MODES,
                   help="torch.compile the model (mode 'default' when none is given)")  # fmt: skip
    p.add_argument("--cuda-graphs", action="store_true", help="fast path: replay the eager step from a CUDA graph")
    p.add_argument("--fused-conv", action="store_true",
                   help="fast path: Inductor's Triton convolution templates, bias and ReLU fused (CUDA)")  # fmt: skip
    p.add_argument("--concat-buffers", action="store_true",
                   help="fast path: skips written into preallocated concatenation buffers (the registry's U-Nets)")  # fmt: skip
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1")
    p.add_argument("--max-seconds", type=float, default=30.0, help="cap on timed repetitions per configuration")
    p.add_argument("--memory-cap-mib", type=float,
                   help="CPU: treat allocations beyond this as out-of-memory (default: no cap)")  # fmt: skip
    p.add_argument("--breakdown", action="store_true",
                   help="also profile a few steps: the share of time in convolutions, copies, element-wise work, ...")  # fmt: skip
    p.add_argument("--results", metavar="DIR",
                   help="also append the rows to DIR/<run>/ (see results/README.md; default: not stored)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the result rows as JSON")
    p.set_defaults(func=cmd_profile)


def add_report(sub: Commands) -> None:
    p = command(sub, "report", "Markdown + self-contained HTML report from a results tree",
                "unet-bench report results/quick/RUN", "unet-bench report results/paper -o reports/paper-all",
                "unet-bench report results/ablation-normalisation/RUN --baseline unet-original",
                "unet-bench report results -o reports   # every suite's folder: reports/<suite>/")  # fmt: skip
    p.add_argument("run_folder", metavar="results",
                   help="a run folder or a tree of them (results/...); a tree of several suites' folders gets one "
                        "report per folder, under -o")  # fmt: skip
    add_out_argument(p)
    p.add_argument("-o", "--output", help="report folder (default: OUT/reports/<name of RESULTS>)")
    p.add_argument("--baseline",
                   help="variant the ablation deltas compare against (default: the suite's baseline, else unet-original)")  # fmt: skip
    p.set_defaults(func=cmd_report)


def add_compare(sub: Commands) -> None:
    p = command(sub, "compare", "compare two runs metric by metric (two GPUs, before / after); "
                f"exit {REGRESSION_EXIT} with --fail-on-regression when a metric regressed",
                "unet-bench compare results/quick/RUN_A results/quick/RUN_B",
                "unet-bench compare before/RUN after/RUN --metric 'throughput*' --metric 'latency_*' --threshold 10",
                "unet-bench compare main/RUN branch/RUN --fail-on-regression  # exit 3 on a regression, for CI")  # fmt: skip
    p.add_argument("run_a", help="the reference run folder (before, or the first machine)")
    p.add_argument("run_b", help="the run folder compared with it (after, or the second machine)")
    p.add_argument("--metric", action="append", metavar="GLOB",
                   help="only metrics matching this shell pattern, e.g. 'v_rand' or 'latency_*'; repeatable "
                   "(default: every metric)")  # fmt: skip
    p.add_argument("--threshold", type=float, default=5.0, metavar="PCT",
                   help="a change counts only beyond this many percent of A, and beyond the rows' intervals "
                   "where they have them")  # fmt: skip
    p.add_argument(
        "--fail-on-regression",
        action="store_true",
        help=f"exit {REGRESSION_EXIT} when any metric regressed (names them on the last line)",
    )
    p.add_argument("--include-search", action="store_true", help="compare search trials' rows too")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON records")
    p.set_defaults(func=cmd_compare)


def add_ingest(sub: Commands) -> None:
    p = command(sub, "ingest", "store pytest-benchmark JSON (bench/benchmarks/test_micro.py) as result rows",
                "pytest bench/benchmarks/test_micro.py --benchmark-json micro.json && unet-bench ingest micro.json",
                "unet-bench ingest micro.json --results results/micro-gpu")  # fmt: skip
    p.add_argument("json_file", help="a pytest-benchmark --benchmark-json file")
    p.add_argument("--results", default="results/micro", help="results root")
    p.set_defaults(func=cmd_ingest)


def add_data(sub: Commands) -> None:
    p = command(sub, "data", "data sets: fetch (with SHA-256 checks), check",
                "unet-bench data fetch isbi2012", "unet-bench data check ../shared/data/isbi2012/train")  # fmt: skip
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    q = command(data_sub, "fetch", "download a known data set and verify every file",
                "unet-bench data fetch isbi2012",
                "unet-bench data fetch isbi2012 --url file:///mnt/mirror/isbi2012 --dest data/isbi2012")  # fmt: skip
    q.add_argument("name", help="isbi2012")
    q.add_argument("--url", help="a mirror laid out like the data set, https:// or file:// (default: the official one)")
    q.add_argument("--dest", help="target folder (default: ~/.cache/unet-bench/data/NAME or $UNETBENCH_DATA/NAME)")
    q.set_defaults(func=cmd_data_fetch)
    q = command(data_sub, "check", "read every image and label as training will, and summarise them",
                "unet-bench data check ../shared/data/isbi2012/train", "unet-bench data check synthetic:count=12,size=128")  # fmt: skip
    q.add_argument("spec", help="a data folder, TIFF stacks folder, CTC sequence, or synthetic[:count=..,size=..]")
    q.set_defaults(func=cmd_data_check)


# In the order `unet-bench --help` lists them.
SUB_COMMANDS = (
    add_list, add_train, add_eval, add_score, add_predict, add_run, add_status, add_search, add_profile, add_report, add_compare,
    add_ingest, add_data,
)  # fmt: skip


def version() -> str:
    """The installed distribution's version; a source checkout run without installing has none."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("unet-bench")
    except PackageNotFoundError:
        from bench import __version__

        return f"{__version__} (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unet-bench", description="Benchmark, ablate and profile U-Net segmentation networks.",
        epilog="examples:\n  unet-bench list\n  unet-bench run quick\n  unet-bench train --variant unet-16 --help",
        formatter_class=HelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUB_COMMANDS:
        add(sub)
    return parser


# the arguments that name folders a command writes into, by their flag
OUTPUT_FOLDERS = {"output": "-o", "reports": "--reports", "results": "--results", "out": "--out"}


def check_output_folders(args: argparse.Namespace) -> None:
    """Before a command starts: a file where one of its output folders (or a folder above it)
    should be, or a folder it cannot write in (read-only, no permission), is a one-line error,
    not a traceback after the training it would have saved."""
    for attr, flag in OUTPUT_FOLDERS.items():
        if (value := getattr(args, attr, None)) is None:
            continue
        folder = Path(value)
        for place in (folder, *folder.parents):
            if place.exists() and not place.is_dir():
                raise UsageError(f"{flag} {folder}: {place} is a file, not a folder; nothing was written")
        existing = next((place for place in (folder, *folder.parents) if place.exists()), Path("."))
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"{flag} {folder}: {existing} cannot be written (read-only or no permission); "
                             "nothing was written: choose another folder")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. A user error is one line and exit 2; an interrupt exit 130; anything else
    is a bug in unet-bench: its traceback, a line asking for a report, and exit 1."""
    args = build_parser().parse_args(argv)
    try:
        check_output_folders(args)
        return int(args.func(args))
    except UserError as exc:
        print(f"unet-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # what is saved stays saved (atomic writes); a command that resumes says how
        hint = "; rerun the same command with --resume to continue" if hasattr(args, "resume") else ""
        print(f"unet-bench: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - anything else is a bug: its traceback, then a request to report it
        from bench.profile import is_oom

        if is_oom(exc):  # a model, batch or tile too large for this machine is the user's to shrink
            print(
                f"unet-bench: error: out of memory ({first_line(exc)}): lower the width, batch or tile", file=sys.stderr
            )
            return 2
        traceback.print_exc()
        print(BUG_HINT, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
