"""Progress shown while training: one line per epoch on stderr, so stdout stays parseable."""

from __future__ import annotations

import sys
from typing import TextIO

from bench.metrics import METRICS, RANKED_METRICS
from bench.train import EpochState


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class EpochPrinter:
    """Prints epoch, step, training loss, the headline validation metrics and the time used."""

    def __init__(self, epochs: int, stream: TextIO | None = None):
        self.epochs = epochs
        self.stream = stream

    def __call__(self, state: EpochState) -> None:
        total = f"/{self.epochs}" if self.epochs < 10_000 else ""
        parts = [f"epoch {state.epoch + 1}{total}", f"step {state.step}", f"loss {state.train_loss:.4f}"]
        for key in (*RANKED_METRICS, "dsb_ap"):  # dsb_ap: the headline of instance data
            if key in state.metrics:
                parts.append(f"{METRICS[key].label} {state.metrics[key]:.4f}")
        parts.append(f"{format_duration(state.elapsed_s)} ({format_duration(state.train_s)} training)")
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)
