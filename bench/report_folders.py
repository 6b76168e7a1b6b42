"""Which folders one ``unet-bench report`` reports on. A report ranks one suite's variants under
one protocol (one data set, split, budget and baseline), so a results tree that holds several
trained suites' runs, such as the committed ``results/``, is reported folder by folder, each
into a folder of its own name, never as one ranking across protocols. Profile-only rows
(micro-benchmarks, the fit-against-step check, profile suites) are not a ranking and ride along
with whatever they sit beside. Every folder is read whole before any report is written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.store import PART_GLOB, ResultsError, read_configs, read_results


def trained_suites(frame: pd.DataFrame) -> list[str]:
    """The suites with rows of training (search trials, learning curves, scores): those a report
    ranks or tunes; an interrupted run with search rows alone counts too."""
    return sorted(set(frame.loc[frame["stage"] != "profile", "suite"]))


def report_folders(results: Path) -> list[Path]:
    """``[results]`` when it holds at most one trained suite, else each of its subfolders that
    holds rows (each must then hold at most one); each read and checked here, so that a bad
    folder stops the command before the first report is written."""
    results = Path(results)
    frame = read_results(results)
    suites = trained_suites(frame)
    if len(suites) <= 1:
        check_folder(results, frame)
        return [results]
    if any(results.glob(PART_GLOB)):
        raise ResultsError(
            f"{results}: rows of several suites ({', '.join(suites)}) with results parts directly in it; a report "
            "ranks one suite's variants under one protocol: give each suite's parts a folder of its own"
        )
    folders = [child for child in sorted(results.iterdir()) if child.is_dir() and next(child.rglob(PART_GLOB), None)]
    for folder in folders:
        check_folder(folder, read_results(folder))
    return folders


def check_folder(folder: Path, frame: pd.DataFrame) -> None:
    """Refuse a folder one report cannot be made of: no rows, several trained suites, or a
    stored config that cannot be read."""
    if frame.empty:
        raise ResultsError(f"{folder}: no result rows to report")
    if len(inner := trained_suites(frame)) > 1:
        raise ResultsError(
            f"{folder}: runs of several suites ({', '.join(inner)}); a report ranks one suite's variants "
            "under one protocol: report each run folder on its own"
        )
    read_configs(folder)
