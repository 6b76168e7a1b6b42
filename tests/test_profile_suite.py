"""Profile suites: the GPU suite parses, the CPU smoke suite runs end to end into the store,
and mistakes in a suite file name the file, the line and the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from bench.profile_suite import load_profile_suite, run_profile_suite
from bench.store import read_results
from bench.suite_file import SuiteError
from tests.conftest import REPO


def test_the_gpu_suite_is_valid_and_covers_the_paper_net() -> None:
    header, configs = load_profile_suite("gpu")
    assert header["minutes"] <= 8
    paper = [c for c, _ in configs if c.variant == "unet-original"]
    assert {c.precision for c in paper} == {"fp32", "tf32", "fp16", "bf16"}
    assert {c.mode for c in paper} == {"train", "infer"}
    assert any(auto for c, auto in configs), "a batch sweep until out of memory"
    assert len({c.input_size for c in paper}) >= 4, "a resolution scaling curve"


def test_cpu_smoke_suite_writes_rows_for_every_configuration(tmp_path: Path) -> None:
    run_dir, done = run_profile_suite("cpu-smoke", tmp_path, device="cpu", log=lambda line: None)
    frame = read_results(run_dir)
    # 2 modes x 2 precisions x 2 batches x 2 layouts, 2 sizes x batches 1, 2, 4, then the fast path:
    # CUDA graphs x concatenation buffers, and fused convolutions
    assert len(done) == 16 + 2 * 3 + 4 + 1
    assert set(frame["suite"]) == {"cpu-smoke"} and set(frame["precision"]) == {"fp32", "bf16"}
    throughput = frame[frame["metric"] == "throughput"]
    assert len(throughput) == len(done) - 3 and (throughput["value"] > 0).all()
    assert set(throughput["mode"]) == {"train", "infer"}
    assert set(throughput["setting"]) == {"eager", "channels_last", "concat_buffers"}
    skipped = frame[frame["metric"] == "skipped"]
    assert sorted(skipped["setting"]) == ["cuda_graphs", "cuda_graphs, concat_buffers", "fused_conv"]
    assert all("need a CUDA device" in extra for extra in skipped["extra"])
    assert sorted(throughput[throughput["mode"] == "infer"]["input_size"].unique()) == [188, 204]


def test_a_resumed_suite_measures_only_what_its_latest_run_lacks(tmp_path: Path) -> None:
    """A second lease (or a run after a crash) goes on where the first stopped: measured
    configurations are skipped and a batch sweep continues after its largest stored batch."""
    sweep = (
        '[defaults]\nmax_seconds = 0.5\nwarmup = 1\nmin_reps = 2\nmax_reps = 3\n\n'
        '[[sweep]]\nvariants = ["unet-16"]\nmodes = ["infer"]\ninput_sizes = [188]\nbatch_sizes = [1]\n\n'
        '[[sweep]]\nvariants = ["unet-16"]\nmodes = ["infer"]\ninput_sizes = [204]\nbatch_sizes = ["auto"]\n'
    )
    first_dir, first = run_profile_suite(write_suite(tmp_path, sweep + "max_batch = 2\n"), tmp_path / "results",
                                         device="cpu", log=lambda line: None)  # fmt: skip
    assert [(m.input_size, m.cfg.batch_size) for m in first] == [(188, 1), (204, 1), (204, 2)]
    (tmp_path / "results" / "mine-wide-20991231-235959-ffffff").mkdir()  # another suite's newer run
    more = sweep + 'max_batch = 4\n\n[[sweep]]\nvariants = ["unet-16"]\nmodes = ["train"]\ninput_sizes = [188]\n'
    run_dir, second = run_profile_suite(write_suite(tmp_path, more), tmp_path / "results", device="cpu",
                                        log=lambda line: None, resume=True)  # fmt: skip
    assert run_dir == first_dir
    assert [(m.cfg.mode, m.input_size, m.cfg.batch_size) for m in second] == [("infer", 204, 4), ("train", 188, 1)]
    frame = read_results(run_dir)
    throughput = frame[frame["metric"] == "throughput"]
    assert len(throughput) == 5 and not throughput.duplicated(["config_hash", "batch_size"]).any()


def write_suite(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text('[suite]\nname = "mine"\n\n' + body)
    return path


def test_unknown_key_names_file_line_and_allowed_keys(tmp_path: Path) -> None:
    path = write_suite(tmp_path, '[[sweep]]\nvariants = ["unet-16"]\nprecison = ["bf16"]\n')
    with pytest.raises(SuiteError, match=rf"{path}:6: key 'sweep\[0\]\.precison': unknown key; allowed: .*precisions"):
        load_profile_suite(path)


def test_bad_value_names_the_key_and_allowed_values(tmp_path: Path) -> None:
    path = write_suite(tmp_path, '[[sweep]]\nvariants = ["unet-16"]\nprecisions = ["fp8"]\n')
    with pytest.raises(
        SuiteError, match=r"mine.toml:6: key 'sweep\[0\]\.precisions'.*one of 'fp32', 'tf32', 'fp16', 'bf16'"
    ):
        load_profile_suite(path)


def test_unknown_variant_and_malformed_toml(tmp_path: Path) -> None:
    path = write_suite(tmp_path, '[[sweep]]\nvariants = ["unet-orignal"]\n')
    with pytest.raises(SuiteError, match=r"mine.toml:5: .*Did you mean 'unet-original'"):
        load_profile_suite(path)
    path.write_text("[suite\nname = 1\n")
    with pytest.raises(SuiteError, match=r"mine.toml: invalid TOML: .*line 1"):
        load_profile_suite(path)
    with pytest.raises(SuiteError, match="unknown suite 'gpuu'. Did you mean 'gpu'"):
        load_profile_suite("gpuu")


def test_a_configuration_that_raises_is_a_row_and_the_suite_goes_on(tmp_path: Path) -> None:
    """On a lent GPU every minute counts: a compiler error (here an unknown torch.compile mode)
    or a missing package is recorded with its reason, and the next configuration runs."""
    body = (
        '[defaults]\nmax_seconds = 0.2\nwarmup = 1\nmin_reps = 2\nmax_reps = 3\n\n'
        '[[sweep]]\nvariants = ["unet-16"]\nmodes = ["infer"]\nprecisions = ["fp32"]\ninput_sizes = [188]\n'
        'batch_sizes = [1]\ncompile = ["no-such-mode"]\n\n'
        '[[sweep]]\nvariants = ["unet-16"]\nmodes = ["infer"]\nprecisions = ["fp32"]\ninput_sizes = [188]\nbatch_sizes = [1]\n'
    )  # fmt: skip
    lines: list[str] = []
    run_dir, done = run_profile_suite(write_suite(tmp_path, body), tmp_path / "out", device="cpu", log=lines.append)
    assert [m.failed is not None for m in done] == [True, False]
    frame = read_results(run_dir)
    failed = frame[frame["metric"] == "failed"]
    assert len(failed) == 1 and "no-such-mode" in failed["extra"].item()
    assert failed["mode"].item() == "infer" and failed["setting"].item() == "compile=no-such-mode"
    assert (frame["metric"] == "throughput").sum() == 1
    assert "failed (" in lines[0] and "img/s" in lines[1]


def test_the_prepared_gpu_check_runs_end_to_end(tmp_path: Path) -> None:
    """bench/gpu_check.sh with CPU-sized suites: every step of the GPU calls works (profile,
    fit against the step, report, ablation with its report), and what comes back is one archive
    (the device returns only a few files) that unpacks into results carrying the environment
    fingerprint, so a lent GPU's minutes go to measuring, not debugging."""
    out, work, back = tmp_path / "out", tmp_path / "work", tmp_path / "back"
    out.mkdir()
    env = {
        **os.environ,
        "SUITE": "cpu-smoke",
        "MINUTES": "0.15",
        "FIT_ARGS": '--variant unet-16 --overrides {"base_width":8} --tile 188 --batch 2 --precision fp32 '
        "--steps 2 --max-seconds 1",
        "ABLATION": str(REPO / "tests" / "data" / "tiny-suite.toml"),
        "OUT": str(out),
        "WORK": str(work),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    result = subprocess.run(
        ["sh", "bench/gpu_check.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert [p.name for p in out.iterdir()] == ["gpu-check.tar.gz"]
    with tarfile.open(out / "gpu-check.tar.gz") as archive:
        archive.extractall(back, filter="data")
    frame = read_results(back / "results" / "gpu")
    assert (frame["metric"] == "throughput").any() and frame["git_sha"].notna().all()
    env_details = json.loads(frame["extra"].iloc[0])["env"]
    assert {"device_count", "driver_version", "cudnn_version", "cpu_model", "cpu_id", "cpu_capability", "cpu_threads"} <= env_details.keys()
    assert (back / "reports" / "gpu" / "report.html").exists()
    fit = frame[frame["metric"] == "fit_to_step"]
    assert len(fit) == 1 and 0 < fit["value"].item() < 2 and fit["setting"].item() == "fit"
    assert "cpu_model" in json.loads(fit["extra"].item())["env"]  # the same fingerprint as every row
    assert "| variant | device_name |" in (back / "reports" / "gpu" / "report.md").read_text()
    ablation = read_results(back / "results" / "tiny-suite")
    assert set(ablation["variant"]) >= {"unet-original", "resunet"} and (ablation["stage"] == "eval").any()
    assert (back / "reports" / "tiny-suite" / "report.html").exists()
