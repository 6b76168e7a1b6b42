"""The code standard's hard limit, checked: no function in bench/ or variants/ longer than 80 lines."""

from __future__ import annotations

import ast

from tests.conftest import REPO

MAX_LINES = 80

# Functions being split by a change in progress (none now); to be removed from here when they are.
ALLOWED: set[str] = set()

DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)


def function_lengths() -> dict[str, int]:
    """``path:qualified.name`` -> lines from ``def`` to the last line, for every function, method
    and nested function (the longest, where one scope defines a name twice)."""
    lengths: dict[str, int] = {}

    def visit(node: ast.AST, where: str, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, (*DEFS, ast.ClassDef)):
                inner = f"{scope}{child.name}."
            if isinstance(child, DEFS) and child.end_lineno is not None:
                key = f"{where}:{inner[:-1]}"
                lengths[key] = max(lengths.get(key, 0), child.end_lineno - child.lineno + 1)
            visit(child, where, inner)

    for package in ("bench", "variants"):
        for path in sorted((REPO / package).rglob("*.py")):
            where = path.relative_to(REPO).as_posix()
            visit(ast.parse(path.read_text(), filename=where), where, "")
    return lengths


def test_no_function_is_longer_than_80_lines() -> None:
    lengths = function_lengths()
    assert {"bench/train.py:fit", "bench/train.py:Trainer.step", "bench/cli.py:profile_suite.log"} <= lengths.keys()
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES and name not in ALLOWED}
    assert not too_long, f"functions longer than {MAX_LINES} lines (split them): {too_long}"


def test_the_allow_list_holds_only_functions_still_too_long() -> None:
    """An entry left behind after its split would let that function grow back unnoticed."""
    lengths = function_lengths()
    stale = sorted(name for name in ALLOWED if lengths.get(name, 0) <= MAX_LINES)
    assert not stale, f"no longer over {MAX_LINES} lines (or gone): remove from ALLOWED: {stale}"


def test_fit_is_called_from_one_place() -> None:
    """One training job: search, suites and `unet-bench train` all reach ``bench.train.fit``
    through ``bench.job.run_job``, so a number means the same whoever trained it."""
    callers = []
    packages = [p for root in ("bench", "variants") for p in (REPO / root).rglob("*.py")]
    for path in sorted(p for p in packages if "benchmarks" not in p.parts):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "fit":
                callers.append(path.relative_to(REPO).as_posix())
    assert callers == ["bench/job.py"], callers
