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


def run_cli(
    *args: str, cwd: Path = REPO, timeout: float = 300, env: dict[str, str] | None = None, fresh: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``unet-bench ARGS`` in ``cwd`` with ``env``: its exit code and output.

    By default through ``bench.cli.main`` in this process: the command's own parser, code and
    error handling, without the 4 s of a fresh interpreter importing torch (it was most of the
    suite's time). ``fresh=True`` starts a new process, as a user's shell does: for what only a
    process shows (start-up, signals, memory measured by the OS, torch reading the environment).
    """
    import sys

    if not fresh:
        return run_cli_in_process(*args, cwd=cwd, env=env)
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
    return run_cli("train", *TINY_TRAIN, "--json", cwd=user, fresh=True), out


def assert_user_error(result, *needles: str) -> str:
    """Exit 2 with one clear line on stderr that holds every needle, and no traceback."""
    message = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert len(message.splitlines()) == 1 and message.startswith("unet-bench: error: "), message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def run_cli_many(commands: dict[str, list[str]]) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run independent ``unet-bench`` commands (``run_cli``, one after another) and return each
    one's result by key."""
    return {key: run_cli(*args) for key, args in commands.items()}


def run_cli_in_process(
    *args: str, cwd: Path = REPO, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``unet-bench ARGS`` through ``bench.cli.main`` in this process, in ``cwd`` and with ``env``
    (both restored after): the command's own parser and error handling, without a fresh
    interpreter's start-up (seconds each, and they add up)."""
    from contextlib import chdir, redirect_stderr, redirect_stdout
    from io import StringIO

    from bench.cli import main

    saved_env = dict(os.environ)
    out, err = StringIO(), StringIO()
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with chdir(cwd), redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse's own errors
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
    return subprocess.CompletedProcess(["unet-bench", *args], code, out.getvalue(), err.getvalue())
