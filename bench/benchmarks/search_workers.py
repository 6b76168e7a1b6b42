"""Trial throughput of a search with 2 worker processes against 1, on the same kind of study.

Runs the same suite's search twice into fresh studies (SQLite in a temporary folder, or the
given --storage URL with fresh study names): once with one worker, once with two, and prints
finished trials per minute for each and their ratio. Workers split the machine's cores, so
on a small CPU the ratio shows what parallel trials buy beyond intra-op threading.

    python -m bench.benchmarks.search_workers [--suite quick] [--trials 6] [--storage URL]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import optuna

from bench.search import FINISHED, run_search
from bench.suite import load_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="quick", help="a suite with a [search] table (default quick)")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--storage", help="SQLAlchemy URL (default: SQLite files in a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    suite = load_suite(args.suite)
    if suite.search is None:
        parser.error(f"suite {args.suite!r} has no [search] table")
    suite = replace(suite, search=replace(suite.search, trials=args.trials))

    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            run_dir = Path(tmp) / f"w{workers}"
            name = f"bench-workers{workers}-{uuid.uuid4().hex[:8]}"
            started = time.perf_counter()
            study = run_search(suite, run_dir, args.storage, name, workers)
            minutes = (time.perf_counter() - started) / 60
            finished = sum(t.state in FINISHED for t in study.trials)
            rates[workers] = finished / minutes
    result = {"trials": args.trials, "trials_per_min_1": round(rates[1], 2), "trials_per_min_2": round(rates[2], 2),
              "ratio_2_over_1": round(rates[2] / rates[1], 3)}  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.trials} trials: 1 worker {rates[1]:.1f} trials/min, 2 workers {rates[2]:.1f} trials/min "
              f"-> ratio {rates[2] / rates[1]:.2f}")  # fmt: skip


if __name__ == "__main__":
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    main()
