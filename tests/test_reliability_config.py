"""Bad configuration through the command (each one once in a fresh process, further cases
through the same ``main`` in-process): one clear line naming the file, line, key or
value and what would be valid; exit 2; no traceback; nothing trained."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_SEARCH, assert_user_error, run_cli, run_cli_many

# suite texts with one mistake each, the command that reads them, and what the error must name
SUITES = {
    "unknown_variant": ('[suite]\nname = "x"\n[variants]\nnames = ["unet-orignal"]\n', "run", [":4:", "'names'", "Did you mean 'unet-original'"]),
    "bad_toml": ('[suite]\nname = "x"\n[train\nlr = 0.1\n', "run", ["invalid TOML", "line 3"]),
    "bad_toml_profile_suite": ('[suite]\nname = "x"\n[train\nlr = 0.1\n', "profile --suite", ["invalid TOML", "line 3"]),
    "unknown_section": ('[suite]\nname = "x"\n[modle]\nx = 1\n', "run", ["unknown section [modle]", "allowed: arms, cpu, data, model"]),
    "key_outside_a_section": ('description = "x"\n[suite]\nname = "x"\n', "run", [":1:", "'description'", "outside any section", "[suite]"]),
    "unknown_key": ('[suite]\nname = "x"\n[train]\nlrr = 0.1\n', "run", [":4:", "'lrr'", "Did you mean 'lr'"]),
    "wrong_type": ('[suite]\nname = "x"\n[train]\nepochs = "many"\n', "run", [":4:", "'epochs'", "expected int"]),
    "zero_batch": ('[suite]\nname = "x"\n[train]\nbatch_size = 0\n', "run", [":4:", "'batch_size'", "must be positive, got 0"]),
    "negative_epochs": ('[suite]\nname = "x"\n[cpu]\nepochs = -3\n', "run", [":4:", "'epochs'", "must be positive, got -3"]),
    "negative_grad_clip": ('[suite]\nname = "x"\n[train]\ngrad_clip = -1.0\n', "run", [":4:", "'grad_clip'", "must be 0 or more", "got -1.0"]),
    "infinite_lr": ('[suite]\nname = "x"\n[train]\nlr = inf\n', "run", [":4:", "'lr'", "must be a positive number, got inf"]),
    "momentum_of_one": ('[suite]\nname = "x"\n[train]\nmomentum = 1.0\n', "run", [":4:", "'momentum'", "must be in [0, 1), got 1.0"]),
    "search_space_typo": (TINY_SEARCH.read_text().replace('"model.dropout"', '"model.dropuot"'), "search", ["'model.dropuot'", "Did you mean 'dropout'"]),
    "misspelt_objective": ('[suite]\nname = "x"\n[search]\nobjective = "v_rnad"\n', "run", [":4:", "'objective'", "Did you mean 'v_rand'", "one of 'pixel_error', 'v_rand'"]),
    "unknown_cost": (TINY_SEARCH.read_text().replace("trials = 5", 'trials = 5\ncosts = ["speed"]\npruner = "none"').replace('pruner = "median"\n', ""), "search", ["'costs'", "unknown cost 'speed'", "latency_ms"]),
}  # fmt: skip


COMMAND_LINES = {
    "unknown_variant": (["train", "--variant", "unet-orignal", "--epochs", "1"], ["unknown variant 'unet-orignal'", "Did you mean 'unet-original'"]),
    "unknown_variant_profile": (["profile", "--variant", "resunett"], ["unknown variant 'resunett'", "'resunet'"]),
    "zero_epochs": (["train", "--variant", "unet-16", "--epochs", "0"], ["epochs must be positive, got 0"]),
    "negative_batch": (["train", "--variant", "unet-16", "--set", "batch_size=-2"], ["batch_size must be positive, got -2"]),
    "nan_minutes": (["train", "--variant", "unet-16", "--minutes", "nan"], ["max_minutes must be a positive number of minutes, got nan"]),
    "nan_lr": (["train", "--variant", "unet-16", "--set", "lr=nan"], ["lr must be a positive number, got nan"]),
    "negative_sigma": (["train", "--variant", "unet-16", "--set", "sigma=-5.0"], ["sigma must be a positive number of pixels, got -5.0"]),
    "model_key_typo": (["train", "--variant", "unet-16", "--set", "model.activaton='gelu'"], ["'activaton'", "Did you mean 'activation'"]),
    "model_value_without_sense": (["train", "--variant", "unet-16", "--set", "model.kernel_size=4"], ["kernel_size must be odd and positive, got 4"]),
    "set_without_value": (["train", "--variant", "unet-16", "--set", "lr"], ["--set expects key=value, got 'lr'"]),
    "backwards_sections": (["train", "--variant", "unet-16", "--val-sections", "5-3"], ["section range '5-3' runs backwards"]),
    "train_into_a_file": (["train", "--variant", "unet-16", "-o", "pyproject.toml/run"], ["-o pyproject.toml/run: pyproject.toml is a file, not a folder"]),
    "reports_into_a_file": (["run", "quick", "--reports", "README.md"], ["--reports README.md: README.md is a file, not a folder"]),
    "profile_rows_into_a_file": (["profile", "--variant", "unet-16", "--results", "README.md/x"], ["--results README.md/x: README.md is a file"]),
    "huge_sections": (["train", "--variant", "unet-16", "--test-sections", "0-99999999999999"], ["section 99999999999999 in '0-99999999999999' is past any data set"]),
    "profile_without_variant": (["profile"], ["profile needs --variant NAME (or --suite NAME)"]),
    "eval_missing_checkpoint": (["eval", "/nonexistent/best.pt"], ["/nonexistent/best.pt: not a readable checkpoint"]),
    "score_missing_folders": (["score", "--pred", "/nonexistent/pred", "--truth", "/nonexistent/truth"], ["/nonexistent/truth: no such label folder"]),
    "ingest_missing_file": (["ingest", "/nonexistent/bench.json"], ["/nonexistent/bench.json: not a pytest-benchmark JSON file"]),
}  # fmt: skip


@pytest.fixture(scope="module")
def suite_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[Path, Path, subprocess.CompletedProcess[str]]]:
    """Every broken suite through its command, side by side: case -> (file, output folder, result)."""
    root = tmp_path_factory.mktemp("suites")
    commands, places = {}, {}
    for case, (text, command, _) in SUITES.items():
        path, out = root / f"{case}.toml", root / f"{case}-out"
        path.write_text(text)
        flag = "--results" if command == "profile --suite" else "-o"
        commands[case], places[case] = [*command.split(), str(path), flag, str(out)], (path, out)
    results = run_cli_many(commands)
    return {case: (*places[case], results[case]) for case in SUITES}


@pytest.mark.parametrize("case", sorted(SUITES))
def test_a_broken_suite_file_is_named_with_its_line_and_key(suite_runs, case: str) -> None:
    path, out, result = suite_runs[case]
    assert_user_error(result, str(path), *SUITES[case][2])
    assert not out.exists() or not any(out.rglob("rows-*.csv")), "nothing may run"


@pytest.fixture(scope="module")
def command_line_runs() -> dict[str, subprocess.CompletedProcess[str]]:
    return run_cli_many({case: args for case, (args, _) in COMMAND_LINES.items()})


@pytest.mark.parametrize("case", sorted(COMMAND_LINES))
def test_a_bad_command_line_gets_one_line(command_line_runs, case: str) -> None:
    assert_user_error(command_line_runs[case], *COMMAND_LINES[case][1])


def test_an_input_size_a_valid_network_cannot_take_names_the_nearest_ones() -> None:
    """The model refuses it (tests/test_registry.py); the profiler says so and uses the nearest."""
    result = run_cli("profile", "--variant", "unet-16", "--input", "500", "--max-seconds", "0.2", "--json")
    assert result.returncode == 0, result.stderr
    assert "cannot take a 500x500 input" in result.stderr and "nearest valid input sizes: 492 or 508" in result.stderr
    assert {row["input_size"] for row in json.loads(result.stdout)} == {508}


def test_data_a_suite_cannot_use_fails_before_anything_is_written(tmp_path: Path) -> None:
    """A data folder that is not there, or synthetic data with no images, ends in one line before
    the run folder, the search's study or any row is written."""
    out = tmp_path / "out"
    missing = run_cli("run", "quick", "--data", str(tmp_path / "nowhere"), "-o", str(out), "--reports", str(out))
    assert_user_error(missing, "no such data folder")
    suite = tmp_path / "empty.toml"
    suite.write_text(TINY_SEARCH.read_text().replace("count = 5", "count = 0"))
    assert_user_error(run_cli("search", str(suite), "-o", str(out / "s")), "count >= 1")
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_device_this_machine_lacks_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    """`device = "cuda:3"` in a suite failed in trial 0, after the run folder was made and with
    Optuna's traceback in the log; the flags failed after the first print. Now on load / at once."""
    suite = tmp_path / "gpu-only.toml"
    suite.write_text((TINY_SEARCH.parent / "tiny-suite.toml").read_text().replace("tile = 92\n", 'tile = 92\ndevice = "cuda:3"\n', 1))
    line = next(i for i, t in enumerate(suite.read_text().splitlines(), 1) if t.startswith("device ="))
    results = run_cli_many({
        "run": ["run", str(suite), "-o", str(tmp_path / "out"), "--reports", str(tmp_path / "reports")],
        "train": ["train", "--variant", "unet-16", "--set", "device=cuda", "-o", str(tmp_path / "train")],
        "profile": ["profile", "--variant", "unet-16", "--device", "cuda", "--results", str(tmp_path / "profile")],
    })  # fmt: skip
    assert_user_error(results["run"], f"{suite}:{line}: key 'device'", "no such CUDA device on this machine")
    for command in ("train", "profile"):
        assert "no such CUDA device on this machine; use auto or cpu" in results[command].stderr.strip().splitlines()[-1]
        assert results[command].returncode == 2 and "Traceback" not in results[command].stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "profile").exists()


def test_a_count_flag_of_zero_is_refused_by_the_parser() -> None:
    """--seeds 0 was a traceback and --workers 0 ran as one worker; every count a flag takes must
    be positive (argparse's usage line, then the one error line)."""
    results = run_cli_many({
        "seeds": ["run", "quick", "--seeds", "0"], "workers": ["search", "quick", "--workers", "0"],
        "max_batch": ["profile", "--variant", "unet-16", "--batch", "auto", "--max-batch", "0"],
        "tile": ["predict", "x.pt", "images", "--tile", "-4"], "input": ["profile", "--variant", "unet-16", "--input", "x"],
    })  # fmt: skip
    for flag, result in results.items():
        assert result.returncode == 2 and "Traceback" not in result.stderr, (flag, result.stderr)
        last = result.stderr.strip().splitlines()[-1]
        assert f"argument --{flag.replace('_', '-')}: " in last and ("must be positive" in last or "whole number" in last)
