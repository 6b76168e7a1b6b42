"""User errors against bugs: a mistake the user can fix is one line and exit 2; anything else is a
bug in unet-bench and shows its traceback with a request to report it (exit 1)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys

from bench.errors import UserError
from tests.conftest import REPO, assert_user_error

# Exceptions of bench/ and variants/ that are not user errors, each with the reason. Any other
# exception class must derive from UserError, so that the CLI prints it as one line.
INTERNAL_EXCEPTIONS = {"bench.train.StopTraining": "a callback's signal to end training early; fit() catches it"}


def _in_a_process(command_function: str) -> subprocess.CompletedProcess[str]:
    """``unet-bench list`` in a fresh process, through the real ``bench.cli.main``, with the list
    command's function replaced by ``command_function`` (the source of a ``def cmd_list(args)``)."""
    script = f"import sys\nimport bench.cli as cli\n\n{command_function}\ncli.cmd_list = cmd_list\nsys.exit(cli.main(['list']))\n"
    return subprocess.run(
        [sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_a_bug_shows_its_traceback_and_asks_for_a_report() -> None:
    result = _in_a_process("def cmd_list(args):\n    return int('not a number')  # a plain ValueError: no user error\n")
    assert result.returncode == 1, result.stderr
    assert "Traceback (most recent call last)" in result.stderr and "in cmd_list" in result.stderr
    assert "ValueError: invalid literal for int()" in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("unet-bench: this is a bug in unet-bench, not in your input; please report it"), last
    assert "unet-bench: error:" not in result.stderr


def test_a_user_error_raised_by_a_command_is_one_line() -> None:
    result = _in_a_process(
        "from bench.data import DataError\n\ndef cmd_list(args):\n    raise DataError('x.png: label is not binary')\n"
    )
    assert_user_error(result, "x.png: label is not binary")


def test_an_interrupt_is_one_short_line_and_exit_130() -> None:
    result = _in_a_process("def cmd_list(args):\n    raise KeyboardInterrupt\n")
    assert result.returncode == 130, result.stderr
    assert result.stderr.strip() == "unet-bench: interrupted"


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined at the top level of a module in bench/ or variants/."""
    found = {}
    for path in sorted([*REPO.glob("bench/**/*.py"), *REPO.glob("variants/**/*.py")]):
        names = [node.name for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)]
        if not names:
            continue
        module = importlib.import_module(".".join(path.relative_to(REPO).with_suffix("").parts))
        for name in names:
            cls = getattr(module, name)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                found[f"{module.__name__}.{name}"] = cls
    return found


def test_every_exception_class_is_a_user_error_or_listed_as_internal() -> None:
    classes = _exception_classes()
    assert {"variants.overrides.ConfigError", "bench.data.DataError", "bench.errors.DiskFullError"} <= set(classes)
    internal = {name for name, cls in classes.items() if not issubclass(cls, UserError)}
    assert internal == set(INTERNAL_EXCEPTIONS), "derive a user error from UserError, or list an internal one"
    # no second, stdlib base: an `except ValueError` or `except OSError` meant for a library's
    # failure must not also catch a user error (the CLI tells the two apart by UserError alone)
    user_bases = set(UserError.__mro__)
    mixed = {name for name, cls in classes.items() if issubclass(cls, UserError)
             and any(not issubclass(base, UserError) and base not in user_bases for base in cls.__mro__)}  # fmt: skip
    assert not mixed, mixed
