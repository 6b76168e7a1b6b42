"""Property test over the suite schema (hypothesis, bounded and repeatable): a suite file with one
key of a wrong type, out of its range, or unknown, in any section, ends in one line naming the
file, the line and the key, exit 2, no traceback, and nothing written. The keys and their types
come from the configs themselves (TrainCfg, SearchCfg, Variants, DataSpec), so a field added
later is fuzzed without editing this file."""

from __future__ import annotations

import dataclasses
import tempfile
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.config import RANGES, TrainCfg
from bench.data import SYNTHETIC_OPTIONS
from bench.suite import SearchCfg, Variants, load_suite
from bench.suite_file import SuiteError
from tests.conftest import assert_user_error, run_cli

PROPERTY = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

# a suite that loads; every generated edit replaces or adds one key of one section
BASE: dict[str, dict[str, str]] = {
    "suite": {"name": '"prop"'},
    "data": {"source": '"synthetic"', "count": "5", "size": "96", "val_sections": '"4"'},
    "train": {"epochs": "1", "steps_per_epoch": "2", "tile": "92", "val_tile": "92"},
    "model": {"base_width": "4", "depth": "2"},
    "variants": {"names": '["unet-original"]', "seeds": "2"},
    "search": {"trials": "2"},
    "search.space": {"lr": "{ low = 1e-4, high = 1e-2, log = true }"},
    "arms": {},
}
WRONG_TYPE = ['"x"', "[1, 2]", "{ a = 1 }", "true", "1.5e400"]  # 1.5e400 is inf in TOML


def kind(tp: Any) -> tuple[str, tuple[Any, ...]]:
    """'number', 'int', 'bool', 'choice' (with its choices), 'str', 'list' or 'other' for a field type."""
    if get_origin(tp) in (Union, types.UnionType):  # Optional[X]: X
        return kind(next(a for a in get_args(tp) if a is not type(None)))
    if get_origin(tp) is Literal:
        return "choice", tuple(a for arg in get_args(tp) for a in (get_args(arg) or (arg,)))
    if tp is bool:
        return "bool", ()
    if tp is int:
        return "int", ()
    if tp is float:
        return "number", ()
    if tp is str:
        return "str", ()
    if get_origin(tp) is tuple:
        return "list", ()
    return "other", ()


def bad_values(name: str, tp: Any) -> list[str]:
    """TOML values ``name`` of type ``tp`` must refuse."""
    what, choices = kind(tp)
    values = {"number": ['"x"', "[1, 2]", "true", "{ a = 1 }"], "int": ['"x"', "1.5", "true", "[1]"],
              "bool": ['"yes"', "2", "[true]"], "choice": ['"zzz"', "3", "[]"], "str": ["3", "[]", "{ a = 1 }"],
              "list": ['"x"', "3", "{ a = 1 }"]}.get(what, [])  # fmt: skip
    if name in RANGES:  # out of range, NaN and infinities
        values = values + ["nan", "inf", "-inf", "-1"] + (["0"] if not RANGES[name][0](0) else [])
    return [v for v in values if not (what == "choice" and v.strip('"') in map(str, choices))]


def fields_of(config: type, skip: set[str]) -> list[tuple[str, Any]]:
    hints = get_type_hints(config)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(config) if f.name not in skip]


# (section, key, bad TOML value) for every field the schema types
CASES = (
    [("train", n, v) for n, tp in fields_of(TrainCfg, {"augment", "target", "device"}) for v in bad_values(n, tp)]
    + [("search", n, v) for n, tp in fields_of(SearchCfg, {"space", "constraints", "costs"}) for v in bad_values(n, tp)]
    + [("variants", n, v) for n, tp in fields_of(Variants, set()) for v in bad_values(n, tp)]
    + [("data", n, v) for n in SYNTHETIC_OPTIONS for v in ['"x"', "-3", "true", "[1]"]]
    + [("data", n, v) for n in ("val_sections", "test_sections") for v in ['"3-1"', '"x"', '"0-99999999999999"']]
    + [("model", n, v) for n in ("width_scale", "base_width", "depth") for v in ['"x"', "-1", "0", "nan"]]
)
# an [arms] arm holding a wrong training value: the arm's line is named
CASES += [("arms", "bad", f"{{ {n} = {v} }}") for section, n, v in CASES if section == "train" and not v.startswith("{")]


def render(section: str, key: str, value: str) -> str:
    tables = {name: dict(keys) for name, keys in BASE.items()}
    tables[section][key] = value
    return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) for name, keys in tables.items() if keys)


def line_of_key(text: str, section: str, key: str) -> int:
    lines = text.splitlines()
    start = lines.index(f"[{section}]")
    return next(i for i, line in enumerate(lines[start:], start + 1) if line.startswith(f"{key} ="))


def test_the_schema_cases_cover_every_section_and_kind() -> None:
    sections = {section for section, _, _ in CASES}
    assert sections == {"train", "search", "variants", "data", "model", "arms"}
    assert {"lr", "w0", "grad_clip", "instance_target", "amp", "monitor"} <= {k for s, k, _ in CASES if s == "train"}
    assert len(CASES) > 300


@PROPERTY
@given(case=st.sampled_from(CASES))
def test_a_wrong_value_anywhere_is_one_line_naming_file_line_and_key(case: tuple[str, str, str]) -> None:
    section, key, value = case
    check_refused(render(section, key, value), section, key)


@PROPERTY
@given(section=st.sampled_from(["train", "search", "variants", "data", "model", "suite"]),
       key=st.sampled_from(["lrr", "epoch", "seedz", "nmes", "widht_scale", "sourc", "x"]))  # fmt: skip
def test_an_unknown_key_anywhere_is_one_line_naming_file_line_and_key(section: str, key: str) -> None:
    check_refused(render(section, key, "1"), section, key)


def check_refused(text: str, section: str, key: str) -> None:
    """Through the real command: exit 2, one line naming FILE:LINE and the key, nothing written."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / "suite.toml"
        path.write_text(text)
        out = root / "out"
        with pytest.raises(SuiteError):  # first on its own: a file that loaded would train for minutes
            load_suite(path)
        result = run_cli("run", str(path), "-o", str(out / "results"), "--reports", str(out / "reports"))
        line = line_of_key(text, section, key)
        assert_user_error(result, f"{path}:{line}: key {key!r}")
        assert not out.exists() or not any(p.is_file() for p in out.rglob("*")), "nothing written"
