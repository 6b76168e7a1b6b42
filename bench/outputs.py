"""The one output root and its fixed layout, shared by every command.

A user's run writes under one folder (``--out``, default ``./unetbench-out/``), never into the
checkout's committed ``results/`` and ``reports/``: those are reference runs, regenerated on
purpose with ``unet-bench run SUITE --reference``. Under the root:

    results/SUITE/RUN/          rows of a suite run, its study.db and configs
    results/search-SUITE/       rows and study.db of ``unet-bench search``
    reports/NAME/               report.md, report.html and figures
    checkpoints/train-VARIANT/  best.pt and last.pt of ``unet-bench train``
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOT = Path("unetbench-out")


@dataclass(frozen=True)
class OutputRoot:
    """Where each command writes by default; an explicit ``-o`` still wins over this layout."""

    root: Path

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    def search(self, suite: str) -> Path:
        return self.results / f"search-{suite}"

    def checkpoints(self, variant: str) -> Path:
        return self.root / "checkpoints" / f"train-{variant}"


def add_out_argument(p: argparse.ArgumentParser) -> None:
    """``--out DIR``: the one root every command's default paths hang from."""
    p.add_argument("--out", type=Path, default=DEFAULT_ROOT, metavar="DIR",
                   help="output root: results/, reports/ and checkpoints/ under it")  # fmt: skip


def output_root(args: argparse.Namespace) -> OutputRoot:
    """The root ``--out`` names (``cli.check_output_folders`` has refused a file in its place)."""
    return OutputRoot(args.out)


def dashboard_line(run_dir: Path) -> str:
    """The command that opens a run's Optuna studies (stored in its study.db by default)."""
    return f"optuna-dashboard sqlite:///{(run_dir / 'study.db').resolve()}"
