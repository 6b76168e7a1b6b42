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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from bench.augment import augment_batch
from bench.checkpoint import load_checkpoint, save_checkpoint
from bench.config import TrainCfg
from bench.data import Dataset
from bench.errors import UserError
from bench.infer import mirror_pad, predict_foreground
from bench.losses import segmentation_loss, weight_map_for_mask
from bench.metrics import CHALLENGE_THRESHOLDS, HIGHER_IS_BETTER, score_stack
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
    history: list[dict[str, Any]]
    best_metrics: dict[str, float]
    final_metrics: dict[str, float]
    steps: int
    train_seconds: float
    checkpoint_dir: Path | None
    stopped_early: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class TileSampler:
    """Random training tiles. Images, masks and weight maps are mirror-padded once, so a tile
    anywhere in the image, border included, has the context the network needs."""

    def __init__(self, data: Dataset, input_tile: int, output_tile: int, w0: float, sigma: float):
        if not len(data):
            raise ValueError("no training images")
        self.input_tile, self.output_tile = input_tile, output_tile
        border = (input_tile - output_tile) // 2
        self.entries = []
        for sample in data.samples:
            h, w = sample.mask.shape
            extra_y, extra_x = max(0, output_tile - h), max(0, output_tile - w)
            weights = weight_map_for_mask(sample.mask, w0=w0, sigma=sigma)
            stack = np.stack([sample.image, sample.mask.astype(np.float32), weights])
            padded = mirror_pad(stack, border, border + extra_y, border + extra_x)
            self.entries.append((torch.from_numpy(np.ascontiguousarray(padded)), h + extra_y, w + extra_x))

    def sample(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """(B, 3, T, T): image, mask and weight map of ``batch`` random input tiles."""
        tiles = []
        for _ in range(batch):
            index = int(torch.randint(len(self.entries), (1,), generator=generator))
            padded, h, w = self.entries[index]
            y = int(torch.randint(h - self.output_tile + 1, (1,), generator=generator))
            x = int(torch.randint(w - self.output_tile + 1, (1,), generator=generator))
            tiles.append(padded[:, y : y + self.input_tile, x : x + self.input_tile])
        return torch.stack(tiles)


def make_optimizer(model: nn.Module, cfg: TrainCfg) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(
        model.parameters(), lr=cfg.lr, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay
    )


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


def evaluate(
    model: nn.Module, config: ModelConfig, data: Dataset, cfg: TrainCfg, device: torch.device, warping: bool
) -> dict[str, float]:
    """Mean metrics over ``data`` by overlap-tile prediction (per-image best thresholds if asked)."""
    thresholds = CHALLENGE_THRESHOLDS if cfg.val_thresholds == "best" else (0.5,)
    probs = [predict_foreground(model, s.image, config, tile=cfg.val_tile, device=device) for s in data.samples]
    return score_stack(probs, [s.mask for s in data.samples], thresholds, warping)


def is_better(metric: str, new: float, old: float | None) -> bool:
    if old is None:
        return True
    return new > old if metric in HIGHER_IS_BETTER else new < old


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
    meta = meta or {}
    device = resolve_device(cfg.device)
    model.to(device)
    input_tile = config.valid_input_size(cfg.tile)
    output_tile = config.output_size(input_tile)
    sampler = TileSampler(train_data, input_tile, output_tile, cfg.w0, cfg.sigma)
    optimizer = make_optimizer(model, cfg)
    torch.manual_seed(cfg.seed)  # dropout draws from the global generator
    generator = torch.Generator().manual_seed(cfg.seed)
    aug_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    crop = (input_tile - output_tile) // 2
    use_amp = cfg.amp and device.type == "cuda"

    history: list[dict[str, Any]] = []
    best: dict[str, float] = {}
    start_epoch, step, trained_s, elapsed_before = 0, 0, 0.0, 0.0
    if resume and checkpoint_dir is not None and (checkpoint_dir / "last.pt").exists():
        state = load_checkpoint(checkpoint_dir / "last.pt")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["global_rng"])
        aug_generator.set_state(state["aug_generator"].to(aug_generator.get_state().device))
        history, best = state["history"], state["best"]
        start_epoch, step, trained_s = state["epoch"] + 1, state["step"], state["train_seconds"]
        elapsed_before = state["elapsed_seconds"]

    # The budget covers everything (validation too), keeping back room for one more validation.
    fit_start = time.perf_counter()
    budget_s = math.inf if cfg.max_minutes is None else cfg.max_minutes * 60
    last_val_s = 0.0

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - fit_start

    def over_budget() -> bool:
        return elapsed() + last_val_s > budget_s

    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        epoch_start = time.perf_counter()
        losses: list[float] = []
        for _ in range(cfg.steps_per_epoch):
            if over_budget():
                stopped_early = True
                break
            tiles = sampler.sample(cfg.batch_size, generator).to(device)
            images, labels, weights = augment_batch(tiles[:, :1], tiles[:, 1], tiles[:, 2], cfg.augment, aug_generator)
            end = input_tile - crop
            labels, weights = labels[:, crop:end, crop:end].round().long(), weights[:, crop:end, crop:end]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                logits = model(images)
            loss = segmentation_loss(cfg.loss, logits.float(), labels, weights)
            if not torch.isfinite(loss):
                kept = f"; the last good checkpoint is {checkpoint_dir / 'last.pt'}" if checkpoint_dir else ""
                raise NonFiniteLossError(
                    f"loss became {loss.item()} at step {step} (epoch {epoch}); lower the learning rate "
                    f"(lr={cfg.lr}) or enable grad_clip{kept}"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            factor = lr_factor(cfg.schedule, run_progress(step, elapsed(), cfg, last_val_s))
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * factor
            optimizer.step()
            losses.append(loss.item())
            step += 1
        trained_s += time.perf_counter() - epoch_start
        if not losses and stopped_early:
            break

        val_start = time.perf_counter()
        metrics = evaluate(model, config, val_data, cfg, device, cfg.val_warping) if val_data else {}
        last_val_s = time.perf_counter() - val_start
        if metrics and is_better(cfg.monitor, metrics[cfg.monitor], best.get(cfg.monitor)):
            best = dict(metrics)
            if checkpoint_dir is not None:
                save_checkpoint(checkpoint_dir / "best.pt", {"model": model.state_dict(), "meta": meta, "epoch": epoch})
        record = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)), "train_seconds": trained_s, **metrics}
        history.append(record)
        if checkpoint_dir is not None:
            save_checkpoint(
                checkpoint_dir / "last.pt",
                {
                    "model": model.state_dict(),
                    "meta": meta,
                    "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state(),
                    "global_rng": torch.get_rng_state(),
                    "aug_generator": aug_generator.get_state(),
                    "history": history,
                    "best": best,
                    "epoch": epoch,
                    "step": step,
                    "train_seconds": trained_s,
                    "elapsed_seconds": elapsed(),
                },
            )
        state = EpochState(epoch, step, record["train_loss"], metrics, trained_s, elapsed(), best)
        try:
            for callback in callbacks:
                callback(state)
        except StopTraining:
            stopped_early = True
        if stopped_early:
            break

    final = history[-1] if history else {}
    final_metrics = {k: v for k, v in final.items() if k not in ("epoch", "step", "train_loss", "train_seconds")}
    return FitResult(history, best, final_metrics, step, trained_s, checkpoint_dir, stopped_early)

