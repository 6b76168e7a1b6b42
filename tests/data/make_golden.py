"""Writes the small golden results tree the aggregation and report tests read.

Run from the repository root: python tests/data/make_golden.py. The values are fixed by hand,
so the tests can compute every expected table entry independently.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.schema import ResultRow
from bench.store import ResultWriter

ROOT = Path(__file__).parent / "golden"
COMMON = dict(run_id="golden", suite="golden", config_hash="0" * 12, dataset="isbi2012", split="25-29",
              device="cpu", device_name="Golden CPU", torch_version="2.x", git_sha="abc", host="golden-host",
              timestamp="2026-01-01T00:00:00+00:00")
# v_rand and pixel_error per variant per seed
EVAL = {
    "unet-original": ([0.80, 0.82, 0.81], [0.090, 0.088, 0.089]),
    "unet-gelu": ([0.84, 0.85, 0.83], [0.085, 0.084, 0.086]),
    "resunet": ([0.78, 0.77, 0.79], [0.095, 0.096, 0.094]),
    "<b>&evil</b>": ([0.70, 0.71, 0.72], [0.120, 0.121, 0.119]),
}
PROFILE = {"unet-original": (10.0, 900.0), "unet-gelu": (8.0, 950.0), "resunet": (7.0, 1000.0), "<b>&evil</b>": (20.0, 400.0)}


def main() -> None:
    shutil.rmtree(ROOT, ignore_errors=True)
    writer = ResultWriter(ROOT / "golden")
    writer.writer_id = "golden"
    rows = []
    for variant, (v_rand, pixel) in EVAL.items():
        for seed in range(3):
            rows.append(ResultRow(variant=variant, seed=seed, stage="eval", metric="v_rand", value=v_rand[seed], **COMMON))
            rows.append(ResultRow(variant=variant, seed=seed, stage="eval", metric="pixel_error", value=pixel[seed], **COMMON))
    writer.append(rows)
    rows = []
    for variant, (throughput, memory) in PROFILE.items():
        for batch, factor in ((1, 1.0), (2, 1.8), (4, 3.0)):
            base = dict(variant=variant, seed=0, stage="profile", batch_size=batch, input_size=572, output_size=388,
                        mode="infer", setting="eager", **COMMON)  # fmt: skip
            rows.append(ResultRow(metric="throughput", value=throughput * factor, unit="img/s",
                                  ci_low=throughput * factor * 0.98, ci_high=throughput * factor * 1.02, **base))
            rows.append(ResultRow(metric="peak_memory_rss", value=memory * batch, unit="MiB", **base))
    writer.append(rows)


if __name__ == "__main__":
    main()
