"""The promises the repository makes to a new user: README commands, CI, packaging."""

from __future__ import annotations

import re
import tomllib

from tests.conftest import REPO


def readme_commands() -> list[str]:
    block = re.search(r"## The two commands.*?```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert block, "README.md must show the two commands in a bash block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_has_two_commands_and_ci_runs_the_test_one() -> None:
    install_and_run, install_and_test = readme_commands()
    assert "pip install -e ." in install_and_run and "unet-bench" in install_and_run
    assert "pytest" in install_and_test
    assert install_and_test in (REPO / ".ci" / "run").read_text(), ".ci/run must run the README's test command"


def test_packages_are_declared_explicitly() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    packages = project["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} == {"bench", "variants"}, "results/, tests/ must not be packaged"
    assert project["project"]["scripts"]["unet-bench"] == "bench.cli:main"
    torch_req = next(d for d in project["project"]["dependencies"] if d.startswith("torch") and "vision" not in d)
    assert "==" not in torch_req and "<" not in torch_req, "torch must be a range a user's machine can satisfy"


def test_ci_lints_formats_and_type_checks_with_the_pinned_tools() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    for command in ("ruff check bench variants", "ruff format --check bench variants", "mypy"):
        assert re.search(rf"^{re.escape(command)}$", ci, re.M), f".ci/run must run `{command}`"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert any(d.startswith("ruff==") for d in extras) and any(d.startswith("mypy==") for d in extras)
