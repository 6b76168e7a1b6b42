"""The profile table ``unet-bench profile`` prints, from measurements made up here (no timing needed)."""

from __future__ import annotations

from dataclasses import replace

import torch

from bench.profile import Measurement, ProfileCfg
from bench.profile_table import profile_table_lines


def test_table_shows_throughput_with_its_interval_an_oom_row_and_the_notes() -> None:
    cfg = ProfileCfg(variant="unet-original", input_size=572, batch_size=2, device="cpu")
    cpu = torch.device("cpu")
    timed = Measurement(cfg, cpu, 572, 388, 31_030_658, [0.5, 0.52, 0.49, 0.6, 0.55], 6 * 10**11, {"rss": 1234.5, "rss_increase": 234.5},
                        time_shares={"copy": 0.2, "convolution": 0.7, "other": 0.1})  # fmt: skip
    oom = Measurement(replace(cfg, batch_size=4, mode="train"), cpu, 572, 388, 0, [], 0, {}, oom="out of memory")
    table, blank, params, mfu, shares = profile_table_lines([timed, oom])
    header, rule, first, second = table.splitlines()
    assert header.split()[:4] == ["mode", "batch", "size", "img/s"] and set(rule) == {"-", " "}
    low, high = timed.median_ci()
    assert f"{2 / 0.52:.2f} [{2 / high:.2f}, {2 / low:.2f}]" in first
    # "peak MiB" is what the model needed, as in the report: the RSS increase on a CPU, not the total
    assert "234.50" in first and "1,234.50" not in first
    assert second.split() == ["train", "4", "572->388", "out", "of", "memory"]
    assert blank == "" and params.startswith("unet-original: 31,030,658 parameters on ")
    assert mfu.startswith("MFU n/a: no peak TFLOP/s is known for ") and mfu.endswith(" in fp32.")
    assert shares == "infer time by operation: convolution 70%, copy 20%, other 10%"
