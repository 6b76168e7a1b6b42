"""Training suites: what to train, on which data, how, and what to search.

A suite file has ``[suite]``, ``[data]``, ``[train]`` (fields of ``TrainCfg``), ``[model]``
(overrides applied to every variant, and ``width_scale`` for CPU-sized runs), ``[variants]``,
``[arms]`` (named settings compared on the same network, for ablations of training settings) and
``[search]`` (fields of ``SearchCfg``) with a ``[search.space]``. Every section is validated on
load, before any training, through the same typed overrides as model configs: errors name the
file, the line and the key, and say what would be valid.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from bench.config import WARPING_UNSCORED, TrainCfg, split_settings
from bench.data import MIN_FOLDS, SYNTHETIC_OPTIONS, DataError, DataSpec, kfold_split, parse_indices
from bench.device import resolve_device
from bench.metrics import METRICS, CostName, InstanceName, ScoreName
from bench.paths import safe_part
from bench.suite_file import SuiteError, load_toml, suite_key_error, suite_path
from variants import ConfigError, UserError, resolve_config
from variants.overrides import apply_overrides, near_matches

Sampler = Literal["tpe", "random", "cmaes", "nsga2"]
Pruner = Literal["median", "hyperband", "sha", "none"]
COSTS = {name: METRICS[name].unit for name in get_args(CostName)}  # what a trial can cost, with its unit
SUITE_KEYS = {"name", "description"}
SECTIONS = {"suite", "data", "train", "cpu", "model", "variants", "arms", "search"}


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
    sampler: Sampler = "tpe"
    pruner: Pruner = "median"
    objective: Literal[ScoreName, InstanceName] = "v_rand"  # direction from bench.metrics.METRICS
    seed: int = 0
    # True: every [variants] name gets a study of its own, with the same trials, sampler seed and
    # pruner (an equal tuning budget); False: only ``variant`` is searched and its best settings
    # serve every variant
    per_variant: bool = True
    variant: str = "unet-original"  # the variant searched with per_variant = false (or without [variants])
    space: tuple[Param, ...] = ()
    startup_trials: int = 2  # trials before pruning starts
    warmup_epochs: int = 1  # epochs of a trial before it may be pruned
    costs: tuple[CostName, ...] = ()  # multi-objective: the objective against these (Pareto front; no pruning)
    constraints: dict[CostName, float] = field(default_factory=dict)  # cost <= limit, or the trial is pruned untrained

    @property
    def multi_objective(self) -> bool:
        return bool(self.costs)


@dataclass(frozen=True)
class Variants:
    """[variants]: the variants trained, each with ``seeds`` seeds, and the one the report's
    deltas are taken against (default: unet-original where trained, else the first arm)."""

    names: tuple[str, ...] = ()
    seeds: int = 2
    baseline: str | None = None

    def __post_init__(self) -> None:
        if self.seeds <= 0:
            raise ConfigError(f"seeds must be positive, got {self.seeds}", key="seeds")


@dataclass(frozen=True)
class Arm:
    """One compared setting of an [arms] ablation: the registered variant it trains and what it
    changes over [train] and [model] (``model.x`` keys go to the variant). Results and reports
    name the arm, not the variant, so arms of one network are rows of their own."""

    variant: str
    settings: dict[str, Any]
    name: str  # as written in [arms]; the compared name adds the variant when there are several


@dataclass(frozen=True)
class SuiteCfg:
    name: str
    path: Path
    data: DataSpec = field(default_factory=DataSpec)
    val_sections: tuple[int, ...] | None = None  # validation: checkpoint choice and the search's objective
    test_sections: tuple[int, ...] = ()  # scored once, by the retrained best configuration only
    train: TrainCfg = field(default_factory=TrainCfg)
    model: dict[str, Any] = field(default_factory=dict)  # [model]: config overrides for every variant
    width_scale: float | None = None  # [model] width_scale: each variant's own widths times this
    variants: tuple[str, ...] = ()  # what is compared: variant names, or arm names with [arms]
    seeds: int = 2
    arms: dict[str, Arm] = field(default_factory=dict)
    baseline: str | None = None  # the report's reference for deltas (None: unet-original where present)
    search: SearchCfg | None = None
    cpu_train: TrainCfg | None = None  # [cpu]: the scaled-down schedule used without a GPU
    # [data] folds: K-fold cross-validation; each fold's validation and test sections are blocks of
    # the data (bench.data.kfold_split), resolved against its image count when the suite runs
    folds: int | None = None

    def __post_init__(self) -> None:
        if self.width_scale is not None and not (math.isfinite(self.width_scale) and self.width_scale > 0):
            raise ConfigError(f"width_scale must be positive, got {self.width_scale}", key="width_scale")
        if self.folds is not None and self.folds < MIN_FOLDS:
            raise ConfigError(f"{self.folds} folds leave no image to train on (each fold tests one block and "
                              f"validates on the next); use folds >= {MIN_FOLDS}", key="folds")  # fmt: skip

    def searched_variants(self) -> tuple[str, ...]:
        """The variants the search tunes, each in its own study."""
        if self.search is None:
            return ()
        if self.search.per_variant and self.variants:
            return self.variants
        return (self.search.variant,)

    def network(self, name: str) -> str:
        """The registered variant behind a compared name (an arm's, or the name itself)."""
        return self.arms[name].variant if name in self.arms else name

    def arm_settings(self, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """An arm's model and training settings (both empty for a plain variant)."""
        return split_settings(self.arms[name].settings) if name in self.arms else ({}, {})

    def train_for(self, name: str) -> TrainCfg:
        """[train] with the arm's training settings over it."""
        return self.train.with_overrides(self.arm_settings(name)[1], owner=f"[arms] {name}")

    def model_overrides(self, name: str) -> dict[str, Any]:
        """[model] overrides for ``name``, then its arm's. ``width_scale`` scales the variant's
        own widths (so unet-16 and unet-32 stay different at CPU size, and every family shrinks,
        by its config's ``scaled``, within its library's rules) instead of replacing them; a
        width [model] names is kept as written."""
        overrides = dict(self.model)
        if self.width_scale is not None:
            scaled = resolve_config(self.network(name), **self.model).scaled(self.width_scale)
            overrides.update({key: value for key, value in scaled.items() if key not in self.model})
        return {**overrides, **self.arm_settings(name)[0]}


@contextlib.contextmanager
def named(path: Path, text: str, key: str, prefix: str = "") -> Iterator[None]:
    """A config error raised inside becomes one SuiteError naming the file, the line and the
    key: the error's own key when it has one (the [train] field at fault), else ``key``."""
    try:
        yield
    except SuiteError:
        raise
    except UserError as exc:
        raise suite_key_error(path, text, getattr(exc, "key", None) or key, prefix + str(exc)) from None


def _params(space: Any, path: Path, text: str) -> tuple[Param, ...]:
    if not isinstance(space, dict):
        raise suite_key_error(path, text, "space", "expected a [search.space] table")
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
                path, text, name, f"{where}: unknown field {min(unknown)!r}; allowed: low, high, log, choices, type"
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


def _check_space(params: tuple[Param, ...], suite: SuiteCfg, variant: str, path: Path, text: str) -> None:
    """Every searched name must be a real field: try each value now, not in trial 5. An arm
    must not fix a searched name (the search would overrule the arm)."""
    fixed = suite.arms[variant].settings if variant in suite.arms else {}
    for p in params:
        if p.name in fixed or p.name.removeprefix("train.") in fixed:
            raise suite_key_error(path, text, suite.arms[variant].name, f"[arms] {variant} sets {p.name}, which [search.space] "
                                  "searches; search it or fix it in the arm, not both")  # fmt: skip
        samples = p.choices or (p.low, p.high)
        for value in samples:
            value = int(value) if p.kind == "int" else value
            try:
                if p.name.startswith("model."):
                    resolve_config(suite.network(variant), **{p.name.removeprefix("model."): value})
                else:
                    suite.train_for(variant).with_overrides(
                        {p.name.removeprefix("train."): value}, owner="search.space"
                    )
            except UserError as exc:
                raise suite_key_error(path, text, p.name, f"search.space.{p.name}: {exc}") from None


def _check_cost_names(values: dict[str, Any], path: Path, text: str) -> None:
    """Costs and constraints name known costs and positive limits: checked before the types, so
    the message says which cost is unknown."""
    costs = values.get("costs", ())
    for cost in costs if isinstance(costs, list) else ():
        if not isinstance(cost, str) or cost not in COSTS:
            raise suite_key_error(path, text, "costs", f"unknown cost {cost!r}; allowed: {', '.join(COSTS)}")
    constraints = values.get("constraints", {})
    for cost, limit in constraints.items() if isinstance(constraints, dict) else ():
        if cost not in COSTS:
            raise suite_key_error(
                path, text, cost, f"search.constraints: unknown cost {cost!r}; allowed: {', '.join(COSTS)}"
            )
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or limit <= 0:
            raise suite_key_error(
                path, text, cost, f"search.constraints.{cost}: the limit must be a positive number, got {limit!r}"
            )


def _check_multi_objective(search: SearchCfg, pruner_given: bool, path: Path, text: str) -> None:
    """A multi-objective study cannot prune (Optuna's limit), so asking for both is a mistake
    worth naming."""
    if search.costs and pruner_given and search.pruner != "none":
        raise suite_key_error(path, text, "pruner", "Optuna cannot prune a multi-objective study (costs = [...]); "
                              'set pruner = "none", or keep one objective and limit the cost with [search.constraints], which prunes')  # fmt: skip
    if search.costs and search.sampler == "cmaes":
        raise suite_key_error(
            path, text, "sampler", "cmaes handles one objective only; use tpe or nsga2 with costs = [...]"
        )


def _tables(data: dict[str, Any], path: Path, text: str) -> dict[str, dict[str, Any]]:
    """The file's sections by name; a key outside any section or an unknown section is refused."""
    loose = sorted(key for key, value in data.items() if not isinstance(value, dict))
    if loose:  # a key above the first [section], or one that lost its header
        raise suite_key_error(
            path, text, loose[0], f"outside any section; put it under one of [{'], ['.join(sorted(SECTIONS))}]"
        )
    unknown = sorted(set(data) - SECTIONS)
    if unknown:
        raise SuiteError(f"{path}: unknown section [{unknown[0]}]; allowed: {', '.join(sorted(SECTIONS))}")
    return {name: dict(section) for name, section in data.items()}


def _with_data(suite: SuiteCfg, section: dict[str, Any], text: str) -> SuiteCfg:
    """[data]: the source (a relative folder is relative to the suite file) and the sections held
    out for validation and test, which must not overlap."""
    path = suite.path
    source = str(section.pop("source", "synthetic"))
    folds = section.pop("folds", None)
    val_sections, test_sections = (
        None if (v := section.pop(key, None)) is None else str(v) for key in ("val_sections", "test_sections")
    )
    parsed: dict[str, tuple[int, ...]] = {}
    for key, sections in (("val_sections", val_sections), ("test_sections", test_sections)):
        with named(path, text, key, prefix=f"[data] {key}: "):
            parsed[key] = tuple(parse_indices(sections)) if sections is not None else ()
    shared = sorted(set(parsed["val_sections"]) & set(parsed["test_sections"]))
    if shared:
        raise suite_key_error(path, text, "test_sections", f"sections {shared} are both validation and test sections; "
                              "the test split must be untouched by training and selection")  # fmt: skip
    bad = set(section) - set(SYNTHETIC_OPTIONS)
    if bad:
        raise suite_key_error(path, text, min(bad),
                              "unknown key in [data]; allowed: source, val_sections, test_sections, folds, count, size, seed")  # fmt: skip
    spec = DataSpec.parse(source, base=path.parent)  # a relative folder is relative to the suite file
    if section and not spec.synthetic:
        raise suite_key_error(path, text, min(section), 'count, size and seed apply to source = "synthetic" only')
    with named(path, text, "data"):
        spec = apply_overrides(spec, section, owner="[data]")
    val = parsed["val_sections"] if val_sections is not None else None
    suite = replace(suite, data=spec, val_sections=val, test_sections=parsed["test_sections"])
    if folds is None:
        return suite
    if val_sections is not None or test_sections is not None:
        raise suite_key_error(path, text, "folds", "folds chooses each fold's validation and test sections; "
                              "remove val_sections and test_sections, or folds")  # fmt: skip
    with named(path, text, "folds", prefix="[data] folds: "):
        suite = apply_overrides(suite, {"folds": folds}, owner="[data]")
        if spec.synthetic:  # the image count is known without reading any data
            kfold_split(spec.count, folds, 0)
    return suite


def _with_train(suite: SuiteCfg, tables: dict[str, dict[str, Any]], text: str) -> SuiteCfg:
    """[train] over TrainCfg's defaults, and [cpu] over [train]: the CPU schedule changes only
    what it names."""
    with named(suite.path, text, "train"):
        train = TrainCfg().with_overrides(tables.get("train", {}), owner="[train]")
    cpu_train = None
    if "cpu" in tables:
        with named(suite.path, text, "cpu"):
            cpu_train = train.with_overrides(tables["cpu"], owner="[cpu]")
    # the schedule that runs here (bench.run: [cpu] without a GPU) must name a device this machine
    # has: it fails now, not in trial 0
    here = cpu_train if cpu_train is not None and not torch.cuda.is_available() else train
    with named(suite.path, text, "device"):
        resolve_device(here.device)
    return replace(suite, train=train, cpu_train=cpu_train)


def _with_model(suite: SuiteCfg, section: dict[str, Any], text: str) -> SuiteCfg:
    """[model]: ``width_scale``, a field of the suite, and overrides for every variant (checked
    with the variants that use them)."""
    scale = section.pop("width_scale", None)
    with named(suite.path, text, "width_scale"):
        return apply_overrides(replace(suite, model=section), {"width_scale": scale}, owner="[model]")


def _with_variants(suite: SuiteCfg, section: dict[str, Any], text: str) -> SuiteCfg:
    """[variants]: each name must be registered and build with [model]'s overrides."""
    with named(suite.path, text, "variants"):
        chosen = apply_overrides(Variants(), section, owner="[variants]")
    for name in chosen.names:
        with named(suite.path, text, "names"):
            resolve_config(name, **suite.model_overrides(name))
    return replace(suite, variants=chosen.names, seeds=chosen.seeds, baseline=chosen.baseline)


def _with_arms(suite: SuiteCfg, section: dict[str, Any], text: str) -> SuiteCfg:
    """[arms]: each arm (``name = { w0 = 0.0 }``) trains every [variants] name with its settings
    over [train] and [model]; what is compared becomes the arms (``VARIANT+ARM`` with several
    variants). Each arm must build, train and differ from every other arm."""
    path = suite.path
    if not suite.variants:
        raise SuiteError(f"{path}: [arms] needs [variants] names, the network(s) every arm trains")
    arms: dict[str, Arm] = {}
    for arm, settings in section.items():
        if not isinstance(settings, dict):
            raise suite_key_error(path, text, arm, "expected a table of settings, like { w0 = 0.0 }")
    for variant in suite.variants:
        for arm, settings in section.items():
            with named(path, text, arm):
                safe_part(arm, "arm name")  # alone too: unet-16+.. is a safe part, '..' is not an arm name
                label = safe_part(arm if len(suite.variants) == 1 else f"{variant}+{arm}", "arm name")
                arms[label] = Arm(variant, dict(settings), arm)
    suite = replace(suite, arms=arms, variants=tuple(arms))
    resolved: dict[str, str] = {}
    for label, spec in arms.items():
        try:
            job = (suite.train_for(label), resolve_config(spec.variant, **suite.model_overrides(label)))
        except UserError as exc:  # the arm's line, whatever key inside it is wrong
            raise suite_key_error(path, text, spec.name, str(exc)) from None
        same = resolved.setdefault(repr(job), label)
        if same != label:
            raise suite_key_error(path, text, spec.name, f"[arms] {label} trains the same settings as {same}")
    return suite


def _check_baseline(suite: SuiteCfg, text: str) -> SuiteCfg:
    """The baseline must be one of the compared names; with arms it defaults to the first."""
    if suite.baseline is None:
        return replace(suite, baseline=next(iter(suite.arms), None))
    if suite.baseline not in suite.variants:
        raise suite_key_error(suite.path, text, "baseline",
                              f"{suite.baseline!r} is not compared here; compared: {', '.join(suite.variants)}")  # fmt: skip
    return suite


def _check_objective_fits_data(search: SearchCfg, suite: SuiteCfg, text: str) -> None:
    """An instance objective needs instance labels and a membrane one binary labels (data not on
    this machine is checked when the suite runs, by the job)."""
    try:
        instances = suite.data.instance_task
    except DataError:
        return
    if instances != (search.objective in get_args(InstanceName)):
        wanted = "dsb_ap" if instances else "v_rand"
        kind = "instance" if instances else "binary"
        raise suite_key_error(suite.path, text, "objective", f"{search.objective!r} does not score {suite.data}'s "
                              f"{kind} labels; use an objective like {wanted!r}")  # fmt: skip


def _search(suite: SuiteCfg, section: dict[str, Any], text: str) -> SearchCfg:
    """[search] through the same typed path as [train], then what types cannot say: costs
    against pruning, an objective validation scores, a variant and space that build."""
    path = suite.path
    space = _params(section.pop("space", {}), path, text)
    _check_cost_names(section, path, text)
    with named(path, text, "search"):
        search = apply_overrides(SearchCfg(), {**section, "space": space}, owner="[search]")
    _check_multi_objective(search, "pruner" in section, path, text)
    _check_objective_fits_data(search, suite, text)
    schedules = (suite.train, suite.cpu_train or suite.train)
    if search.objective == "warping_error" and not all(t.val_warping for t in schedules):
        raise suite_key_error(path, text, "objective", WARPING_UNSCORED.format(name="objective"))
    if search.per_variant and suite.variants and "variant" in section:
        raise suite_key_error(path, text, "variant", "with per_variant = true (the default) every [variants] name is "
                              "tuned in a study of its own; remove `variant`, or set per_variant = false to tune "
                              "only it and use its settings for all")  # fmt: skip
    searched = replace(suite, search=search).searched_variants()
    for variant in searched:
        with named(path, text, "variant" if variant == search.variant else "variants"):
            resolve_config(suite.network(variant), **suite.model_overrides(variant))
        _check_space(space, suite, variant, path, text)
    return search


def _check_suite_keys(section: dict[str, Any], path: Path, text: str) -> None:
    """[suite] holds the name and a description; anything else is a typo or a misplaced key."""
    for key in sorted(set(section) - SUITE_KEYS):
        close = near_matches(key, SUITE_KEYS)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise suite_key_error(path, text, key, f"unknown key in [suite]; allowed: name, description.{hint}")


def load_suite(name_or_path: str | Path) -> SuiteCfg:
    """Read and validate a training suite, section by section, before any training."""
    path = suite_path(name_or_path)
    data, text = load_toml(path)
    tables = _tables(data, path, text)
    with named(path, text, "name"):  # the name of its results and reports folders
        name = safe_part(str(tables.get("suite", {}).get("name", path.stem)), "suite name")
    _check_suite_keys(tables.get("suite", {}), path, text)
    suite = SuiteCfg(name=name, path=path)
    suite = _with_data(suite, tables.get("data", {}), text)
    suite = _with_train(suite, tables, text)
    suite = _with_model(suite, tables.get("model", {}), text)
    suite = _with_variants(suite, tables.get("variants", {}), text)
    if "arms" in tables:
        suite = _with_arms(suite, tables["arms"], text)
    suite = _check_baseline(suite, text)
    if "search" in tables:
        suite = replace(suite, search=_search(suite, tables["search"], text))
    return suite
