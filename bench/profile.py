"""Throughput, latency, memory and FLOPs of any variant, on GPUs and honestly on CPUs.

Timing is correct by construction: warm-up first, the device synchronised before every clock
read, and repetitions until the 95 % confidence interval of the median step time is within
``target_rel_ci`` (or a stated cap on repetitions / seconds is reached; the interval achieved
is stored either way). FLOPs are counted by ``torch.utils.flop_counter`` on the meta device,
forward and backward, never guessed. Out-of-memory is a result (a row), not a crash: a sweep
frees memory and goes on with its next configuration.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import math
import multiprocessing
import os
import re
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, Self

import torch
import torch.nn.functional as F
from torch import nn

from bench.device import resolve_device
from bench.energy import Energy, EnergyMeter
from bench.environment import row_environment, row_identity
from bench.errors import first_line
from bench.fast_path import cuda_graphed, skip_reason
from bench.fast_path import runnable as fast_runnable
from bench.rows import RowFactory
from bench.schema import ResultRow, config_hash, make_extra, only_when_set, profile_setting
from variants.registry import ModelConfig, count_parameters, resolve_config

Precision = Literal["fp32", "tf32", "fp16", "bf16"]
FAST_PATH_FLAGS = ("cuda_graphs", "fused_conv", "concat_buffers")
Mode = Literal["infer", "train"]

# Dense peak TFLOP/s by (device name fragment, precision), from the vendors' data sheets.
# MFU = achieved / peak; devices missing here get no MFU, and the report says why.
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0},
    "H100": {"fp32": 66.9, "tf32": 494.7, "fp16": 989.4, "bf16": 989.4},  # SXM
    "A100": {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "fp16": 362.0, "bf16": 362.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0},
    "RTX 4090": {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2},
    "V100": {"fp32": 15.7, "tf32": 15.7, "fp16": 125.0, "bf16": 0.0},
}


def peak_tflops(device_name: str, precision: Precision) -> float | None:
    """The device's dense peak for ``precision``, or None when unknown (MFU left empty)."""
    for fragment, peaks in PEAK_TFLOPS.items():
        if fragment in device_name:
            return peaks.get(precision) or None
    return None


@dataclass(frozen=True)
class ProfileCfg:
    """One measurement: a variant, a batch of square inputs, and the execution settings."""

    variant: str
    input_size: int = 572  # the nearest accepted size is used
    batch_size: int = 1
    mode: Mode = "infer"
    precision: Precision = "fp32"
    channels_last: bool = False
    compile: str | None = None  # torch.compile mode, e.g. "default", "max-autotune"
    cuda_graphs: bool = False  # fast path (bench.fast_path): the eager step replayed from a CUDA graph
    fused_conv: bool = False  # fast path: Inductor's convolution templates with bias + ReLU fused
    concat_buffers: bool = False  # fast path: skips written into preallocated concatenation buffers
    cudnn_benchmark: bool = True
    device: str = "auto"
    warmup: int = 3
    min_reps: int = 5
    max_reps: int = 200
    max_seconds: float = 30.0  # cap on the timed repetitions
    target_rel_ci: float = 0.02
    memory_cap_mib: float | None = None  # CPU only: allocations beyond this count as out of memory
    breakdown: bool = False  # also profile a few steps: the share of time in each kind of operation
    overrides: dict[str, Any] | None = None  # model overrides, e.g. a suite's CPU width

    def model_config(self) -> ModelConfig:
        return resolve_config(self.variant, **(self.overrides or {}))

    @property
    def fast_path(self) -> tuple[str, ...]:
        """The fast-path settings switched on, by name (``compile`` is named on its own)."""
        return tuple(name for name in FAST_PATH_FLAGS if getattr(self, name))


@dataclass
class Measurement:
    """What one ``measure`` call found; ``rows()`` turns it into result rows."""

    cfg: ProfileCfg
    device: torch.device
    input_size: int
    output_size: int
    params: int
    step_seconds: list[float]
    flops_per_step: int
    peak_memory_mib: dict[str, float]
    oom: str | None = None
    failed: str | None = None  # any other error: the configuration is a row and a sweep goes on
    skipped: str | None = None  # a fast-path setting that cannot run here, and why
    time_shares: dict[str, float] = field(default_factory=dict)  # operation kind -> share of step time
    energy: Energy | None = None  # the GPU's energy over the timed steps, or why it was not read

    @classmethod
    def failure(cls, cfg: ProfileCfg, exc: BaseException) -> Measurement:
        """A configuration that raised (a missing package, a compiler error on this device)."""
        reason = f"{type(exc).__name__}: {first_line(exc)}"[:300]
        input_size, output_size = cfg.input_size, 0
        with contextlib.suppress(Exception):  # the sizes it would have had, where the config resolves
            config = cfg.model_config()
            input_size = config.valid_input_size(cfg.input_size)
            output_size = config.output_size(input_size)
        return cls(cfg, resolve_device(cfg.device), input_size, output_size, 0, [], 0, {}, failed=reason)

    @classmethod
    def skip(cls, cfg: ProfileCfg, device: torch.device, reason: str) -> Measurement:
        """A configuration whose fast-path setting cannot run on ``device``: a row saying why."""
        config = cfg.model_config()
        input_size = config.valid_input_size(cfg.input_size)
        with torch.device("meta"):
            params = count_parameters(config.build())
        return cls(cfg, device, input_size, config.output_size(input_size), params, [], 0, {}, skipped=reason)

    @property
    def median_s(self) -> float:
        return statistics.median(self.step_seconds)

    def median_ci(self) -> tuple[float, float]:
        return median_confidence_interval(self.step_seconds)

    def summary(self) -> dict[str, Any]:
        """The measured values with units and intervals, keyed by metric name."""
        if self.oom:
            return {"oom": (1.0, "", None)}
        if self.failed:
            return {"failed": (1.0, "", None)}
        if self.skipped:
            return {"skipped": (1.0, "", None)}
        batch = self.cfg.batch_size
        low, high = self.median_ci()
        images_per_s = batch / self.median_s
        mpix = self.output_size**2 / 1e6
        out: dict[str, tuple[float, str, tuple[float, float] | None]] = {
            "throughput": (images_per_s, "img/s", (batch / high, batch / low)),
            "throughput_mpix": (images_per_s * mpix, "MPix/s", (batch / high * mpix, batch / low * mpix)),
            "latency_p50": (percentile(self.step_seconds, 50) * 1e3, "ms", (low * 1e3, high * 1e3)),
            "latency_p90": (percentile(self.step_seconds, 90) * 1e3, "ms", None),
            "latency_p99": (percentile(self.step_seconds, 99) * 1e3, "ms", None),
            "params": (float(self.params), "", None),
            "gflops_per_image": (self.flops_per_step / batch / 1e9, "GFLOP", None),
            "tflops_achieved": (self.flops_per_step / self.median_s / 1e12, "TFLOP/s", None),
        }
        for kind, mib in self.peak_memory_mib.items():
            out[f"peak_memory_{kind}"] = (mib, "MiB", None)
        for kind, share in self.time_shares.items():
            out[f"time_share_{kind}"] = (share, "", None)
        if self.energy is not None:
            for name, (value, unit) in self.energy.metrics(batch * len(self.step_seconds)).items():
                out[name] = (value, unit, None)
        peak = peak_tflops(self.device_name, self.cfg.precision)
        if peak:
            out["mfu"] = (self.flops_per_step / self.median_s / 1e12 / peak, "", None)
        return out

    @property
    def device_name(self) -> str:
        return row_identity(self.device)["device_name"]

    def rows(self, run_id: str, suite: str = "adhoc", shown_as: str = "") -> list[ResultRow]:
        """The measurement's rows; ``shown_as`` names them instead of the variant (a suite's arm)."""
        device_name = self.device_name
        extra = make_extra(
            channels_last=self.cfg.channels_last,
            compile=self.cfg.compile,
            cudnn_benchmark=self.cfg.cudnn_benchmark,
            oom=self.oom,
            energy=self.energy.why_not if self.energy is not None and self.energy.joules is None else None,
            failed=self.failed,
            skipped=self.skipped,
            fast_path=list(self.cfg.fast_path),
            mfu_note=None
            if peak_tflops(device_name, self.cfg.precision)
            else f"no peak TFLOP/s known for {device_name!r} in {self.cfg.precision}",
            env=row_environment(self.device),
        )
        factory = RowFactory(run_id, suite, self.device).bind(
            variant=shown_as or self.cfg.variant, config_hash=profile_key(self.cfg), stage="profile", mode=self.cfg.mode,
            setting=profile_setting(self.cfg.channels_last, self.cfg.compile, self.cfg.fast_path), precision=self.cfg.precision, batch_size=self.cfg.batch_size,
            input_size=self.input_size, output_size=self.output_size, n=len(self.step_seconds), extra=extra,
        )  # fmt: skip
        return [
            factory.row(metric, value, unit=unit, ci_low=ci[0] if ci else math.nan, ci_high=ci[1] if ci else math.nan)
            for metric, (value, unit, ci) in self.summary().items()
        ]


def profile_key(cfg: ProfileCfg) -> str:
    """The ``config_hash`` of a profile row: every setting but the batch size and the device, so
    the rows of one batch sweep share it and a resumed suite can tell what it already measured
    (``breakdown`` and the fast-path flags count only when on, so keys from before they existed
    still match)."""
    settings = only_when_set(asdict(replace(cfg, batch_size=0, device="")), ("breakdown", *FAST_PATH_FLAGS))
    return config_hash(cfg.model_config(), settings)


# --- statistics ---------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_confidence_interval(values: list[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free 95 % interval of the median from order statistics (binomial ranks)."""
    ordered = sorted(values)
    n = len(ordered)
    half = z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half))
    high = min(n - 1, math.ceil(n / 2 + half) - 1)
    return ordered[low], ordered[high]


def relative_ci_width(values: list[float]) -> float:
    low, high = median_confidence_interval(values)
    return (high - low) / 2 / statistics.median(values)


# --- FLOPs ----------------------------------------------------------------------------------------


def step_flops(config: ModelConfig, input_size: int, batch: int, mode: Mode) -> int:
    """FLOPs of one step (forward, or forward + backward), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        # .to: a library may still make a real tensor (smp's first conv uses the legacy
        # torch.Tensor constructor, which ignores the device context) and backward then mixes devices
        model = config.build().to("meta")
        x = torch.empty(batch, config.in_channels, input_size, input_size, requires_grad=mode == "train")
    model.train(mode == "train")
    counter = FlopCounterMode(display=False)
    with counter:
        if mode == "train":
            model(x).float().mean().backward()
        else:
            with torch.no_grad():
                model(x)
    return int(counter.get_total_flops())


# --- memory ---------------------------------------------------------------------------------------


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


def _release_freed_memory() -> None:
    """Give memory that earlier work freed back to the OS (glibc's malloc_trim). Otherwise a
    measurement after training is served from those pages, resident memory does not rise, and
    the model would seem to need nothing."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the increase may then read low
        pass


class RssPeak:
    """Peak resident memory of this process while the block runs.

    Linux resets the high-water mark (VmHWM) when 5 is written to /proc/self/clear_refs, so the
    peak is read exactly, with no sampling thread competing with the measured code for the CPU.
    """

    def __enter__(self) -> Self:
        _release_freed_memory()
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        self.start = _status_mib("VmRSS")
        self.peak = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = _status_mib("VmHWM")

    @property
    def increase(self) -> float:
        """How far above the resident memory at entry the measurement went: what the model and
        its activations needed, without what the process held before (e.g. after training)."""
        return max(0.0, self.peak - self.start)


@functools.cache
def _start_cpu_runtime() -> None:
    """Run one tiny convolution forward and backward, so the thread pool, its malloc arenas and
    oneDNN exist before a cap is set: they reserve tens of MiB of address space once per process,
    which a cap set first would count against the first configuration measured."""
    x = torch.ones(1, 1, 16, 16, requires_grad=True)
    F.conv2d(x, torch.ones(4, 1, 3, 3)).relu().sum().backward()


@contextlib.contextmanager
def cpu_memory_cap(cap_mib: float | None) -> Iterator[None]:
    """Make allocations beyond ``cap_mib`` more than now fail, via the address-space limit."""
    if cap_mib is None:
        yield
        return
    _start_cpu_runtime()
    with open("/proc/self/statm") as handle:
        virtual = int(handle.read().split()[0]) * resource.getpagesize()
    old = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (virtual + int(cap_mib * 2**20), old[1]))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


def is_oom(exc: BaseException, memory_capped: bool = False) -> bool:
    """Whether ``exc`` means the configuration did not fit in memory.

    Under the CPU memory cap, oneDNN reports a failed scratchpad allocation only as "could not
    create a primitive" (which CPU raises it depends on the ISA path oneDNN picks), so that
    message counts as out of memory there, and only there.
    """
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    if not isinstance(exc, RuntimeError):
        return False
    text = str(exc).lower()
    signs = ["out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory", "bad_alloc"]
    if memory_capped:
        signs.append("could not create a primitive")
    return any(sign in text for sign in signs)


# --- measuring ------------------------------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: Precision, cache: bool = True) -> contextlib.AbstractContextManager[Any]:
    """Autocast for the reduced precisions; ``cache=False`` inside a CUDA graph (its cast cache
    would hold tensors of the capture)."""
    if precision in ("fp16", "bf16"):
        dtype = torch.float16 if precision == "fp16" else torch.bfloat16
        return torch.autocast(device.type, dtype=dtype, cache_enabled=cache)
    return contextlib.nullcontext()


def make_step(
    model: nn.Module, x: torch.Tensor, cfg: ProfileCfg, device: torch.device, num_classes: int
) -> Callable[[], None]:
    """One inference forward pass, or one full training step (forward, loss, backward, update);
    with ``cuda_graphs`` that step captured in a CUDA graph, and each call a replay."""
    if cfg.mode == "infer":
        model.eval()

        def infer() -> None:
            with torch.no_grad(), _autocast(device, cfg.precision, cache=not cfg.cuda_graphs):
                model(x)

        return cuda_graphed(infer, lambda: None, device) if cfg.cuda_graphs else infer

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.99)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16" and device.type == "cuda")
    target: list[torch.Tensor] = []

    def loss() -> torch.Tensor:
        with _autocast(device, cfg.precision, cache=not cfg.cuda_graphs):
            logits = model(x)
        if not target:
            target.append(torch.randint(0, num_classes, (x.shape[0], *logits.shape[-2:]), device=device))
        return F.cross_entropy(logits.float(), target[0])

    def scaled_update(value: torch.Tensor) -> None:  # fp16 on CUDA only
        scaler.scale(value).backward()
        scaler.step(optimizer)
        scaler.update()

    if cfg.cuda_graphs:  # zero_grad before the capture: the replayed backward writes the gradients

        def update() -> None:
            loss().backward()
            optimizer.step()

        return cuda_graphed(update, lambda: optimizer.zero_grad(set_to_none=True), device)

    def train() -> None:  # the bare loop's order and calls, nothing more (bench.benchmarks.profiler_overhead)
        value = loss()
        optimizer.zero_grad(set_to_none=True)
        if scaler.is_enabled():
            scaled_update(value)
        else:
            value.backward()
            optimizer.step()

    return train


def time_steps(step: Callable[[], None], cfg: ProfileCfg, device: torch.device) -> tuple[list[float], Energy]:
    """Warm up, then time single steps until the median's interval is tight or a cap is hit; the
    GPU's energy counter is read around the timed steps (warm-up excluded)."""
    for _ in range(cfg.warmup):
        step()
    _synchronize(device)
    meter = EnergyMeter(device)
    times: list[float] = []
    start_mj = meter.millijoules()
    started = time.perf_counter()
    while len(times) < cfg.max_reps:
        _synchronize(device)
        t0 = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= cfg.min_reps and relative_ci_width(times) <= cfg.target_rel_ci:
            break
        if time.perf_counter() - started > cfg.max_seconds and len(times) >= 2:
            break
    return times, meter.window(start_mj, time.perf_counter() - started)


def measure(cfg: ProfileCfg) -> Measurement:
    """Measure one configuration. Out-of-memory gives a Measurement with ``oom`` set.

    Under a CPU memory cap the measurement runs in a child process: an allocation that fails
    under the cap can leave oneDNN unable to create primitives for the rest of the process
    (seen on CI, not every run), and the measurements after it must not inherit that."""
    if cfg.memory_cap_mib is not None and resolve_device(cfg.device).type == "cpu":
        context = multiprocessing.get_context("spawn")  # a clean process: no fork of OpenMP threads
        threads = torch.get_num_threads()
        with ProcessPoolExecutor(
            1, mp_context=context, initializer=torch.set_num_threads, initargs=(threads,)
        ) as child:
            return child.submit(_measure_here, cfg).result()
    return _measure_here(cfg)


def _measure_here(cfg: ProfileCfg) -> Measurement:
    """``measure`` in this process."""
    device = resolve_device(cfg.device)
    reason = skip_reason(cfg, device)
    if reason:
        return Measurement.skip(cfg, device, reason)
    config = cfg.model_config()
    input_size = config.valid_input_size(cfg.input_size)
    output_size = config.output_size(input_size)
    flops = step_flops(config, input_size, cfg.batch_size, cfg.mode)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = cfg.cudnn_benchmark
        torch.backends.cuda.matmul.allow_tf32 = cfg.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = cfg.precision == "tf32"
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    cpu_cap = cfg.memory_cap_mib if device.type == "cpu" else None  # the cap applies to CPU runs only
    model = x = None
    try:
        with cpu_memory_cap(cpu_cap), RssPeak() as rss:
            torch.manual_seed(0)
            model = config.build().to(device)
            params = count_parameters(model)
            memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
            model = model.to(memory_format=memory_format)
            x = torch.randn(cfg.batch_size, config.in_channels, input_size, input_size, device=device)
            x = x.contiguous(memory_format=memory_format)
            runnable = fast_runnable(model, cfg)
            step = make_step(runnable, x, cfg, device, config.num_classes)
            times, energy = time_steps(step, cfg, device)
    except Exception as exc:
        if not is_oom(exc, memory_capped=cpu_cap is not None):
            raise
        del model, x
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        reason = first_line(exc)[:200]
        if cpu_cap is not None:
            reason += f" (under the {cpu_cap:g} MiB memory cap)"
        return Measurement(cfg, device, input_size, output_size, 0, [], flops, {}, oom=reason)
    if device.type == "cuda":
        memory = {
            "allocated": torch.cuda.max_memory_allocated(device) / 2**20,
            "reserved": torch.cuda.max_memory_reserved(device) / 2**20,
        }
    else:
        memory = {"rss": rss.peak, "rss_increase": rss.increase}
    shares = (
        operation_time_shares(step, device) if cfg.breakdown else {}
    )  # after memory: the profiler's own is not counted
    del model, x, runnable, step
    gc.collect()
    return Measurement(cfg, device, input_size, output_size, params, times, flops, memory, time_shares=shares,
                       energy=energy)  # fmt: skip


# --- where the time goes ---------------------------------------------------------------------------

# Operation kinds by PyTorch operator name, first match wins. Autocast's casts are copies.
OPERATION_KINDS: list[tuple[str, re.Pattern[str]]] = [
    ("convolution", re.compile(r"conv(?!ert)")),
    ("matmul", re.compile(r"::(mm|addmm|bmm|baddbmm|matmul|linear)$")),
    ("normalisation", re.compile(r"norm")),
    ("pooling", re.compile(r"pool")),
    ("resampling", re.compile(r"upsample|grid_sampler|interpolate")),
    ("copy_cast_concat", re.compile(r"copy|cat$|clone|contiguous|stack|pad|slice|index")),
    ("loss", re.compile(r"nll|softmax|cross_entropy")),
    ("optimizer", re.compile(r"_foreach|sgd|adam")),
    (
        "elementwise",
        re.compile(
            r"relu|threshold|clamp|gelu|silu|sigmoid|tanh|elu|add|mul|sub|div|dropout|bernoulli|fill|zero|where|sum|mean"
        ),
    ),
]


def operation_kind(name: str) -> str:
    lowered = name.lower()
    return next((kind for kind, pattern in OPERATION_KINDS if pattern.search(lowered)), "other")


def operation_time_shares(step: Callable[[], None], device: torch.device, steps: int = 3) -> dict[str, float]:
    """Share of the step's time in each kind of operation, from ``torch.profiler``: on CUDA the
    device time of the kernels each operator launched, on CPU the operators' own time. What
    bounds a network (convolutions, or memory-bound copies and element-wise work) shows here."""
    from torch.profiler import ProfilerActivity, profile

    # kineto logs an "ERROR" for the GPU it looks for on machines without one; errors that
    # matter here raise. A user's own setting wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    step()  # one step outside the profile: no first-call work in it
    _synchronize(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
        _synchronize(device)
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        if event.device_type != torch.autograd.DeviceType.CPU:
            continue  # kernels: their time is already their operator's device time
        spent = event.self_device_time_total if device.type == "cuda" else event.self_cpu_time_total
        kind = operation_kind(event.key)
        totals[kind] = totals.get(kind, 0.0) + spent
    whole = sum(totals.values())
    return {kind: spent / whole for kind, spent in sorted(totals.items())} if whole > 0 else {}


def batch_sweep(cfg: ProfileCfg, max_batch: int = 1024, start: int = 1) -> Iterator[Measurement]:
    """Batch sizes start, 2 start, 4 start, ... until the first out-of-memory (recorded) or ``max_batch``."""
    batch = start
    while batch <= max_batch:
        result = measure(replace(cfg, batch_size=batch))
        yield result
        if result.oom:
            return
        batch *= 2
