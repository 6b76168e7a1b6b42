"""Wall time of a whole suite's search trials and retrain jobs with 2 workers against 1.

Runs the same small suite twice in one invocation through ``bench.distributed`` on one
database (fresh studies each time): once with one worker, once with two, every job on one
thread in both cases, so the ratio measures the distribution of the work and not torch's
threading. Prints both wall times and their ratio; the target on 2 cores is at least 1.7.

    python -m bench.benchmarks.suite_workers --storage postgresql://USER@HOST/DB [--seeds 4] [--steps 60]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from bench.distributed import run_distributed
from bench.suite import load_suite

TINY_SUITE = Path(__file__).resolve().parents[2] / "tests" / "data" / "tiny-suite.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default=os.environ.get("UNETBENCH_TEST_POSTGRES"),
                        help="a PostgreSQL URL (default: $UNETBENCH_TEST_POSTGRES)")  # fmt: skip
    parser.add_argument("--seeds", type=int, default=4, help="seeds per variant: retrain jobs = 2 x seeds")
    parser.add_argument("--steps", type=int, default=60, help="steps per epoch of every job (2 epochs)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.storage:
        parser.error("give --storage postgresql://... (workers claim jobs through a database)")
    suite = load_suite(TINY_SUITE)
    assert suite.search is not None  # tiny-suite searches: its trials are jobs too
    train = replace(suite.cpu_train or suite.train, steps_per_epoch=args.steps)
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            name = f"bench-suite-{workers}-{uuid.uuid4().hex[:8]}"  # fresh studies, named after the suite
            run = replace(suite, name=name, train=train, cpu_train=None, search=replace(suite.search, trials=1))
            started = time.perf_counter()
            run_distributed(run, Path(tmp) / name / "run", args.storage, args.seeds, workers, print, threads=1)
            seconds[workers] = time.perf_counter() - started
    jobs = 2 * args.seeds + 2
    result = {"jobs": jobs, "seconds_1": round(seconds[1], 1), "seconds_2": round(seconds[2], 1),
              "ratio_1_over_2": round(seconds[1] / seconds[2], 3)}  # fmt: skip
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{jobs} jobs (2 search trials, {2 * args.seeds} retrains), one thread each: 1 worker {seconds[1]:.1f} s, "
              f"2 workers {seconds[2]:.1f} s -> {seconds[1] / seconds[2]:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
