"""The micro-benchmarks run under pytest-benchmark and their JSON lands in the result store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from bench.store import read_results
from tests.conftest import REPO


def not_an_xdist_worker() -> dict[str, str]:
    """This process's environment without the variables that mark an xdist worker."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_XDIST")}


def test_micro_benchmarks_run_and_are_ingested(tmp_path: Path) -> None:
    out = tmp_path / "micro.json"
    result = subprocess.run(
        # one process, not an xdist worker (pytest-benchmark measures and writes nothing under xdist)
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "bench/benchmarks/test_micro.py",
         "-k", "unet-original or elastic or v_rand", "--benchmark-min-rounds=2", "--benchmark-max-time=0.05",
         "--benchmark-warmup=off", f"--benchmark-json={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=not_an_xdist_worker(),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    names = {b["name"] for b in json.loads(out.read_text())["benchmarks"]}
    assert len(names) == 4
    ingest = subprocess.run([sys.executable, "-m", "bench", "ingest", str(out), "--results", str(tmp_path / "results")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    rows = read_results(tmp_path / "results")
    assert len(rows) == 4 and (rows["unit"] == "ms").all() and (rows["value"] > 0).all()
    assert {"micro_model_step", "micro_elastic_deformation_572", "micro_v_rand_512"} == set(rows["metric"])
    step = rows[rows["metric"] == "micro_model_step"]
    assert sorted(step["mode"]) == ["infer", "train"] and (rows["git_sha"] != "").all()
