"""``fit``: THE training loop. Search trials, suites, benchmarks and tests all call it.

One step: sample random input tiles (mirror-padded at the image borders, as overlap-tile
inference sees them), deform image, labels and weight map together on the device, crop labels
and weights to the network's output window, weighted cross-entropy, clip, step. Each epoch ends
with overlap-tile validation on the held-out images, callbacks (progress, pruning), and an
atomic checkpoint that ``resume=True`` continues from, bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from bench.augment import augment_batch
from bench.checkpoint import check_resumable, load_checkpoint, save_checkpoint
from bench.config import TrainCfg
from bench.data import Dataset, Sample
from bench.device import resolve_device
from bench.errors import UserError
from bench.infer import predict_tiled
from bench.instances import DECODE_THRESHOLDS, TargetName, decode_instances, instance_target
from bench.losses import segmentation_loss, weight_map_for_mask
from bench.metrics import CHALLENGE_THRESHOLDS, HIGHER_IS_BETTER, INSTANCE_METRICS, score_stack_images
from variants.registry import ModelConfig


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class StopTraining(Exception):
    """Raised by a callback to end training early and cleanly (e.g. a time budget)."""


@dataclass
class EpochState:
    """What callbacks see at the end of each epoch."""

    epoch: int
    step: int
    train_loss: float
    metrics: dict[str, float]
    train_s: float  # in training steps
    elapsed_s: float  # on the clock, validation included: what a --minutes budget counts
    best: dict[str, float]


class Callback(Protocol):
    def __call__(self, state: EpochState) -> None: ...


@dataclass
class FitResult:
    history: list[dict[str, Any]]  # one record per epoch: step, train loss, time, validation metrics
    best_metrics: dict[str, float]
    train_seconds: float
    stopped_early: bool = False  # by the time budget, the target or a callback, before cfg.epochs
    # without a checkpoint folder: the weights of the epoch that validated best, kept in memory
    best_state: dict[str, torch.Tensor] | None = None


class TileSampler:
    """Random training tiles of images of any size. Each tile is cut with mirrored indices (the
    same pixels as a mirror-padded image, without storing one), so a tile anywhere in the image,
    border included, has the context the network needs; images smaller than the output tile are
    mirrored to fill it. On a GPU the images, labels and weight maps live on the device when they
    take at most a quarter of its memory, so a step cuts its tiles there instead of gathering them
    on the host and copying them over (issue 20: the loop must keep up with its step)."""

    def __init__(
        self,
        data: Dataset,
        input_tile: int,
        output_tile: int,
        w0: float,
        sigma: float,
        target: TargetName = "binary",
        device: torch.device | None = None,  # None: the host
    ):
        if not len(data):
            raise ValueError("no training images")
        self.input_tile, self.output_tile = input_tile, output_tile
        self.border = (input_tile - output_tile) // 2
        self.entries = []
        for sample in data.samples:
            labels, weights = training_target(sample, data.instance_task, target, w0, sigma)
            image = sample.image if sample.image.ndim == 3 else sample.image[None]
            stack = np.concatenate([image, labels[None].astype(np.float32), weights[None]])
            self.entries.append(torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32)))
        if (
            device is not None
            and device.type == "cuda"
            and 4 * sum(e.numel() for e in self.entries) <= resident_limit(device)
        ):
            self.entries = [entry.to(device) for entry in self.entries]

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(B, C + 2, T, T): image channels, labels and weight map of ``batch`` random input tiles."""
        tiles = []
        for _ in range(batch):
            index = int(torch.randint(len(self.entries), (1,), generator=generator))
            stack = self.entries[index]
            h, w = stack.shape[-2:]
            y = int(torch.randint(max(h, self.output_tile) - self.output_tile + 1, (1,), generator=generator))
            x = int(torch.randint(max(w, self.output_tile) - self.output_tile + 1, (1,), generator=generator))
            rows = mirror_indices(y - self.border, self.input_tile, h, stack.device)
            cols = mirror_indices(x - self.border, self.input_tile, w, stack.device)
            tiles.append(stack[:, rows][:, :, cols])
        return torch.stack(tiles)


def resident_limit(device: torch.device) -> int:
    """Bytes of training data kept on a GPU: a quarter of its memory, the rest for the model."""
    return torch.cuda.get_device_properties(device).total_memory // 4


def mirror_indices(start: int, length: int, size: int, device: torch.device | None = None) -> torch.Tensor:
    """Indices ``start .. start + length - 1`` of an axis of ``size`` pixels mirrored at both
    ends (numpy's ``symmetric`` padding, repeated as often as needed)."""
    index = torch.arange(start, start + length, device=device) % (2 * size)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def training_target(
    sample: Sample, instance_task: bool, target: TargetName, w0: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Class labels and loss weights of a sample: the membrane mask with its weight map, or for
    instance data the chosen instance target (``bench.instances.instance_target``)."""
    if instance_task and sample.instances is not None:
        return instance_target(sample.instances, target, w0, sigma)
    return sample.mask, weight_map_for_mask(sample.mask, w0=w0, sigma=sigma)


def make_optimizer(model: nn.Module, cfg: TrainCfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def lr_factor(schedule: str, progress: float) -> float:
    """The learning rate's multiplier at ``progress`` (0 = start, 1 = end of the run)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "poly":
        return (1 - progress) ** 0.9
    return 1.0


def run_progress(step: int, elapsed_s: float, cfg: TrainCfg, reserved_s: float = 0.0) -> float:
    """How far through its budget a run is: steps, or the clock when it has one, whichever ends
    it first. ``reserved_s`` is the part of the clock kept back for the last validation. A timed
    run then anneals by its end on a slow machine as on a fast one, instead of stopping part-way
    down a schedule drawn for steps it never reaches."""
    progress = step / (cfg.epochs * cfg.steps_per_epoch)
    if cfg.max_minutes is not None:
        progress = max(progress, elapsed_s / max(cfg.max_minutes * 60 - reserved_s, 1e-9))
    return progress


@dataclass(frozen=True)
class Evaluation:
    scores: dict[str, float]  # the stack's scores (``score_stack``) and ``prediction_std``
    per_image: list[dict[str, float]]  # each image's scores at the stack's thresholds, in data order


def evaluate(
    model: nn.Module, config: ModelConfig, data: Dataset, cfg: TrainCfg, device: torch.device, warping: bool
) -> dict[str, float]:
    """Mean metrics over ``data`` by overlap-tile prediction (per-image best thresholds if asked),
    and ``prediction_std``: how much P(interior) varies within an image, on average (a run whose
    prediction does not vary has learnt nothing; ``bench.verdict`` says so)."""
    return evaluate_images(model, config, data, cfg, device, warping).scores


def evaluate_images(
    model: nn.Module, config: ModelConfig, data: Dataset, cfg: TrainCfg, device: torch.device, warping: bool
) -> Evaluation:
    """``evaluate``, with each image's scores at the thresholds the stack chose beside it;
    instance data is scored as instances (``evaluate_instances``)."""
    if data.instance_task:
        return evaluate_instances(model, config, data, cfg, device)
    thresholds = CHALLENGE_THRESHOLDS if cfg.val_thresholds == "best" else (0.5,)
    probs = [predict_tiled(model, s.image, config, tile=cfg.val_tile, device=device)[1] for s in data.samples]
    scores, per_image = score_stack_images(probs, [s.mask for s in data.samples], thresholds, warping)
    return Evaluation({**scores, "prediction_std": float(np.mean([p.std() for p in probs]))}, per_image)


def evaluate_instances(
    model: nn.Module, config: ModelConfig, data: Dataset, cfg: TrainCfg, device: torch.device
) -> Evaluation:
    """Each image's instances, decoded from its overlap-tile prediction (``decode_instances``,
    objects under ``cfg.min_size`` pixels dropped), scored against its labels by
    ``score_instances``; the scores are the means over images, as the DSB 2018 score is.
    Decoded at ``cfg.decode_threshold``, or when that is None at the one of DECODE_THRESHOLDS
    that scores ``cfg.monitor`` best (``threshold_dsb_ap``): validation chooses it, and
    ``with_chosen_decoding`` fixes it for the test images. ``prediction_std``: how much
    P(background) varies within an image."""
    probs = [predict_tiled(model, s.image, config, tile=cfg.val_tile, device=device) for s in data.samples]
    scores, per_image = decode_and_score(probs, data.instance_labels(), cfg)
    spread = float(np.mean([p[0].std() for p in probs]))
    return Evaluation({**scores, "prediction_std": spread}, per_image)


def decode_and_score(
    probs: list[np.ndarray], truths: list[np.ndarray], cfg: TrainCfg
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The instance scores of the images' class probabilities at ``cfg.decode_threshold``, or at
    the one of DECODE_THRESHOLDS that scores the monitor best (named by ``threshold_dsb_ap``),
    with each image's scores there."""
    from bench.instance_metrics import score_instance_stack

    key = cfg.monitor if cfg.monitor in INSTANCE_METRICS else "dsb_ap"
    best: tuple[dict[str, float], list[dict[str, float]]] | None = None
    for threshold in (cfg.decode_threshold,) if cfg.decode_threshold is not None else DECODE_THRESHOLDS:
        decoded = [decode_instances(p, threshold=threshold, min_size=cfg.min_size or 0) for p in probs]
        scores, per_image = score_instance_stack(decoded, truths)
        if best is None or scores[key] > best[0][key]:
            best = ({**scores, "threshold_dsb_ap": threshold}, per_image)
    assert best is not None
    return best


def with_chosen_decoding(cfg: TrainCfg, best: dict[str, float]) -> TrainCfg:
    """``cfg`` with the decoding threshold that validation chose at the best epoch (``best``:
    its metrics) made fixed, so that test images and ``predict`` decode as validation did. Where
    none was recorded it is 0.5: a threshold is never chosen on the images it then scores."""
    if cfg.decode_threshold is not None or cfg.monitor not in INSTANCE_METRICS:
        return cfg
    return replace(cfg, decode_threshold=best.get("threshold_dsb_ap", 0.5))


def is_better(metric: str, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new > old if metric in HIGHER_IS_BETTER else new < old


def at_target(history: list[dict[str, Any]], cfg: TrainCfg) -> dict[str, Any] | None:
    """The first epoch record whose validation reached ``cfg.target`` on the monitor metric
    (``budget = "target"``), or None: its ``step`` and ``elapsed_seconds`` are the run's steps and
    time to target (wall clock, validation included, as MLPerf counts it)."""
    if cfg.budget != "target" or cfg.target is None:
        return None
    higher = cfg.monitor in HIGHER_IS_BETTER
    for record in history:
        value = record.get(cfg.monitor)
        if value is not None and (value >= cfg.target if higher else value <= cfg.target):
            return record
    return None


@dataclass
class FitProgress:
    """Where a fit stands after its last finished epoch; ``last.pt`` stores it for ``resume=True``."""

    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, float] = field(default_factory=dict)
    next_epoch: int = 0
    step: int = 0
    train_s: float = 0.0  # in training steps
    elapsed_before_s: float = 0.0  # on the clock in the runs this one resumes
    best_state: dict[str, torch.Tensor] | None = None  # the best weights, when no best.pt keeps them


class Clock:
    """The ``max_minutes`` budget covers everything (validation too), keeping back room for one
    more validation, so a timed run ends with a validated checkpoint inside its budget."""

    def __init__(self, cfg: TrainCfg, elapsed_before_s: float) -> None:
        self.start = time.perf_counter()
        self.elapsed_before_s = elapsed_before_s
        self.budget_s = math.inf if cfg.max_minutes is None else cfg.max_minutes * 60
        self.last_val_s = 0.0

    def elapsed(self) -> float:
        return self.elapsed_before_s + time.perf_counter() - self.start

    def over_budget(self) -> bool:
        return self.elapsed() + self.last_val_s > self.budget_s


class Trainer:
    """One ``fit``'s model, optimizer, random generators, tiles and checkpoints, and its steps."""

    def __init__(
        self,
        model: nn.Module,
        config: ModelConfig,
        train_data: Dataset,
        val_data: Dataset | None,
        cfg: TrainCfg,
        checkpoint_dir: Path | None,
        meta: dict[str, Any],
    ) -> None:
        self.model, self.config, self.val_data, self.cfg = model, config, val_data, cfg
        self.checkpoint_dir, self.meta = checkpoint_dir, meta
        self.device = resolve_device(cfg.device)
        self.layout = torch.channels_last if cfg.channels_last else torch.contiguous_format
        model.to(self.device).to(memory_format=self.layout)
        self.input_tile = config.valid_input_size(cfg.tile)
        output_tile = config.output_size(self.input_tile)
        self.sampler = TileSampler(
            train_data, self.input_tile, output_tile, cfg.w0, cfg.sigma, cfg.instance_target, self.device
        )
        self.optimizer = make_optimizer(model, cfg)
        torch.manual_seed(cfg.seed)  # dropout draws from the global generator
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.aug_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.crop = (self.input_tile - output_tile) // 2
        self.use_amp = cfg.amp and self.device.type == "cuda"
        # the fast path's compiled forward shares the model's parameters; validation runs eager
        self.forward = cast(nn.Module, torch.compile(model, mode=cfg.compile)) if cfg.compile else model

    def resume(self, path: Path) -> FitProgress:
        """Restore model, optimizer and every random generator from ``last.pt``: the run goes on
        exactly as if it had never stopped."""
        state = load_checkpoint(path)
        check_resumable(path, state.get("meta") or {}, self.meta)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["global_rng"])
        self.aug_generator.set_state(state["aug_generator"].to(self.aug_generator.get_state().device))
        return FitProgress(
            state["history"], state["best"], state["epoch"] + 1, state["step"], state["train_seconds"],
            state["elapsed_seconds"],
        )  # fmt: skip

    def step(self, step: int, clock: Clock) -> torch.Tensor:
        """One optimizer step on a fresh batch of augmented tiles; returns its loss, still on the
        device: reading it here would make the host wait for the GPU every step."""
        cfg, crop, end = self.cfg, self.crop, self.input_tile - self.crop
        tiles = self.sampler.sample(cfg.batch_size, self.generator).to(self.device)
        images, labels, weights = augment_batch(
            tiles[:, :-2], tiles[:, -2], tiles[:, -1], cfg.augment, self.aug_generator
        )
        assert weights is not None  # weights in, weights out
        labels, weights = labels[:, crop:end, crop:end].round().long(), weights[:, crop:end, crop:end]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_amp):
            logits = self.forward(images.contiguous(memory_format=self.layout))
        loss = segmentation_loss(cfg.loss, logits.float(), labels, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        factor = lr_factor(cfg.schedule, run_progress(step, clock.elapsed(), cfg, clock.last_val_s))
        for group in self.optimizer.param_groups:
            group["lr"] = cfg.lr * factor
        self.optimizer.step()
        return loss.detach()

    def train_epoch(self, epoch: int, progress: FitProgress, clock: Clock) -> tuple[list[float], bool]:
        """The epoch's steps and their losses; True when the budget ended it early. The losses
        are read once, at the end (the only wait for the GPU in an epoch), and the first one
        that is not finite stops the run before anything of this epoch is saved."""
        self.model.train()
        epoch_start = time.perf_counter()
        first_step = progress.step
        losses: list[torch.Tensor] = []
        over_budget = False
        for _ in range(self.cfg.steps_per_epoch):
            if clock.over_budget():
                over_budget = True
                break
            losses.append(self.step(progress.step, clock))
            progress.step += 1
        values = torch.stack(losses).tolist() if losses else []
        progress.train_s += time.perf_counter() - epoch_start
        self.check_finite(values, first_step, epoch)
        return values, over_budget

    def check_finite(self, losses: list[float], first_step: int, epoch: int) -> None:
        """Raise at the first loss that is not finite, naming its step and the last good checkpoint."""
        bad = next((i for i, value in enumerate(losses) if not math.isfinite(value)), None)
        if bad is None:
            return
        kept = f"; the last good checkpoint is {self.checkpoint_dir / 'last.pt'}" if self.checkpoint_dir else ""
        raise NonFiniteLossError(
            f"loss became {losses[bad]} at step {first_step + bad} (epoch {epoch}); lower the learning rate "
            f"(lr={self.cfg.lr}) or enable grad_clip{kept}"
        )

    def end_epoch(self, epoch: int, losses: list[float], progress: FitProgress, clock: Clock) -> EpochState:
        """Validate, keep the best model in ``best.pt``, and save ``last.pt`` for a resume."""
        model, cfg, val_data = self.model, self.cfg, self.val_data
        val_start = time.perf_counter()
        metrics = evaluate(model, self.config, val_data, cfg, self.device, cfg.val_warping) if val_data else {}
        clock.last_val_s = time.perf_counter() - val_start
        if metrics and is_better(cfg.monitor, metrics[cfg.monitor], progress.best.get(cfg.monitor)):
            progress.best = dict(metrics)
            if self.checkpoint_dir is not None:
                best = {"model": model.state_dict(), "meta": self.meta, "epoch": epoch, "best": progress.best}
                save_checkpoint(self.checkpoint_dir / "best.pt", best)
            else:
                progress.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        train_loss = float(np.mean(losses))
        record = {"epoch": epoch, "step": progress.step, "train_loss": train_loss, "train_seconds": progress.train_s,
                  "elapsed_seconds": clock.elapsed()}  # fmt: skip
        progress.history.append({**record, **metrics})
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir / "last.pt", self.last_state(epoch, progress, clock))
        return EpochState(epoch, progress.step, train_loss, metrics, progress.train_s, clock.elapsed(), progress.best)

    def last_state(self, epoch: int, progress: FitProgress, clock: Clock) -> dict[str, Any]:
        """What ``resume`` needs: the model and the optimizer, every generator's state, and the progress."""
        return {
            "model": self.model.state_dict(),
            "meta": self.meta,
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "global_rng": torch.get_rng_state(),
            "aug_generator": self.aug_generator.get_state(),
            "history": progress.history,
            "best": progress.best,
            "epoch": epoch,
            "step": progress.step,
            "train_seconds": progress.train_s,
            "elapsed_seconds": clock.elapsed(),
        }


def fit(
    model: nn.Module,
    config: ModelConfig,
    train_data: Dataset,
    val_data: Dataset | None,
    cfg: TrainCfg,
    callbacks: tuple[Callback, ...] = (),
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
) -> FitResult:
    """Train ``model`` (built from ``config``) and validate it after every epoch.

    ``meta`` (plain data: variant, data source, ...) is stored in every checkpoint so that a
    checkpoint alone says how to rebuild and evaluate its model.
    """
    trainer = Trainer(model, config, train_data, val_data, cfg, checkpoint_dir, meta or {})
    progress = FitProgress()
    if resume and checkpoint_dir is not None and (checkpoint_dir / "last.pt").exists():
        progress = trainer.resume(checkpoint_dir / "last.pt")
    clock = Clock(cfg, progress.elapsed_before_s)
    stopped_early = False
    for epoch in range(progress.next_epoch, cfg.epochs):
        if at_target(progress.history, cfg) is not None:  # a time-to-target run ends at its target
            stopped_early = True
            break
        losses, stopped_early = trainer.train_epoch(epoch, progress, clock)
        if not losses and stopped_early:
            break
        state = trainer.end_epoch(epoch, losses, progress, clock)
        try:
            for callback in callbacks:
                callback(state)
        except StopTraining:
            stopped_early = True
        if stopped_early:
            break
    return FitResult(progress.history, progress.best, progress.train_s, stopped_early, progress.best_state)
