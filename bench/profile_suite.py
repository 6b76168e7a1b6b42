"""Profile suites: a TOML file of sweeps, expanded into ``ProfileCfg`` runs under a time budget.

``bench/suites/gpu.toml`` is the prepared check for a lent GPU: one command measures the paper's
network across precisions, batch sizes (until out of memory) and resolutions, and the design
axes at one setting, writing every row through the result store as it goes, so whatever
finished before the budget (or a crash) is kept.
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bench.paths import safe_part
from bench.profile import Measurement, ProfileCfg, batch_sweep, measure, profile_key
from bench.store import ResultWriter, read_results
from bench.suite_file import SuiteError, load_toml, suite_key_error, suite_path
from variants import UnknownVariantError, UserError, get_variant
from variants.overrides import ConfigError, apply_overrides

# sweep key -> ProfileCfg field it lists
LIST_KEYS = {
    "variants": "variant",
    "modes": "mode",
    "precisions": "precision",
    "input_sizes": "input_size",
    "batch_sizes": "batch_size",
    "channels_last": "channels_last",
    "compile": "compile",
    "cuda_graphs": "cuda_graphs",
    "fused_conv": "fused_conv",
    "concat_buffers": "concat_buffers",
}
SCALAR_KEYS = {f.name for f in fields(ProfileCfg)} - set(LIST_KEYS.values()) | {"max_batch"}


def expand_sweep(
    sweep: dict[str, Any], defaults: dict[str, Any], path: Path, text: str, index: int
) -> list[tuple[ProfileCfg, int | None]]:
    """Every combination of a sweep's lists: (config, max_batch if the batch is 'auto')."""
    unknown = set(sweep) - set(LIST_KEYS) - SCALAR_KEYS
    if unknown:
        key = min(unknown)
        allowed = ", ".join(sorted(set(LIST_KEYS) | SCALAR_KEYS))
        raise suite_key_error(path, text, f"sweep[{index}].{key}", f"unknown key; allowed: {allowed}")
    for key in ("variants",):
        if key not in sweep:
            raise SuiteError(f"{path}: sweep[{index}] needs a '{key}' list")
    for name in sweep["variants"]:
        try:
            get_variant(name)
        except UnknownVariantError as exc:
            raise suite_key_error(path, text, f"sweep[{index}].variants", str(exc)) from None
    lists = {key: sweep.get(key, [None]) for key in LIST_KEYS}
    for key, values in lists.items():
        if not isinstance(values, list):
            raise suite_key_error(path, text, f"sweep[{index}].{key}", f"must be a list, got {values!r}")
    scalars = {**defaults, **{k: v for k, v in sweep.items() if k in SCALAR_KEYS}}
    max_batch = int(scalars.pop("max_batch", 1024))
    configs = []
    for combo in itertools.product(*lists.values()):
        values = {LIST_KEYS[k]: v for k, v in zip(lists, combo) if v is not None}
        auto = values.get("batch_size") == "auto"
        if auto:
            values["batch_size"] = 1
        try:
            cfg = apply_overrides(
                ProfileCfg(variant=values.pop("variant")), {**scalars, **values}, owner=f"sweep[{index}]"
            )
        except ConfigError as exc:
            field = exc.key or ""
            key = next((k for k, f in LIST_KEYS.items() if f == field and k in sweep), field)
            raise suite_key_error(path, text, f"sweep[{index}].{key}", str(exc)) from None
        configs.append((cfg, max_batch if auto else None))
    return configs


def load_profile_suite(name_or_path: str | Path) -> tuple[dict[str, Any], list[tuple[ProfileCfg, int | None]]]:
    """The suite's header and its expanded configurations, validated before anything runs."""
    path = suite_path(name_or_path)
    data, text = load_toml(path)
    header = dict(data.get("suite", {}))
    try:  # the name of its run folders
        header["name"] = safe_part(str(header.get("name", path.stem)), "suite name")
    except UserError as exc:
        raise suite_key_error(path, text, "name", str(exc)) from None
    defaults = data.get("defaults", {})
    bad = set(defaults) - SCALAR_KEYS
    if bad:
        raise suite_key_error(
            path, text, f"defaults.{min(bad)}", f"unknown key; allowed: {', '.join(sorted(SCALAR_KEYS))}"
        )
    sweeps = data.get("sweep", [])
    if not sweeps:
        raise SuiteError(f"{path}: no [[sweep]] tables")
    configs = [c for i, sweep in enumerate(sweeps) for c in expand_sweep(sweep, defaults, path, text, i)]
    return header, configs


def run_profile_suite(
    name_or_path: str | Path,
    results_dir: Path,
    device: str = "auto",
    minutes: float | None = None,
    log: Callable[[str], None] = print,
    resume: bool = False,
) -> tuple[Path, list[Measurement]]:
    """Run every configuration in order until the budget ends; rows are appended as they come.

    With ``resume``, the suite's latest run under ``results_dir`` goes on: what it measured is
    skipped and a batch sweep continues after its largest stored batch, so a second lease (or a
    run after a crash) spends its minutes on what is missing."""
    header, configs = load_profile_suite(name_or_path)
    budget_s = 60 * (minutes if minutes is not None else float(header.get("minutes", 8.0)))
    suite = header["name"]
    run_dir = latest_profile_run(results_dir, suite) if resume else None
    if resume and run_dir is None:
        log(f"nothing to resume under {results_dir} for suite {suite}; starting a new run")
    if run_dir is None:
        run_dir = results_dir / f"{suite}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    run_id = run_dir.name
    stored = StoredSweeps.read(run_dir)
    writer = ResultWriter(run_dir)
    started = time.perf_counter()
    done: list[Measurement] = []
    for number, (cfg, max_batch) in enumerate(configs, start=1):
        if time.perf_counter() - started > budget_s:
            log(f"time budget reached: {len(configs) - number + 1} of {len(configs)} configurations not run")
            break
        cfg = replace(cfg, device=device)
        start = stored.next_batch(cfg, max_batch)
        if start is None:
            continue
        for m in _guarded(cfg, max_batch, start):
            writer.append(m.rows(run_id, suite=suite))
            done.append(m)
            log(describe(number, len(configs), m))
    return writer.run_dir, done


def latest_profile_run(results_dir: Path, suite: str) -> Path | None:
    """The newest ``SUITE-YYYYmmdd-HHMMSS-xxxxxx`` run folder (not another suite whose name
    merely starts with this one's)."""
    name = re.compile(rf"{re.escape(suite)}-\d{{8}}-\d{{6}}-[0-9a-f]{{6}}")
    runs = sorted(p for p in results_dir.glob(f"{suite}-*") if p.is_dir() and name.fullmatch(p.name))
    return runs[-1] if runs else None


@dataclass
class StoredSweeps:
    """What a run folder already holds, by profile key: the batch sizes measured, and whether a
    batch sweep ended at an out-of-memory. Failed configurations count as not measured."""

    batches: dict[str, set[int]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)

    @classmethod
    def read(cls, run_dir: Path) -> StoredSweeps:
        stored = cls()
        if not run_dir.exists():
            return stored
        frame = read_results(run_dir)
        for key, batch, metric in zip(frame["config_hash"], frame["batch_size"], frame["metric"]):
            if metric in ("failed", "skipped"):  # not a measurement: tried again (on another device, maybe)
                continue
            stored.batches.setdefault(key, set()).add(int(batch))
            if metric == "oom":
                stored.ended.add(key)
        return stored

    def next_batch(self, cfg: ProfileCfg, max_batch: int | None) -> int | None:
        """The batch to start ``cfg`` at, or None when it is measured already."""
        key = profile_key(cfg)
        measured = self.batches.get(key, set())
        if max_batch is None:  # a fixed batch
            return None if cfg.batch_size in measured else cfg.batch_size
        if key in self.ended:
            return None
        start = 2 * max(measured) if measured else 1
        return start if start <= max_batch else None


def _guarded(cfg: ProfileCfg, max_batch: int | None, start: int = 1) -> Iterator[Measurement]:
    """The measurements of one configuration; an error in it (not out-of-memory, which is a
    measurement already) becomes a ``failed`` row, so one broken configuration cannot end a
    lent GPU's only run."""
    try:
        yield from batch_sweep(cfg, max_batch, start) if max_batch else iter([measure(replace(cfg, batch_size=start))])
    except Exception as exc:  # noqa: BLE001 - recorded with its reason, then the suite goes on
        yield Measurement.failure(cfg, exc)


def describe(number: int, total: int, m: Measurement) -> str:
    c = m.cfg
    setting = (
        f"{c.variant} {c.mode} {c.precision} b{c.batch_size} {m.input_size}px"
        + (" cl" if c.channels_last else "")
        + (f" compile={c.compile}" if c.compile else "")
        + "".join(f" {flag}" for flag in c.fast_path)
    )
    if m.oom:
        return f"[{number}/{total}] {setting}: out of memory"
    if m.failed:
        return f"[{number}/{total}] {setting}: failed ({m.failed})"
    if m.skipped:
        return f"[{number}/{total}] {setting}: skipped ({m.skipped})"
    thr = m.summary()["throughput"][0]
    return f"[{number}/{total}] {setting}: {thr:.1f} img/s"
