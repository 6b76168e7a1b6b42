"""Append result rows atomically; read a whole results tree back as one DataFrame.

Every ``append`` writes one new CSV part file in the run folder under a temporary name and
renames it into place. A rename is atomic, so a reader sees a part whole or not at all; a run
killed mid-write, or a full disk, leaves no half row. Part names carry the host, the process
and a random token, so any number of writers (worker processes, machines on a shared disk)
append to one run without locks. The reader checks the schema version and the columns of
every part and names the file when something is wrong.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from bench.atomic import atomic_write_bytes
from bench.data import DataSpec
from bench.errors import UserError, first_line
from bench.paths import safe_part
from bench.schema import (
    COLUMNS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    MAX_MAGNITUDE,
    SCHEMA_VERSION,
    ResultRow,
    profile_setting,
    row_values,
)

PART_GLOB = "rows-*.csv"
SUMMARY_NAME = "summary.csv"  # a run folder's Summary (bench.run), derived from its parts: not one


class ResultsError(UserError):
    """A results file that cannot be read as result rows; the message names the file."""


class ResultWriter:
    """Appends rows to ``run_dir``; one writer per process (cheap to create)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.writer_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.sequence = 0

    def append(self, rows: Iterable[ResultRow], name: str | None = None) -> Path | None:
        """Write ``rows`` as one new part file; returns its path (None when there were no rows).

        With ``name`` the part is ``rows-<name>.csv``: writing it again replaces it instead of
        adding rows, so a stage that reruns after a crash cannot duplicate its results, and
        the file's existence says the stage finished.
        """
        if name is not None:
            safe_part(name, "results part name")  # names carry variants: never a path out of the run folder
        rows = list(rows)
        if not rows:
            return None
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(row_values(r) for r in rows)
        data = buffer.getvalue().encode()
        self.sequence += 1
        final = self.run_dir / (f"rows-{name}.csv" if name else f"rows-{self.writer_id}-{self.sequence:06d}.csv")
        return atomic_write_bytes(final, data)

    def save_config(self, key: str, settings: dict[str, object]) -> Path:
        """``configs/<key>.json``: the full settings behind a ``config_hash``, written once per run
        (a rewrite by another worker holds the same settings)."""
        path = self.run_dir / "configs" / f"{key}.json"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            atomic_write_bytes(path, json.dumps(settings, indent=1, sort_keys=True, default=str).encode())
        return path


def read_configs(root: Path) -> dict[str, dict[str, object]]:
    """Every stored job config under ``root``, by ``config_hash``. Where a search trial and a
    retrained run share a key, the run's (the shallower folder's) is kept: it is what was scored."""
    paths = sorted(Path(root).rglob("configs/*.json"), key=lambda p: (-len(p.parts), str(p)))
    return {p.stem: _read_config(p) for p in paths}


def _read_config(path: Path) -> dict[str, object]:
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ResultsError(f"{path}: not a readable job config ({first_line(exc)})") from None
    if not isinstance(settings, dict):
        raise ResultsError(f"{path}: not a job config (a JSON object of settings)")
    return settings


# Text columns stay text: a CUDA version "13.0" would otherwise read as 13, and a git sha of
# digits with one "e" as a float.
TEXT_DTYPES = {c: str for c in COLUMNS if c not in INT_COLUMNS and c not in FLOAT_COLUMNS}


COLUMNS_V1 = tuple(c for c in COLUMNS if c not in ("mode", "setting"))
READABLE = {1: COLUMNS_V1, SCHEMA_VERSION: COLUMNS}  # schema version -> its columns


def _read_part(path: Path) -> pd.DataFrame:
    try:
        with open(path, newline="") as handle:
            header = next(csv.reader(handle), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read ({exc})") from None
    if header is None:
        raise ResultsError(f"{path}: empty file, not a results part")
    if "schema_version" not in header:
        raise ResultsError(f"{path}: not a unet-bench results file (no schema_version column)")
    try:
        frame = pd.read_csv(
            path, dtype=TEXT_DTYPES, keep_default_na=False, na_values={c: ["", "nan"] for c in FLOAT_COLUMNS}
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise ResultsError(f"{path}: malformed or truncated ({first_line(exc)})") from None
    versions = set(pd.to_numeric(frame["schema_version"], errors="coerce").dropna().astype(int))
    if not len(frame):  # a header alone: its columns say the version
        versions = {next((v for v, columns in READABLE.items() if list(columns) == header), SCHEMA_VERSION)}
    if len(versions) != 1 or not versions <= READABLE.keys():
        found = ", ".join(str(v) for v in sorted(versions)) or "unreadable"
        raise ResultsError(f"{path}: schema version {found}, but this unet-bench reads version {SCHEMA_VERSION}")
    (version,) = versions
    expected = READABLE[version]
    missing = [c for c in expected if c not in frame.columns]
    unknown = [c for c in frame.columns if c not in expected]
    if missing or unknown:
        raise ResultsError(f"{path}: columns differ from schema v{version}: missing {missing}, unknown {unknown}")
    if list(frame.columns) != list(expected):
        raise ResultsError(f"{path}: columns are out of order for schema v{version}")
    required = [c for c in INT_COLUMNS if c in expected] + ["value"]
    numeric = frame[required].apply(pd.to_numeric, errors="coerce")
    integers = numeric.drop(columns="value")  # a seed of 1.5 or 1e30 is damage, not a number to truncate or wrap
    whole = ((integers % 1 == 0) & (integers.abs() < 2**63)).all(axis=1)
    bounds = frame[["ci_low", "ci_high"]].apply(pd.to_numeric, errors="coerce").astype(float)  # NaN: no interval
    unreadable = (bounds.isna() & frame[["ci_low", "ci_high"]].notna()).any(axis=1)  # 'abc', not '' or 'nan'
    magnitudes = pd.concat([numeric["value"].astype(float), bounds], axis=1).abs()  # inf is past the bound too
    finite = (magnitudes.fillna(0) <= MAX_MAGNITUDE).all(axis=1)
    damaged = numeric.isna().any(axis=1) | ~whole | ~finite | unreadable | frame["extra"].isna()
    if damaged.any():
        line = int(damaged.idxmax()) + 2  # header is line 1
        raise ResultsError(
            f"{path}: truncated or damaged row at line {line} (a required value is missing, not a number, infinite or past 1e100, an interval bound not a number, or not a whole number where one is needed)"
        )
    return upgrade_v1(frame, path) if version == 1 else frame


def upgrade_v1(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Rows of schema 1 as schema 2: the profile mode folded into metric names
    (``infer_throughput``, ``micro_model_step_forward``) becomes the ``mode`` column, the
    execution setting in ``extra`` the ``setting`` column, and a search row's run id, which was
    the name of its run's ``search`` folder, the run's own id."""
    frame = frame.copy()
    frame["mode"], frame["setting"] = "", ""
    folded = (frame["stage"] == "profile") & frame["metric"].str.match(r"^(infer|train)_")
    frame.loc[folded, "mode"] = frame.loc[folded, "metric"].str.split("_", n=1).str[0]
    frame.loc[folded, "metric"] = frame.loc[folded, "metric"].str.split("_", n=1).str[1]
    settings = frame.loc[folded, "extra"].map(json.loads)
    frame.loc[folded, "setting"] = [profile_setting(bool(e.get("channels_last")), e.get("compile")) for e in settings]
    for suffix, mode in (("_forward_backward", "train"), ("_forward", "infer")):
        step = frame["metric"].str.startswith("micro_") & frame["metric"].str.endswith(suffix)
        frame.loc[step, "mode"] = mode
        frame.loc[step, "metric"] = frame.loc[step, "metric"].str.removesuffix(suffix)
    if path.parent.name == "search":
        frame.loc[frame["run_id"] == "search", "run_id"] = path.parent.parent.name
    frame["dataset"] = frame["dataset"].map(_v1_dataset)
    frame["schema_version"] = SCHEMA_VERSION
    return frame[list(COLUMNS)]


def _v1_dataset(text: str) -> str:
    """Schema 1 spelt the synthetic set two ways (``synthetic(count=12, size=128, seed=0)`` and
    ``synthetic:count=12,seed=0,size=128``); schema 2 has one (``DataSpec``'s)."""
    if match := re.fullmatch(r"synthetic\((.*)\)", text):
        text = "synthetic:" + match.group(1).replace(" ", "")
    return str(DataSpec.parse(text)) if text.partition(":")[0] == "synthetic" else text


def read_results(root: Path) -> pd.DataFrame:
    """Every result row under ``root`` (a run folder or a tree of them), in schema column order.

    Only ``rows-*.csv`` files are result parts; any other ``*.csv`` but a run's ``summary.csv``
    is reported, never skipped silently. Temporary files of writes in progress are ignored.
    """
    root = Path(root)
    if not root.exists():
        raise ResultsError(f"{root}: no such results folder")
    links = sorted(p for p in root.rglob("*") if p.is_symlink() and p.is_dir())
    if links:  # rglob does not follow them, so their rows would drop out of the report unsaid
        raise ResultsError(
            f"{links[0]}: a link to a folder in the results tree, which is read without following links; report its target itself"
        )
    parts = sorted(root.rglob(PART_GLOB))
    strays = sorted(p for p in root.rglob("*.csv") if p not in set(parts) and p.name != SUMMARY_NAME)
    if strays:
        raise ResultsError(f"{strays[0]}: a CSV file in the results tree that is not a results part (rows-*.csv)")
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
    frame = pd.concat([_read_part(p) for p in parts], ignore_index=True)
    for column in INT_COLUMNS:
        frame[column] = frame[column].astype(int)
    for column in FLOAT_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame[list(COLUMNS)]


def stage_done(run_dir: Path, name: str) -> bool:
    """Whether the named part of a stage (see ``ResultWriter.append(name=...)``) exists."""
    return (Path(run_dir) / f"rows-{name}.csv").exists()
