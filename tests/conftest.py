"""Shared test settings: small, deterministic CPU runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_SEARCH = Path(__file__).parent / "data" / "tiny-search.toml"  # a search that trains in seconds

# Two threads on the 2-core CI machine; under pytest-xdist (-n N) the workers share those cores.
torch.set_num_threads(max(1, 2 // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """CUDA-only tests are marked ``gpu`` and skipped where no GPU is present."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def run_cli(*args: str, cwd: Path = REPO, timeout: float = 300, env: dict[str, str] | None = None):
    """Run ``unet-bench ARGS`` as a user would: a fresh process, its exit code and output."""
    import sys

    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


# A `unet-bench train` that takes seconds: 2 epochs of a 2-level net on five 96 px synthetic images.
TINY_TRAIN = [
    "--variant", "unet-original", "--data", "synthetic:count=5,size=96", "--val-sections", "4", "--epochs", "2",
    "--set", "model.base_width=4", "--set", "model.depth=2", "--set", "tile=92", "--set", "val_tile=92",
    "--set", "steps_per_epoch=2", "--set", "batch_size=2",
]  # fmt: skip


@pytest.fixture(scope="session")
def cli_trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One real ``unet-bench train ... --json`` and its output folder, trained once for every
    test that checks its output (test_cli) or needs a checkpoint made by the CLI (test_predict)."""
    user = tmp_path_factory.mktemp("cli-train")  # a user's folder, no -o: the default output root
    out = user / "unetbench-out" / "checkpoints" / f"train-{TINY_TRAIN[TINY_TRAIN.index('--variant') + 1]}"
    return run_cli("train", *TINY_TRAIN, "--json", cwd=user), out


def assert_user_error(result, *needles: str) -> str:
    """Exit 2 with one clear line on stderr that holds every needle, and no traceback."""
    message = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(message.splitlines()) == 1 and message.startswith("unet-bench: error: "), message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def run_cli_many(commands: dict[str, list[str]], workers: int = 4) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run independent ``unet-bench`` commands side by side (each is mostly interpreter and
    torch start-up, so a few at once use both cores) and return each one's result by key."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        futures = {key: pool.submit(run_cli, *args) for key, args in commands.items()}
        return {key: future.result() for key, future in futures.items()}


def run_cli_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """``unet-bench ARGS`` through ``bench.cli.main`` in this process: the command's own parser and
    error handling, without a fresh interpreter's start-up (seconds each, and they add up)."""
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    from bench.cli import main

    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["unet-bench", *args], code, out.getvalue(), err.getvalue())


def run_cli_cases(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Many cases of a few commands: each command's first case as a user runs it (a fresh
    process), every further case of it in-process, through the same ``main``."""
    first: dict[str, list[str]] = {}
    for key, args in commands.items():
        if args[0] not in {a[0] for a in first.values()}:
            first[key] = args
    results = run_cli_many(first)
    results.update({key: run_cli_in_process(*args) for key, args in commands.items() if key not in first})
    return results
