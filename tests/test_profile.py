"""The profiler on CPU: FLOPs counted, timing statistics, OOM as a row, CUDA-only checks marked."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from bench import profile
from bench.profile import ProfileCfg, batch_sweep, measure, median_confidence_interval, step_flops
from tests.conftest import REPO
from variants import get_variant

FAST = dict(warmup=1, min_reps=3, max_reps=6, max_seconds=5.0, input_size=188)


def test_forward_flops_of_the_paper_net_and_backward_is_about_twice_forward() -> None:
    config = get_variant("unet-original").config
    forward = step_flops(config, 572, 1, "infer")
    assert forward / 1e9 == pytest.approx(300.9, abs=1.0)
    train = step_flops(config, 572, 2, "train")
    assert 2.8 < train / (2 * forward) < 3.05, "forward + backward (input grads + weight grads)"


def test_training_flops_are_counted_for_library_encoders_too() -> None:
    """smp builds its first convolution with the legacy constructor, outside the meta device."""
    config = get_variant("smp-resnet18-unet").config
    forward = step_flops(config, 64, 1, "infer")
    assert 2.5 < step_flops(config, 64, 1, "train") / forward < 3.05


def test_median_interval_contains_the_median_and_shrinks_with_samples() -> None:
    gen = torch.Generator().manual_seed(0)
    few = (1 + 0.1 * torch.randn(10, generator=gen)).tolist()
    many = (1 + 0.1 * torch.randn(1000, generator=gen)).tolist()
    low, high = median_confidence_interval(few)
    assert low <= sorted(few)[5] <= high
    wide = (high - low)
    low, high = median_confidence_interval(many)
    assert high - low < wide and low < 1.0 < high


def test_measure_infer_and_train_on_cpu() -> None:
    for mode in ("infer", "train"):
        m = measure(ProfileCfg("unet-16", batch_size=2, mode=mode, device="cpu", **FAST))
        assert m.oom is None and 3 <= len(m.step_seconds) <= 6
        values = m.summary()
        thr, unit, (low, high) = values["throughput"]
        assert unit == "img/s" and low <= thr <= high
        assert (m.input_size, m.output_size) == (188, 4)
        assert values["throughput_mpix"][0] == pytest.approx(thr * 4**2 / 1e6)
        assert values["latency_p50"][0] <= values["latency_p90"][0] <= values["latency_p99"][0]
        assert values["params"][0] == 1_940_834
        assert values["peak_memory_rss"][0] > 0 and 0 <= values["peak_memory_rss_increase"][0] < values["peak_memory_rss"][0]
        assert "mfu" not in values, "no peak is known for a CPU: MFU stays empty"
        rows = m.rows("run-x")
        assert {r.metric for r in rows} >= {"throughput", "latency_p99", "peak_memory_rss"}
        assert all(r.stage == "profile" and r.mode == mode and r.setting == "eager" for r in rows)
        assert all(r.batch_size == 2 and r.input_size == 188 and r.git_sha and r.host for r in rows)
        assert "no peak TFLOP/s known" in rows[0].extra


def test_batch_sweep_records_the_oom_and_the_next_configuration_still_runs() -> None:
    # three timed steps per batch size: this test is about where the sweep stops, not the timing
    cfg = ProfileCfg("unet-32", mode="train", device="cpu", memory_cap_mib=300, **{**FAST, "max_reps": 3})
    results = list(batch_sweep(cfg, max_batch=64))
    assert results[-1].oom is not None and all(r.oom is None for r in results[:-1])
    assert len(results) >= 2, "batch 1 must fit in the cap"
    oom_rows = results[-1].rows("run-x")
    assert [(r.mode, r.metric) for r in oom_rows] == [("train", "oom")] and oom_rows[0].value == 1.0
    after = measure(ProfileCfg("unet-16", device="cpu", **FAST))
    assert after.oom is None and len(after.step_seconds) >= 3


def test_a_primitive_failure_counts_as_out_of_memory_only_under_the_cap() -> None:
    """oneDNN says only "could not create a primitive" when the cap stops its allocation."""
    primitive = RuntimeError("could not create a primitive")
    assert profile.is_oom(primitive, memory_capped=True) and not profile.is_oom(primitive)
    assert not profile.is_oom(ValueError("out of memory"), memory_capped=True)


def test_peak_table_and_unknown_devices() -> None:
    assert profile.peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == pytest.approx(989.4)
    assert profile.peak_tflops("NVIDIA H100 PCIe", "bf16") == pytest.approx(756.0)
    assert profile.peak_tflops("NVIDIA H200", "fp32") == pytest.approx(66.9)
    assert profile.peak_tflops("AMD EPYC 7B13", "fp32") is None


def test_cli_profile_json_reports_the_done_when_fields() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "profile", "--variant", "unet-16", "--batch", "1", "--input", "188",
         "--device", "cpu", "--max-seconds", "3", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = {r["metric"]: r for r in json.loads(result.stdout)}
    assert {r["mode"] for r in rows.values()} == {"infer"}
    assert rows["params"]["value"] == 1_940_834
    assert rows["throughput"]["ci_low"] <= rows["throughput"]["value"] <= rows["throughput"]["ci_high"]
    assert {"latency_p50", "latency_p90", "latency_p99", "peak_memory_rss", "gflops_per_image"} <= rows.keys()
    assert rows["throughput"]["input_size"] == 188 and rows["throughput"]["output_size"] == 4
    assert not math.isnan(rows["throughput"]["ci_high"])


@pytest.mark.gpu
def test_cuda_measurement_reports_allocated_and_reserved_memory() -> None:
    m = measure(ProfileCfg("unet-16", batch_size=2, precision="bf16", device="cuda", **FAST))
    values = m.summary()
    assert values["peak_memory_allocated"][0] > 0 and values["peak_memory_reserved"][0] >= values["peak_memory_allocated"][0]
    assert "mfu" in values or profile.peak_tflops(m.device_name, "bf16") is None


@pytest.mark.gpu
def test_cuda_oom_inside_a_sweep_is_a_row() -> None:
    torch.cuda.set_per_process_memory_fraction(0.02)
    try:
        results = list(batch_sweep(ProfileCfg("unet-original", mode="train", device="cuda", **FAST), max_batch=4096))
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert results[-1].oom is not None


def test_cpu_peak_memory_counts_what_the_block_needs_even_after_earlier_work() -> None:
    """After training, freed heap pages would serve the measured block and resident memory would
    not rise: the model would seem to need nothing. RssPeak hands them back first."""

    def allocate() -> list[torch.Tensor]:
        return [torch.ones(32 * 1024) for _ in range(800)]  # 800 x 128 KiB = 100 MiB, heap-sized

    earlier = allocate()
    pins = [torch.ones(64) for _ in range(64)]  # later small allocations keep the heap top in use
    del earlier  # 100 MiB of freed heap that the allocator would hand out again
    with profile.RssPeak() as peak:
        again = allocate()
    assert len(again) == 800 and len(pins) == 64
    assert peak.increase > 80, peak.increase


def test_breakdown_shares_add_up_and_put_a_unets_time_in_its_convolutions() -> None:
    fast = {**FAST, "max_reps": 3}  # three timed steps: the shares, not the timing, are checked
    m = measure(ProfileCfg("unet-16", mode="train", device="cpu", breakdown=True, **fast))
    assert sum(m.time_shares.values()) == pytest.approx(1.0)
    assert max(m.time_shares, key=m.time_shares.__getitem__) == "convolution"
    assert {"time_share_convolution", "time_share_pooling"} <= {r.metric for r in m.rows("r")}
    assert profile.profile_key(m.cfg) != profile.profile_key(ProfileCfg("unet-16", mode="train", **fast))


@pytest.mark.parametrize(
    "operator, kind",
    [
        ("aten::cudnn_convolution", "convolution"),
        ("aten::convolution_backward", "convolution"),
        ("aten::_to_copy", "copy_cast_concat"),
        ("aten::cat", "copy_cast_concat"),
        ("aten::clamp_min", "elementwise"),
        ("aten::threshold_backward", "elementwise"),
        ("aten::max_pool2d_with_indices_backward", "pooling"),
        ("aten::native_batch_norm", "normalisation"),
        ("aten::upsample_bilinear2d", "resampling"),
        ("aten::_foreach_add_", "optimizer"),
        ("aten::empty_strided", "other"),
    ],
)
def test_operators_are_sorted_into_kinds(operator: str, kind: str) -> None:
    assert profile.operation_kind(operator) == kind


@pytest.mark.gpu
def test_cuda_breakdown_counts_kernel_time() -> None:
    m = measure(ProfileCfg("unet-16", batch_size=2, precision="bf16", device="cuda", breakdown=True, **FAST))
    assert sum(m.time_shares.values()) == pytest.approx(1.0) and m.time_shares["convolution"] > 0.2


def test_energy_per_image_from_the_counters_window() -> None:
    from bench.energy import Energy

    assert Energy(joules=10.0, seconds=2.0).metrics(images=20) == {
        "energy_per_image": (0.5, "J"), "images_per_joule": (2.0, "img/J"), "power_mean": (5.0, "W")}
    assert Energy(None, 2.0, "no counter").metrics(images=20) == {}, "never a number that was not measured"


@pytest.mark.skipif(torch.cuda.is_available(), reason="the path without a GPU")
def test_without_a_gpu_the_rows_say_energy_was_not_measured() -> None:
    """The GPU path runs as far as this machine allows: NVML is loaded and asked for the counter,
    and the reason it has none is kept; a CPU measurement's rows say energy was not read."""
    from bench.energy import EnergyMeter

    from bench.energy import nvml_state

    meter = EnergyMeter(torch.device("cuda"))
    assert meter.handle is None and meter.why_not and meter.window(meter.millijoules(), 1.0).joules is None
    assert nvml_state(torch.device("cuda"))["nvml"].startswith("unavailable ("), "the fingerprint says why"
    m = measure(ProfileCfg("unet-16", input_size=92, batch_size=1, warmup=1, min_reps=3, max_reps=3))
    rows = m.rows("energy-test")
    assert not {"energy_per_image", "images_per_joule", "power_mean"} & {r.metric for r in rows}
    assert all("NVIDIA GPUs only" in json.loads(r.extra)["energy"] for r in rows)
