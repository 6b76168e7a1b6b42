"""Training suites: what to train, on which data, how, and what to search.

A suite file has ``[suite]``, ``[data]``, ``[train]`` (fields of ``TrainCfg``), ``[model]``
(overrides applied to every variant, e.g. a small width for CPU runs), ``[variants]`` and
``[search]`` with a ``[search.space]``. Everything is validated on load, before any training:
errors name the file, the line and the key, and say what would be valid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.config import SuiteError, TrainCfg, load_toml, suite_key_error, suite_path
from bench.data import DataError, parse_indices
from bench.fetch import DATASETS
from variants import ConfigError, UnknownVariantError, get_variant, resolve_config

SAMPLERS = ("tpe", "random", "cmaes", "nsga2")
# what a trial can cost, each minimised, with its unit: inference latency (batch 1, the training
# tile, this machine), parameters, forward GFLOP per image, peak memory of the latency measurement
COSTS = {"latency_ms": "ms", "params": "", "gflops": "GFLOP", "peak_memory_mib": "MiB"}
PRUNERS = ("median", "hyperband", "sha", "none")
SECTIONS = {"suite", "data", "train", "cpu", "model", "variants", "search"}


@dataclass(frozen=True)
class Param:
    """One searched parameter: ``model.x`` goes to the variant, anything else to ``TrainCfg``."""

    name: str
    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchCfg:
    trials: int = 6
    sampler: str = "tpe"
    pruner: str = "median"
    objective: str = "v_rand"
    seed: int = 0
    variant: str = "unet-original"  # the variant whose hyperparameters are searched
    space: tuple[Param, ...] = ()
    startup_trials: int = 2  # trials before pruning starts
    warmup_epochs: int = 1  # epochs of a trial before it may be pruned
    costs: tuple[str, ...] = ()  # multi-objective: the objective against these (Pareto front; no pruning)
    constraints: dict[str, float] = field(default_factory=dict)  # cost <= limit, or the trial is pruned untrained

    @property
    def multi_objective(self) -> bool:
        return bool(self.costs)


@dataclass(frozen=True)
class SuiteCfg:
    name: str
    path: Path
    data: str = "synthetic"  # a load_data spec: synthetic[:count=..,size=..] or a folder
    val_sections: str | None = None  # validation: checkpoint choice and the search's objective
    test_sections: str | None = None  # scored once, by the retrained best configuration only
    train: TrainCfg = field(default_factory=TrainCfg)
    model: dict[str, Any] = field(default_factory=dict)
    variants: tuple[str, ...] = ()
    seeds: int = 2
    search: SearchCfg | None = None
    cpu_train: TrainCfg | None = None  # [cpu]: the scaled-down schedule used without a GPU

    def model_overrides(self, variant: str) -> dict[str, Any]:
        """[model] overrides for ``variant``. ``width_scale`` scales the variant's own base
        width (so unet-16 and unet-32 stay different at CPU size) instead of replacing it."""
        overrides = dict(self.model)
        scale = overrides.pop("width_scale", None)
        base_width = getattr(get_variant(variant).config, "base_width", None)
        if scale is not None and base_width is not None:
            overrides.setdefault("base_width", max(1, round(base_width * float(scale))))
        return overrides


def _params(space: dict[str, Any], path: Path, text: str) -> tuple[Param, ...]:
    params = []
    for name, spec in space.items():
        where = f"search.space.{name}"
        if not isinstance(spec, dict):
            raise suite_key_error(
                path, text, name, "expected a table like { low = 1e-4, high = 1e-2, log = true } or { choices = [...] }"
            )
        unknown = set(spec) - {"low", "high", "log", "choices", "type"}
        if unknown:
            raise suite_key_error(
                path,
                text,
                name,
                f"{where}: unknown field {sorted(unknown)[0]!r}; allowed: low, high, log, choices, type",
            )
        if "choices" in spec:
            params.append(Param(name, "categorical", choices=tuple(spec["choices"])))
        elif "low" in spec and "high" in spec:
            is_int = spec.get("type") == "int" or (
                isinstance(spec["low"], int) and isinstance(spec["high"], int) and not spec.get("log")
            )
            if spec["low"] >= spec["high"]:
                raise suite_key_error(path, text, name, f"{where}: low must be below high")
            params.append(
                Param(name, "int" if is_int else "float", spec["low"], spec["high"], bool(spec.get("log", False)))
            )
        else:
            raise suite_key_error(path, text, name, f"{where}: needs low and high, or choices")
    return tuple(params)


def _check_space(params: tuple[Param, ...], variant: str, train: TrainCfg, path: Path, text: str) -> None:
    """Every searched name must be a real field: try each value now, not in trial 5."""
    for p in params:
        samples = p.choices or (p.low, p.high)
        for value in samples:
            value = int(value) if p.kind == "int" else value
            try:
                if p.name.startswith("model."):
                    resolve_config(variant, **{p.name.removeprefix("model."): value})
                else:
                    train.with_overrides({p.name.removeprefix("train."): value}, owner="search.space")
            except ConfigError as exc:
                raise suite_key_error(path, text, p.name, f"search.space.{p.name}: {exc}") from None


def _check_costs(search: SearchCfg, pruner_given: bool, path: Path, text: str) -> None:
    """Costs and constraints name known costs; a multi-objective study cannot prune (Optuna's
    limit), so asking for both is a mistake worth naming."""
    for cost in search.costs:
        if cost not in COSTS:
            raise suite_key_error(path, text, "costs", f"unknown cost {cost!r}; allowed: {', '.join(COSTS)}")
    for cost, limit in search.constraints.items():
        if cost not in COSTS:
            raise suite_key_error(
                path, text, cost, f"search.constraints: unknown cost {cost!r}; allowed: {', '.join(COSTS)}"
            )
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
            raise suite_key_error(
                path, text, cost, f"search.constraints.{cost}: the limit must be a positive number, got {limit!r}"
            )
    if search.costs and pruner_given and search.pruner != "none":
        raise suite_key_error(path, text, "pruner", "Optuna cannot prune a multi-objective study (costs = [...]); "
                              'set pruner = "none", or keep one objective and limit the cost with [search.constraints], which prunes')  # fmt: skip
    if search.costs and search.sampler == "cmaes":
        raise suite_key_error(
            path, text, "sampler", "cmaes handles one objective only; use tpe or nsga2 with costs = [...]"
        )


def load_suite(name_or_path: str | Path) -> SuiteCfg:
    """Read and validate a training suite."""
    path = suite_path(name_or_path)
    data, text = load_toml(path)
    unknown = set(data) - SECTIONS
    if unknown:
        key = sorted(unknown)[0]
        if not isinstance(data[key], dict):  # a key above the first [section], or one that lost its header
            raise suite_key_error(
                path, text, key, f"outside any section; put it under one of [{'], ['.join(sorted(SECTIONS))}]"
            )
        raise SuiteError(f"{path}: unknown section [{key}]; allowed: {', '.join(sorted(SECTIONS))}")
    head = data.get("suite", {})
    data_section = dict(data.get("data", {}))
    source = str(data_section.pop("source", "synthetic"))
    val_sections, test_sections = (
        None if (v := data_section.pop(key, None)) is None else str(v) for key in ("val_sections", "test_sections")
    )
    parsed: dict[str, set[int]] = {}
    for key, sections in (("val_sections", val_sections), ("test_sections", test_sections)):
        try:
            parsed[key] = set(parse_indices(sections)) if sections is not None else set()
        except DataError as exc:
            raise suite_key_error(path, text, key, f"[data] {key}: {exc}") from None
    shared = sorted(parsed["val_sections"] & parsed["test_sections"])
    if shared:
        raise suite_key_error(path, text, "test_sections", f"sections {shared} are both validation and test sections; "
                              "the test split must be untouched by training and selection")  # fmt: skip
    bad = set(data_section) - {"count", "size", "seed"}
    if bad:
        raise suite_key_error(
            path,
            text,
            sorted(bad)[0],
            "unknown key in [data]; allowed: source, val_sections, test_sections, count, size, seed",
        )
    if source == "synthetic" and data_section:
        source = "synthetic:" + ",".join(f"{k}={int(v)}" for k, v in sorted(data_section.items()))
    elif source != "synthetic" and source not in DATASETS and not Path(source).is_absolute():
        # a relative folder is relative to the suite file, never to the working directory
        source = str((path.parent / source).resolve())
    try:
        train = TrainCfg().with_overrides(data.get("train", {}), owner="[train]")
    except ConfigError as exc:
        key = exc.key or "train"
        raise suite_key_error(path, text, key, str(exc)) from None
    cpu_train = None
    if "cpu" in data:
        try:
            cpu_train = train.with_overrides(data["cpu"], owner="[cpu]")
        except ConfigError as exc:
            key = exc.key or "cpu"
            raise suite_key_error(path, text, key, str(exc)) from None
    model = dict(data.get("model", {}))
    variants_section = data.get("variants", {})
    names = tuple(variants_section.get("names", ()))
    probe = SuiteCfg(name="", path=path, model=model)
    for name in names:
        try:
            resolve_config(name, **probe.model_overrides(name))
        except (UnknownVariantError, ConfigError) as exc:
            raise suite_key_error(path, text, "names", str(exc)) from None
    search = None
    if "search" in data:
        s = dict(data["search"])
        space = _params(s.pop("space", {}), path, text)
        allowed = {f for f in SearchCfg.__dataclass_fields__} - {"space"}
        bad = set(s) - allowed
        if bad:
            raise suite_key_error(
                path, text, sorted(bad)[0], f"unknown key in [search]; allowed: {', '.join(sorted(allowed))}"
            )
        search = SearchCfg(
            space=space, **{**s, "costs": tuple(s.get("costs", ())), "constraints": dict(s.get("constraints", {}))}
        )
        _check_costs(search, "pruner" in s, path, text)
        if search.sampler not in SAMPLERS:
            raise suite_key_error(path, text, "sampler", f"{search.sampler!r} is not one of {', '.join(SAMPLERS)}")
        if search.pruner not in PRUNERS:
            raise suite_key_error(path, text, "pruner", f"{search.pruner!r} is not one of {', '.join(PRUNERS)}")
        try:
            resolve_config(search.variant, **probe.model_overrides(search.variant))
        except (UnknownVariantError, ConfigError) as exc:
            raise suite_key_error(path, text, "variant", str(exc)) from None
        _check_space(space, search.variant, train, path, text)
    return SuiteCfg(
        name=str(head.get("name", path.stem)), path=path, data=source,
        val_sections=val_sections, test_sections=test_sections, train=train, model=model, variants=names,
        seeds=int(variants_section.get("seeds", 2)), search=search, cpu_train=cpu_train,
    )  # fmt: skip
