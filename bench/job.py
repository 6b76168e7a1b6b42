"""One training job and the one function that runs it.

A ``TrainJob`` is everything that decides a trained model: the variant and its overrides, the
data and its split, the training config (seed and device included). ``run_job`` loads the data,
splits it, seeds, builds the model, calls ``bench.train.fit`` and scores the best checkpoint;
search trials, suite runs and ``unet-bench train`` all go through it, so a number from one of
them means the same as a number from another. A checkpoint stores its job, so ``eval`` rebuilds
exactly what was trained.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

import numpy as np
import torch

from bench.checkpoint import CheckpointError, check_resumable, load_checkpoint
from bench.config import TrainCfg, split_settings
from bench.data import (
    DataError,
    Dataset,
    DataSpec,
    default_val_sections,
    format_sections,
    kfold_split,
    split_by_index,
    stratified_split,
)  # fmt: skip
from bench.device import resolve_device
from bench.errors import UsageError, UserError
from bench.instances import NUM_CLASSES
from bench.metrics import InstanceName
from bench.schema import config_hash
from bench.suite import SuiteCfg
from bench.suite_file import suite_key_error
from bench.train import Callback, Evaluation, FitResult, evaluate_images, fit, with_chosen_decoding
from bench.verdict import trivial_scores, why_not_trained
from variants import resolve_config
from variants.overrides import ConfigError
from variants.registry import ModelConfig


@dataclass(frozen=True)
class TrainJob:
    """What to train, on what, and how. ``val_sections`` None: the last sixth of the images the
    test split leaves; ``test_sections`` are never seen by training or checkpoint choice."""

    variant: str
    data: DataSpec
    train: TrainCfg
    overrides: Mapping[str, Any] = field(default_factory=dict)
    val_sections: tuple[int, ...] | None = None
    test_sections: tuple[int, ...] = ()
    label: str = ""  # a suite arm's name: what results call the job instead of the variant

    @property
    def shown_as(self) -> str:
        """The job's name in result rows and reports: its arm's, else its variant's."""
        return self.label or self.variant

    def __post_init__(self) -> None:
        """Instance data sets what the data decides: the input channels, the number of classes of
        the target, an instance monitor (dsb_ap unless one is chosen), and by default the
        stratified validation and test split (``stratified_split``) and the decoding's
        ``min_size`` (half the smallest object of the training labels)."""
        instance_monitor = self.train.monitor in get_args(InstanceName)
        try:
            instance_task = self.data.instance_task
        except DataError:  # not on this machine: a checkpoint's job already holds what its data decided
            return
        if not instance_task:
            if self.train.instance_target != "binary" or instance_monitor:
                key = "monitor" if instance_monitor else "instance_target"
                raise ConfigError(f"{key} {getattr(self.train, key)!r} needs instance-labelled data; {self.data} "
                                  "has binary labels", key=key)  # fmt: skip
            return
        if not instance_monitor:
            object.__setattr__(self, "train", replace(self.train, monitor="dsb_ap"))
        resolved = {"in_channels", "num_classes"} <= self.overrides.keys() and self.train.min_size is not None
        if resolved and self.val_sections is not None:
            return  # resolved before (a checkpoint's job); run_job checks the channels against the data
        data = load_dataset(self.data)
        derived = {"in_channels": data.channels, "num_classes": NUM_CLASSES[self.train.instance_target]}
        for key, value in derived.items():
            if self.overrides.get(key, value) != value:
                raise ConfigError(f"model.{key} = {self.overrides[key]} but {self.data} with instance_target "
                                  f"{self.train.instance_target!r} needs {value}", key=key)  # fmt: skip
        object.__setattr__(self, "overrides", {**self.overrides, **derived})
        if self.val_sections is None and not self.test_sections:
            val, test = stratified_split([s.kind for s in data.samples])
            object.__setattr__(self, "val_sections", tuple(val))
            object.__setattr__(self, "test_sections", tuple(test))
        if self.train.min_size is None:
            held_out = set(self.val_sections or ()) | set(self.test_sections)
            training = [s.instances for i, s in enumerate(data.samples) if i not in held_out]
            object.__setattr__(self, "train", replace(self.train, min_size=smallest_object(training) // 2))

    def model_config(self) -> ModelConfig:
        return resolve_config(self.variant, **self.overrides)

    def key(self) -> str:
        """The ``config_hash`` of the job's rows: same model config and training settings (the
        seed aside, so that the seeds of one configuration share it), same key."""
        return config_hash(self.model_config(), self.train.identity())

    def to_meta(self, val_sections: Sequence[int]) -> dict[str, Any]:
        """Plain data stored in every checkpoint (``val_sections`` as resolved for the data)."""
        return {
            "variant": self.variant,
            "overrides": dict(self.overrides),
            "train_cfg": self.train.to_dict(),
            "data": str(self.data),
            "val_sections": list(val_sections),
            "test_sections": list(self.test_sections),
        } | ({"label": self.label} if self.label else {})

    def settings(self, val_sections: Sequence[int]) -> dict[str, Any]:
        """What ``key()`` stands for, as plain data: ``to_meta`` without the seed. A run stores
        it once per key (``configs/KEY.json``), so every row can be traced to its learning rate,
        schedule and overrides without parsing ``extra``."""
        meta = self.to_meta(val_sections)
        meta["train_cfg"].pop("seed")
        return meta

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TrainJob:
        return cls(
            variant=meta["variant"], data=DataSpec.parse(meta["data"]), train=TrainCfg.from_dict(meta["train_cfg"]),
            overrides=dict(meta["overrides"]), val_sections=tuple(meta["val_sections"]),
            test_sections=tuple(meta.get("test_sections", ())), label=str(meta.get("label", "")),
        )  # fmt: skip


@dataclass
class JobResult:
    fit: FitResult
    final: dict[str, float]  # full evaluation (warping error included) of the best model; {} if not asked
    checkpoint: Path | None
    split: str  # what ``final`` scored: "test 10-11", or the held-out validation sections "8-9"
    val_sections: list[int]
    device: torch.device  # where it trained
    untrained: str | None = None  # why the run did not train (bench.verdict), None when it did
    trivial: dict[str, dict[str, float]] = field(default_factory=dict)  # trivial predictions' scores
    # each scored image's metrics at the thresholds ``final`` chose, by section index
    per_image: dict[int, dict[str, float]] = field(default_factory=dict)


def smallest_object(labels: Sequence[np.ndarray | None]) -> int:
    """Pixels of the smallest object in instance label images (0 when there is none)."""
    counts = [np.bincount(a.ravel())[1:] for a in labels if a is not None]
    return int(min((c[c > 0].min() for c in counts if c.any()), default=0))


@functools.lru_cache(maxsize=2)
def load_dataset(spec: DataSpec) -> Dataset:
    """A data set read once per process: every trial and seed of a suite reuses it."""
    return spec.load()


def validation_sections(job: TrainJob) -> list[int]:
    """The job's validation sections, the default resolved against its data."""
    if job.val_sections is not None:
        return list(job.val_sections)
    return default_val_sections(len(load_dataset(job.data)), exclude=job.test_sections)


def check_run_folder(out_dir: Path, job: TrainJob, resume: bool) -> None:
    """Before anything is trained or printed: a folder that holds an earlier run is continued only
    by ``resume`` of the same job (a new run would replace its checkpoints, or, taking no step,
    report their scores as its own)."""
    earlier = [name for name in ("last.pt", "best.pt") if (out_dir / name).exists()]
    if earlier and not resume:
        raise UsageError(f"{out_dir} already holds a training run ({', '.join(earlier)}): add --resume to "
                         "continue it, or choose another folder with -o")  # fmt: skip
    if resume and (out_dir / "last.pt").exists():
        saved = load_checkpoint(out_dir / "last.pt").get("meta") or {}
        check_resumable(out_dir / "last.pt", saved, job.to_meta(validation_sections(job)))


def job_split(job: TrainJob) -> tuple[Dataset, Dataset, list[int]]:
    """The job's training and validation images and its validation sections. A split its data
    cannot give (sections out of range, no image left to train on) is a DataError, raised here:
    suites call this before they write anything."""
    val = validation_sections(job)
    train_data, val_data = split_by_index(load_dataset(job.data), val, exclude=job.test_sections)
    return train_data, val_data, val


def fold_sections(suite: SuiteCfg, fold: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Fold ``fold``'s validation and test sections under the suite's ``[data] folds``, from the
    number of images its data has (read once per process); too few images is an error naming
    the suite file's ``folds`` line."""
    assert suite.folds is not None
    count = len(load_dataset(suite.data))
    try:
        val, test = kfold_split(count, suite.folds, fold)
    except DataError as exc:
        text = suite.path.read_text() if suite.path.is_file() else ""
        raise suite_key_error(suite.path, text, "folds", f"[data] folds: {exc} ({suite.data})") from None
    return tuple(val), tuple(test)


def suite_job(
    suite: SuiteCfg, variant: str, settings: Mapping[str, Any], seed: int, owner: str, fold: int = 0
) -> TrainJob:
    """The job a suite runs for ``variant`` (a compared name: a variant, or an [arms] arm) with
    searched ``settings`` (``model.x`` keys go to the variant, the rest to the training config)
    and ``seed``; ``owner`` names the settings in errors. Under ``[data] folds`` the job trains
    on ``fold`` (the search always on fold 0)."""
    model, train = split_settings(dict(settings))
    val, test = fold_sections(suite, fold) if suite.folds else (suite.val_sections, suite.test_sections)
    return TrainJob(
        variant=suite.network(variant), data=suite.data,
        train=suite.train_for(variant).with_overrides({**train, "seed": seed}, owner=owner),
        overrides={**suite.model_overrides(variant), **model}, val_sections=val, test_sections=test,
        label=variant if variant in suite.arms else "",
    )  # fmt: skip


def job_settings(suite: SuiteCfg, job: TrainJob, val_sections: list[int]) -> dict[str, Any]:
    """What ``configs/KEY.json`` stores for the job. The folds of a configuration share its key, so
    under ``[data] folds`` it lists every fold's sections instead of one fold's."""
    settings = job.settings(val_sections) | ({"baseline": suite.baseline} if suite.baseline else {})
    if job.label:  # what the arm changed, for the report's model table
        settings["arm_settings"] = suite.arms[job.label].settings
    if suite.folds:
        splits = [fold_sections(suite, fold) for fold in range(suite.folds)]
        settings.update(val_sections=None, test_sections=None,
                        folds=[{"val_sections": list(val), "test_sections": list(test)} for val, test in splits])  # fmt: skip
    return settings


def run_job(
    job: TrainJob,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    callbacks: tuple[Callback, ...] = (),
    final_eval: bool = True,
) -> JobResult:
    """Train ``job`` and, with ``final_eval``, score its best model exactly as
    ``evaluate_checkpoint`` will: on the test sections when it has them, else on validation."""
    config = job.model_config()
    data = load_dataset(job.data)
    if config.in_channels != data.channels:
        raise DataError(f"{job.data} has {data.channels}-channel images but the model takes {config.in_channels}")
    train_data, val_data, val = job_split(job)
    torch.manual_seed(job.train.seed)
    model = config.build()
    meta = job.to_meta(val)
    fitted = fit(model, config, train_data, val_data, job.train, callbacks, checkpoint_dir, resume, meta=meta)
    best = checkpoint_dir / "best.pt" if checkpoint_dir else None
    test = sorted(job.test_sections)
    split = f"test {format_sections(test)}" if test else format_sections(val)
    result = JobResult(fitted, {}, best, split, val, resolve_device(job.train.device))
    if not final_eval:
        return result
    scored = data.subset(test, "test") if test else val_data
    if result.checkpoint is not None and result.checkpoint.exists():
        evaluation = score_checkpoint(result.checkpoint)
    else:  # no checkpoint folder: the best epoch's weights, kept in memory
        if result.fit.best_state is not None:
            model.load_state_dict(result.fit.best_state)
        decoding = with_chosen_decoding(job.train, result.fit.best_metrics)
        evaluation = evaluate_images(model, config, scored, decoding, result.device, warping=True)
    result.final = evaluation.scores
    result.per_image = dict(zip(test or sorted(set(val)), evaluation.per_image, strict=True))
    result.trivial = trivial_scores(scored)
    result.untrained = why_not_trained(result.final, result.trivial, result.fit.history, job.train.monitor)
    return result


def evaluate_checkpoint(
    path: Path, data_spec: str | None = None, val_sections: Sequence[int] | None = None
) -> dict[str, float]:
    """Metrics of a checkpoint: by default on the held-out sections stored with it (its test
    sections when it has them, else its validation sections); on every image of ``data_spec``
    when that is another data set."""
    return score_checkpoint(path, data_spec, val_sections).scores


def load_trained(path: Path) -> tuple[TrainJob, torch.nn.Module, torch.device]:
    """A checkpoint's job and its model with the trained weights, on the job's device (tensors
    and plain data only are read: ``load_checkpoint``)."""
    state = load_checkpoint(path)
    meta = state.get("meta")
    if not meta:
        raise CheckpointError(f"{path}: no run metadata; it was not written by `unet-bench train`")
    try:  # a damaged or edited file: its metadata, or weights of another variant or width
        job = TrainJob.from_meta(meta)
        job = replace(job, train=with_chosen_decoding(job.train, state.get("best") or {}))
        model = job.model_config().build()
        model.load_state_dict(state["model"])
    except (UserError, LookupError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: its run metadata and weights do not make a {meta_variant(meta)} model "
                              f"({type(exc).__name__}: {error_detail(exc)}); was it edited?") from None  # fmt: skip
    device = resolve_device(job.train.device)
    return job, model.to(device), device


def error_detail(exc: BaseException, limit: int = 160) -> str:
    """An error's first line, or its second where the first only announces a list (torch's
    'Error(s) in loading state_dict for UNet:'), cut to ``limit`` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    text = lines[1] if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return text if len(text) <= limit else text[: limit - 3] + "..."


def meta_variant(meta: object) -> str:
    """The variant a checkpoint's metadata names, for messages about a damaged checkpoint."""
    return repr(meta.get("variant")) if isinstance(meta, dict) else "unet-bench"


def score_checkpoint(path: Path, data_spec: str | None = None, val_sections: Sequence[int] | None = None) -> Evaluation:
    """``evaluate_checkpoint`` with each image's scores beside the stack's."""
    job, model, device = load_trained(path)
    config = job.model_config()
    other = DataSpec.parse(data_spec) if data_spec is not None else job.data
    data = load_dataset(other)
    if val_sections is None and other == job.data:
        val_sections = job.test_sections or job.val_sections
    target: Dataset = data if val_sections is None else split_by_index(data, val_sections)[1]
    return evaluate_images(model, config, target, job.train, device, warping=True)
