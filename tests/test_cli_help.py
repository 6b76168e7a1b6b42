"""The command line teaches itself: a version, help on every argument with its default, and
real example command lines on every command's --help."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

from bench.cli import build_parser
from tests.conftest import run_cli


def commands(parser: argparse.ArgumentParser, path: str = "unet-bench") -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub-)command's parser, nested ones (``data fetch``) included, by its command line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from commands(sub, f"{path} {name}")


def test_every_command_has_examples_and_every_argument_help_and_default() -> None:
    found = dict(commands(build_parser()))
    assert {"unet-bench compare", "unet-bench predict", "unet-bench data fetch", "unet-bench data check"} <= set(found)
    for name, parser in found.items():
        text = " ".join(parser.format_help().split())  # unwrapped, so a default split over lines still matches
        assert "examples:" in text and f"{name} " in text, f"{name}: no example of itself"
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{name} {action.dest}: no help"
            if action.default is not None and action.default is not argparse.SUPPRESS:
                assert f"(default: {action.default})" in text, f"{name} {action.dest}: default {action.default!r} not shown"


def test_version() -> None:
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"unet-bench {version('unet-bench')}"
