"""Suite files, training and profile alike: found by name or path, parsed as TOML (never
evaluated as code), and errors that name the file, the line and the key."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from variants.errors import UserError
from variants.overrides import near_matches

SUITES_DIR = Path(__file__).resolve().parent / "suites"


class SuiteError(UserError):
    """A suite file that cannot be used; the message names the file, the line and the key."""


def suite_path(name_or_path: str | Path) -> Path:
    """A suite by name (``gpu`` -> bench/suites/gpu.toml) or by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.exists():
            raise SuiteError(f"{path}: no such suite file")
        return path
    candidate = SUITES_DIR / f"{name_or_path}.toml"
    if not candidate.exists():
        known = sorted(p.stem for p in SUITES_DIR.glob("*.toml"))
        close = near_matches(str(name_or_path), known)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SuiteError(f"unknown suite {str(name_or_path)!r}.{hint} Known suites: {', '.join(known)}")
    return candidate


def line_of(text: str, key: str) -> int | None:
    """The 1-based line where ``key = ...`` is set in a TOML text (first match), if found."""
    spellings = {re.escape(key), re.escape(json.dumps(key)[1:-1])}  # as written, or escaped in a quoted key
    pattern = re.compile(rf"""^\s*["']?(?:{"|".join(spellings)})["']?\s*=""")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


def load_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse a suite file (never evaluated as code); syntax errors name the file and line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise SuiteError(f"{path}: cannot read ({exc})") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: invalid TOML: {exc}") from None


def suite_key_error(path: Path, text: str, key: str, problem: str) -> SuiteError:
    line = line_of(text, key) or line_of(text, key.rsplit(".", 1)[-1])
    where = f"{path}:{line}" if line else str(path)
    return SuiteError(f"{where}: key {key!r}: {problem}")
