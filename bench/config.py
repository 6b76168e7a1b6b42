"""Frozen, typed configs of the harness. Values are checked when set, with the same override
machinery as model configs: an unknown key or a wrong type names the key and what is allowed."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.augment import AugmentCfg
from bench.instances import TargetName
from bench.losses import PAPER_SIGMA, PAPER_W0, LossName
from bench.metrics import InstanceName, ScoreName
from bench.schema import CompileMode, only_when_set
from variants.overrides import ConfigError, apply_overrides

# validation skips the slow warping error unless asked, so it cannot pick checkpoints or trials
WARPING_UNSCORED = "{name} 'warping_error' is scored each epoch only with val_warping = true"


# the largest tile or input side any command takes: 16384 px is 1 GiB per fp32 channel already;
# beyond it sizes overflowed index arithmetic and tensor sizes with a traceback instead of a line
MAX_SIDE = 16384

# TrainCfg's numbers: the test each must pass and what it allows. None (where a field allows it)
# is not tested; NaN and infinities never pass. A negative grad_clip would turn each step into ascent.
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "lr": (lambda v: v > 0, "a positive number"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, "0 or more"),
    "epochs": (lambda v: v > 0, "positive"),
    "steps_per_epoch": (lambda v: v > 0, "positive"),
    "max_minutes": (lambda v: v > 0, "a positive number of minutes"),
    "target": (lambda v: True, "a finite number"),
    "batch_size": (lambda v: v > 0, "positive"),
    "tile": (lambda v: 0 < v <= MAX_SIDE, f"positive and at most {MAX_SIDE} pixels"),
    "val_tile": (lambda v: 0 < v <= MAX_SIDE, f"positive and at most {MAX_SIDE} pixels"),
    "w0": (lambda v: v >= 0, "0 or more (0 = class weights only)"),
    "sigma": (lambda v: v > 0, "a positive number of pixels"),
    "min_size": (lambda v: v >= 0, "0 or more pixels"),
    "decode_threshold": (lambda v: 0 < v < 1, "between 0 and 1"),
    "grad_clip": (lambda v: v >= 0, "0 or more (a gradient norm; 0 or none turns clipping off)"),
}


@dataclass(frozen=True)
class TrainCfg:
    """How ``bench.train.fit`` trains. The defaults follow the paper where it says something
    (SGD, momentum 0.99, one large tile per batch, weighted cross-entropy, elastic deformation)."""

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.01
    momentum: float = 0.99  # SGD momentum; AdamW's beta1
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "poly"] = "constant"
    epochs: int = 10
    steps_per_epoch: int = 50
    max_minutes: float | None = None  # wall-clock budget for training steps; validation still runs
    # the budget runs are compared under (docs/training.md): equal steps (epochs x steps_per_epoch),
    # equal wall-clock seconds (max_minutes), or time to reach `target` on the monitor metric
    budget: Literal["steps", "seconds", "target"] = "steps"
    target: float | None = None  # with budget = "target": the monitor value that ends the run
    batch_size: int = 1
    tile: int = 572  # input tile side; the nearest side the network accepts is used
    loss: LossName = "weighted_ce"
    w0: float = PAPER_W0  # border weight of the paper's weight map; 0 = class weights only
    sigma: float = PAPER_SIGMA
    instance_target: TargetName = "binary"  # instance data only: foreground + border weights, or three classes
    # instance data only: decoded objects under this many pixels are dropped (specks are false
    # positives at every IoU); None = half the smallest object of the training labels (TrainJob)
    min_size: int | None = None
    # instance data only: P(foreground) at or above it is an object. None = the one of
    # DECODE_THRESHOLDS that scores the monitor best on validation, kept by the checkpoint and
    # used as it is on test images and by predict (never chosen on test labels)
    decode_threshold: float | None = None
    augment: AugmentCfg = field(default_factory=AugmentCfg)
    grad_clip: float | None = 10.0
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    seed: int = 0
    val_tile: int = 572
    val_thresholds: Literal["fixed", "best"] = "best"  # 0.5, or the best of 0.1 ... 0.9
    val_warping: bool = False  # warping error each epoch is slow; always computed by eval
    # the validation metric that picks the best checkpoint; instance data replaces an ISBI metric by dsb_ap
    monitor: Literal[ScoreName, InstanceName] = "v_rand"
    device: str = "auto"
    # the fast path (issue 20): how the steps execute, not what they compute; a resume may change
    # them, and a job's key leaves them out while they are off (keys from before them still match)
    channels_last: bool = False
    compile: CompileMode | None = None  # torch.compile mode of the training forward (validation runs eager)

    def __post_init__(self) -> None:
        for name, (allowed, what) in RANGES.items():
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and allowed(value)):
                raise ConfigError(f"{name} must be {what}, got {value}", key=name)
        if self.monitor == "warping_error" and not self.val_warping:
            raise ConfigError(WARPING_UNSCORED.format(name="monitor"), key="monitor")
        self._check_budget()

    def _check_budget(self) -> None:
        """Each named budget has the one setting it needs, and ``target`` means nothing without its budget."""
        if self.budget == "seconds" and self.max_minutes is None:
            raise ConfigError(
                'budget = "seconds" needs max_minutes, the wall-clock minutes of each run', key="max_minutes"
            )
        if self.budget == "target" and self.target is None:
            raise ConfigError(f'budget = "target" needs target, the {self.monitor} value that ends a run', key="target")
        if self.budget != "target" and self.target is not None:
            raise ConfigError(f'target is used only with budget = "target" (budget is "{self.budget}")', key="target")

    def with_overrides(self, overrides: dict[str, Any], owner: str = "train") -> TrainCfg:
        """A copy with type-checked overrides; ``augment`` may be given as a dict of its fields."""
        overrides = dict(overrides)
        if isinstance(overrides.get("augment"), dict):
            overrides["augment"] = apply_overrides(self.augment, overrides["augment"], owner=f"{owner}.augment")
        return apply_overrides(self, overrides, owner=owner)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """What a job's key hashes: every field but the seed, and the execution settings only when on."""
        return only_when_set(dataclasses.asdict(dataclasses.replace(self, seed=0)), EXECUTION_SETTINGS)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainCfg:
        return cls().with_overrides(values)


EXECUTION_SETTINGS = ("channels_last", "compile")  # TrainCfg fields that change speed, not results


def split_settings(settings: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``model.x`` keys go to the variant, everything else (``train.`` optional) to ``TrainCfg``:
    the one naming rule of --set, search spaces and best-trial parameters."""
    model = {k.removeprefix("model."): v for k, v in settings.items() if k.startswith("model.")}
    train = {k.removeprefix("train."): v for k, v in settings.items() if not k.startswith("model.")}
    return model, train


# Named starting points for ``unet-bench train --recipe``; --set changes single fields on top.
RECIPES: dict[str, TrainCfg] = {
    # Ronneberger et al. 2015: SGD with momentum 0.99, one 572x572 tile per step, weighted CE.
    "paper": TrainCfg(),
    # The same data pipeline and loss with AdamW: converges in the few hundred steps a CPU
    # affords in minutes (docs/training.md compares the two).
    "adamw": TrainCfg(optimizer="adamw", lr=1e-3, momentum=0.9),
    # AdamW for instance data (DSB 2018 nuclei): most images are 256-360 px, so four 380 px
    # tiles per step instead of one 572 px tile of mostly mirrored context, a higher rate
    # annealed by the end of the run (docs/training.md has the runs behind these values)
    "instances": TrainCfg(
        optimizer="adamw", lr=3e-3, momentum=0.9, schedule="cosine", batch_size=4, tile=380, steps_per_epoch=120
    ),
}


def default_recipe(instance_data: bool) -> str:
    """The recipe ``unet-bench train`` starts from when none is named: by the kind of labels."""
    return "instances" if instance_data else "adamw"
