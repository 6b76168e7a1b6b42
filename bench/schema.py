"""The one result schema: a tidy, long row per measured value.

Identity columns come first, always present and always in this order, so that every plot can
group by a column instead of a file name. ``results/README.md`` documents each column; a test
keeps that file and this one in step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

SCHEMA_VERSION = 2
MAX_MAGNITUDE = 1e100  # past any measurement; 1.7e308 overflowed the report's sums into a traceback

Stage = Literal["search", "search-pareto", "train", "eval", "eval-image", "curve", "profile"]
Mode = Literal["train", "infer", ""]

# The memory a measured model needed, most telling first: CUDA's allocated peak; on a CPU the
# rise of resident memory during the measurement (the process's earlier footprint says nothing
# about the model); the whole resident peak only for rows written before the rise was recorded.
MODEL_MEMORY_METRICS = ("peak_memory_allocated", "peak_memory_rss_increase", "peak_memory_rss")


@dataclass(frozen=True)
class ResultRow:
    """One measured value with everything needed to compare it with any other."""

    run_id: str
    suite: str
    variant: str
    config_hash: str
    seed: int
    stage: Stage
    metric: str
    value: float
    unit: str = ""
    trial: int = -1  # Optuna trial number; -1 outside a search
    dataset: str = ""
    split: str = ""  # train / val / test, or the held-out sections
    device: str = "cpu"  # cpu / cuda
    device_name: str = ""
    precision: str = "fp32"
    batch_size: int = 0  # 0 when not applicable
    input_size: int = 0
    output_size: int = 0
    mode: Mode = ""  # what a profile row timed: a training step or inference; empty for scores
    setting: str = ""  # how it ran beyond precision and batch: eager, channels_last, compile=MODE
    timestamp: str = ""
    git_sha: str = ""
    torch_version: str = ""
    cuda_version: str = ""
    host: str = ""
    ci_low: float = math.nan  # 95 % confidence interval of the value, when measured
    ci_high: float = math.nan
    n: int = 1  # how many samples the value summarises
    extra: str = "{}"  # JSON object: settings and anything else, never grouped by in reports
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        # the reader refuses such a part as damaged, so a writer must never produce one
        bounds = [abs(v) for v in (self.ci_low, self.ci_high) if not math.isnan(v)]
        if not math.isfinite(self.value) or max([abs(self.value), *bounds]) > MAX_MAGNITUDE:
            raise ValueError(f"{self.metric} = {self.value} [{self.ci_low}, {self.ci_high}]: not a finite number")
        if not self.timestamp:
            object.__setattr__(self, "timestamp", datetime.now(UTC).isoformat(timespec="seconds"))


IDENTITY_COLUMNS = (
    "schema_version", "run_id", "suite", "variant", "config_hash", "seed", "stage", "trial", "dataset",
    "split", "device", "device_name", "precision", "batch_size", "input_size", "output_size", "mode",
    "setting", "metric",
    "value", "unit", "timestamp", "git_sha", "torch_version", "cuda_version", "host",
)  # fmt: skip
COLUMNS = IDENTITY_COLUMNS + ("ci_low", "ci_high", "n", "extra")

assert set(COLUMNS) == {f.name for f in dataclasses.fields(ResultRow)}, "COLUMNS and ResultRow disagree"

# the columns that name the machine and software a row was measured on (bench.environment
# fills them; the rest of the fingerprint travels in extra["env"])
ENVIRONMENT_COLUMNS = ("device", "device_name", "torch_version", "cuda_version", "git_sha", "host")
assert set(ENVIRONMENT_COLUMNS) <= set(IDENTITY_COLUMNS)

INT_COLUMNS = ("schema_version", "seed", "trial", "batch_size", "input_size", "output_size", "n")
FLOAT_COLUMNS = ("value", "ci_low", "ci_high")


def row_values(row: ResultRow) -> list[Any]:
    """The row's values in column order."""
    return [getattr(row, c) for c in COLUMNS]


def config_hash(*parts: Any) -> str:
    """A short stable hash of configs (dataclasses or plain data): same settings, same hash."""

    def plain(obj: Any) -> Any:
        return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else obj

    text = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def only_when_set(values: dict[str, Any], later: Sequence[str]) -> dict[str, Any]:
    """``values`` for a key's hash, without the fields of ``later`` that are off (False, None):
    settings added after keys were first written count only when set, so older keys still match."""
    return {name: value for name, value in values.items() if name not in later or value}


# torch.compile's modes, as a profile or training setting names them (``--compile MODE``, ``compile``)
CompileMode = Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"]
COMPILE_MODES: tuple[str, ...] = get_args(CompileMode)


def profile_setting(channels_last: bool, compile_mode: str | None, fast_path: Sequence[str] = ()) -> str:
    """How a profile configuration ran beyond precision and batch: 'channels_last',
    'compile=MODE', the fast-path settings on (``bench.fast_path``), or 'eager' for none. Rows
    that differ here are different measurements."""
    parts = (["channels_last"] if channels_last else []) + ([f"compile={compile_mode}"] if compile_mode else [])
    return ", ".join([*parts, *fast_path]) or "eager"


def make_extra(**values: Any) -> str:
    return json.dumps(values, sort_keys=True, default=str)
