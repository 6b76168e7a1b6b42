"""Which folders one ``unet-bench report`` reports on. A report ranks one suite's variants under
one protocol (one data set, split, budget and baseline), so a results tree that holds several
scored suites' runs, such as the committed ``results/``, is reported folder by folder, each
into a folder of its own name, never as one ranking across protocols. Profile-only rows
(micro-benchmarks, the fit-against-step check, profile suites) are not a ranking and ride along
with whatever they sit beside."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.store import PART_GLOB, ResultsError, read_results


def scored_suites(frame: pd.DataFrame) -> list[str]:
    """The suites whose rows score held-out data (``eval`` rows): those a report ranks."""
    return sorted(set(frame.loc[frame["stage"] == "eval", "suite"]))


def report_folders(results: Path) -> list[Path]:
    """``[results]`` when it holds at most one scored suite, else each of its subfolders that
    holds rows (each must then hold at most one scored suite)."""
    results = Path(results)
    suites = scored_suites(read_results(results))
    if len(suites) <= 1:
        return [results]
    if any(results.glob(PART_GLOB)):
        raise ResultsError(
            f"{results}: rows of several suites ({', '.join(suites)}) in one run folder; a report ranks one "
            "suite's variants under one protocol, so move each suite's parts into a folder of its own"
        )
    folders = [child for child in sorted(results.iterdir()) if child.is_dir() and next(child.rglob(PART_GLOB), None)]
    for folder in folders:
        if len(inner := scored_suites(read_results(folder))) > 1:
            raise ResultsError(
                f"{folder}: runs of several suites ({', '.join(inner)}); a report ranks one suite's variants "
                "under one protocol: report each run folder on its own"
            )
    return folders
