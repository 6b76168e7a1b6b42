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
        for key in RANKED_METRICS:
            if key in state.metrics:
                parts.append(f"{METRICS[key].label} {state.metrics[key]:.4f}")
        parts.append(f"{format_duration(state.elapsed_s)} ({format_duration(state.train_s)} training)")
        print("  ".join(parts), file=self.stream or sys.stderr, flush=True)


def terminal_size(stream: TextIO) -> tuple[int, int]:
    """The terminal's columns and rows; 80 x 24 where it reports none (a fresh pseudo-terminal
    says 0 x 0, and tqdm then hides its bar)."""
    import os

    try:
        size = os.get_terminal_size(stream.fileno())
    except (OSError, ValueError):
        return 80, 24
    return size.columns or 80, size.lines or 24


class SuiteProgress:
    """A suite's progress: on a terminal, one tqdm bar over its units of work (search trials,
    retrained runs, profiles) with elapsed time and ETA, and the stage lines printed above it;
    elsewhere (a pipe, a log file, CI) the same lines and no bar, so logs stay plain text."""

    BAR = "{desc}{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} jobs [{elapsed}, ETA {remaining}]"

    def __init__(self, total: int, stream: TextIO | None = None):
        from tqdm import tqdm

        self.stream = stream or sys.stderr
        terminal = self.stream.isatty()
        columns, rows = terminal_size(self.stream) if terminal else (None, None)
        self.bar = tqdm(total=total, file=self.stream, bar_format=self.BAR, ncols=columns, nrows=rows,
                        disable=not terminal, mininterval=0.5)  # fmt: skip

    def log(self, line: str) -> None:
        if self.bar.disable:
            print(line, file=self.stream, flush=True)
        else:
            self.bar.write(line, file=self.stream)

    def advance(self, units: int = 1) -> None:
        self.bar.update(units)

    def close(self) -> None:
        self.bar.close()
