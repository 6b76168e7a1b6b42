"""The ``unet-bench`` command as a user runs it (a real subprocess, exit codes and output)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


def test_list_json_has_every_variant_with_the_documented_keys() -> None:
    result = run_cli("list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) >= 15
    for row in rows:
        assert {"name", "family", "params", "gflops", "input_size", "output_size"} <= row.keys()
    original = next(r for r in rows if r["name"] == "unet-original")
    assert (original["params"], original["input_size"], original["output_size"]) == (31_030_658, 572, 388)
    assert abs(original["gflops"] - 300.9) < 1.0


def test_list_filters_by_pattern() -> None:
    result = run_cli("list", "unet-*")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("unet-original ") for line in lines)
    assert not any(line.startswith(("resunet", "smp-", "inception")) for line in lines)


def test_list_with_no_match_fails_and_says_so() -> None:
    result = run_cli("list", "nothing-like-this*")
    assert result.returncode != 0
    assert "no variant matches" in result.stderr
