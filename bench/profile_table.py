"""The terminal table of profile measurements: one line per (mode, batch), then the notes that
explain it. Kept apart from the CLI so that anything holding measurements can print the same table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bench.console import format_table

if TYPE_CHECKING:
    from bench.profile import Measurement

COLUMNS = ("mode", "batch", "size", "img/s", "MPix/s", "p50 ms", "p90 ms", "p99 ms",
           "GFLOP/img", "TFLOP/s", "peak MiB", "MFU")  # fmt: skip


def measurement_row(m: Measurement) -> dict[str, Any]:
    """One table row; a measurement that ran out of memory (or failed) says so in place of its numbers."""
    row: dict[str, Any] = {"mode": m.cfg.mode, "batch": m.cfg.batch_size, "size": f"{m.input_size}->{m.output_size}"}
    if m.oom or m.failed or m.skipped:
        row["img/s"] = "out of memory" if m.oom else "failed" if m.failed else "skipped"
        return row
    values = m.summary()
    thr, _, (low, high) = values["throughput"]
    row.update({
        "img/s": f"{thr:.2f} [{low:.2f}, {high:.2f}]",
        "MPix/s": values["throughput_mpix"][0],
        "p50 ms": values["latency_p50"][0], "p90 ms": values["latency_p90"][0], "p99 ms": values["latency_p99"][0],
        "GFLOP/img": values["gflops_per_image"][0], "TFLOP/s": values["tflops_achieved"][0],
        "peak MiB": model_memory(values),
        "MFU": f"{values['mfu'][0]:.1%}" if "mfu" in values else "n/a",
    })  # fmt: skip
    return row


def model_memory(values: dict[str, Any]) -> float | str:
    """The memory the model needed, as the report's "peak MiB" reads it (``MODEL_MEMORY_METRICS``
    in order: allocated on a GPU, the RSS increase on a CPU), so one column name means one thing."""
    from bench.schema import MODEL_MEMORY_METRICS

    name = next((m for m in MODEL_MEMORY_METRICS if m in values), None)
    return values[name][0] if name else "n/a"


def profile_table_lines(measurements: Sequence[Measurement]) -> list[str]:
    """The table of ``measurements`` (one variant, one precision), then the parameter count and
    device, why MFU is missing if it is, and where the time went for those profiled with a breakdown."""
    first = measurements[0]
    lines = [
        format_table([measurement_row(m) for m in measurements], COLUMNS),
        "",
        f"{first.cfg.variant}: {first.params:,} parameters on {first.device_name}; img/s with its 95 % interval.",
    ]
    if not any("mfu" in m.summary() for m in measurements):
        lines.append(f"MFU n/a: no peak TFLOP/s is known for {first.device_name} in {first.cfg.precision}.")
    for m in measurements:
        if m.skipped or m.failed:
            lines.append(f"{m.cfg.mode} {'skipped' if m.skipped else 'failed'}: {m.skipped or m.failed}")
        if m.time_shares:
            shares = sorted(m.time_shares.items(), key=lambda item: -item[1])
            lines.append(
                f"{m.cfg.mode} time by operation: " + ", ".join(f"{kind} {share:.0%}" for kind, share in shares)
            )
    return lines
