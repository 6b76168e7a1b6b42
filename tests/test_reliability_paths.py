"""Hostile names and other people's files, through the real command: a name that becomes a path
(suite, study, variant, results folder) is refused as one line before anything is written, and
nothing is ever written outside the folders the user named or over a file unet-bench did not
write."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_SEARCH, assert_user_error, run_cli, run_cli_many

GOLDEN = Path(__file__).parent / "data" / "golden"  # a results tree
HOSTILE = ["..", "../../escaped", "a/b", "", ".", "x\\y", "-rf", "bad name", "nul\x00", "é"]  # and an absolute path


def tree(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def with_name(text: str, name: str) -> str:
    """A suite text whose [suite] name is ``name`` (TOML-escaped)."""
    return re.sub(r'(?m)^name = ".*"$', lambda _: f"name = {json.dumps(name)}", text, count=1)  # JSON strings are TOML


PROFILE_SUITE = '[suite]\nname = "x"\n[[sweep]]\nvariants = ["unet-16"]\n'


@pytest.mark.parametrize("loader", ["load_suite", "load_profile_suite"])
def test_every_hostile_suite_name_is_refused_on_load(tmp_path: Path, loader: str) -> None:
    """Each kind of hostile `name` (and a file whose stem would be one) is refused by the loader
    with `FILE:LINE: key 'name'`, before anything runs."""
    from bench.profile_suite import load_profile_suite
    from bench.suite import load_suite
    from bench.suite_file import SuiteError

    load, source = {"load_suite": (load_suite, TINY_SEARCH.read_text()),
                    "load_profile_suite": (load_profile_suite, PROFILE_SUITE)}[loader]  # fmt: skip
    line = next(n for n, text in enumerate(source.splitlines(), start=1) if text.startswith("name ="))
    for name in [*HOSTILE, str(tmp_path / "abs")]:
        suite = tmp_path / "suite.toml"
        suite.write_text(with_name(source, name))
        with pytest.raises(SuiteError, match=re.escape(f"{suite}:{line}: key 'name': suite name {name!r} cannot be")):
            load(suite)
    stem = tmp_path / "...toml"  # no name given: the file's stem, "..", would be the folder
    stem.write_text(re.sub(r"(?m)^name = .*$", "", source))
    with pytest.raises(SuiteError, match=re.escape(f"{stem}: key 'name': suite name '..' cannot be")):
        load(stem)


@pytest.mark.parametrize("command", ["run", "search", "profile"])
def test_hostile_suite_names_write_nothing_anywhere(tmp_path: Path, command: str) -> None:
    """Through the real command: exit 2, one line naming the file and key, and no file appears
    anywhere - not under the named output folders, not beside them, not at the absolute path
    the name gives."""
    source = TINY_SEARCH.read_text() if command != "profile" else PROFILE_SUITE
    commands, suites = {}, {}
    for number, name in enumerate(["../../escaped", "", str(tmp_path / "absolute-target")]):
        suite = tmp_path / "suites" / f"s{number}.toml"
        suite.parent.mkdir(exist_ok=True)
        suite.write_text(with_name(source, name))
        out = tmp_path / "out" / f"s{number}"
        args = {"run": ["run", str(suite), "-o", str(out), "--reports", str(out / "reports")],
                "search": ["search", str(suite), "-o", str(out)],
                "profile": ["profile", "--suite", str(suite), "--results", str(out)]}[command]  # fmt: skip
        commands[name], suites[name] = args, suite
    before = tree(tmp_path)
    results = run_cli_many(commands)
    for name, result in results.items():
        assert_user_error(result, f"{suites[name]}:", "key 'name'", f"suite name {name!r} cannot be used")
    assert tree(tmp_path) == before, "a refused suite writes nothing, anywhere"


def test_hostile_study_and_variant_names_are_refused(tmp_path: Path) -> None:
    """`search --study` names the study's rows parts; `--variant` names its parts and study: a
    separator, `..`, an absolute path or an empty name never becomes a path."""
    out = tmp_path / "out"
    commands = {f"study {name!r}": ["search", str(TINY_SEARCH), "--study", name, "-o", str(out)]
                for name in ["..", "../../escaped", "", str(tmp_path / "abs")]}  # fmt: skip
    commands |= {f"variant {name!r}": ["search", str(TINY_SEARCH), "--variant", name, "-o", str(out)]
                 for name in ["../../escaped", str(tmp_path / "abs")]}  # fmt: skip
    before = tree(tmp_path)
    results = run_cli_many(commands)
    for case, result in results.items():
        needle = "study name" if case.startswith("study") else "unknown variant"
        assert_user_error(result, needle)
    assert tree(tmp_path) == before, "nothing may be written for a refused name"


def test_hostile_names_inside_a_suite_write_nothing_anywhere(tmp_path: Path) -> None:
    """The names a suite file gives that become paths besides its own (a variant of `names`, the
    searched `variant`, an [arms] arm: each names rows parts, studies and checkpoints), with
    every hostile kind: one line naming the file and the key's line, exit 2, nothing written."""
    source = (TINY_SEARCH.parent / "tiny-suite.toml").read_text()
    edits = {"names": lambda n: source.replace('names = ["unet-original", "resunet"]', f"names = [{json.dumps(n)}]"),
             "variant": lambda n: source.replace("[search]\n", f"[search]\nper_variant = false\nvariant = {json.dumps(n)}\n"),
             "arm": lambda n: source + f"\n[arms]\n{json.dumps(n)} = {{ w0 = 0.0 }}\n"}  # fmt: skip
    commands, expected = {}, {}
    for number, name in enumerate([*HOSTILE, str(tmp_path / "abs")]):
        for key, edit in edits.items():
            suite = tmp_path / "suites" / f"{key}{number}.toml"
            suite.parent.mkdir(exist_ok=True)
            text = edit(name)
            assert text != source
            suite.write_text(text)
            out = tmp_path / "out" / f"{key}{number}"
            commands[(key, name)] = ["run", str(suite), "-o", str(out), "--reports", str(out / "reports")]
            line = next(i for i, t in enumerate(text.splitlines(), 1) if t.startswith(json.dumps(name) if key == "arm" else f"{key} ="))
            expected[(key, name)] = f"{suite}:{line}: key "
    before = tree(tmp_path)
    results = run_cli_many(commands)
    for case, result in results.items():
        assert_user_error(result, expected[case], "arm name" if case[0] == "arm" else "unknown variant")
    assert tree(tmp_path) == before, "a refused name writes nothing, anywhere"


def test_report_of_the_parent_folder_stays_in_reports(tmp_path: Path) -> None:
    """`unet-bench report ..` from inside a folder once wrote reports/../report.html over the
    user's files: the default report folder is named after the results folder itself."""
    results = tmp_path / "my-run"
    (results / "work").mkdir(parents=True)
    for part in (GOLDEN / "golden").glob("rows-*.csv"):
        (results / part.name).write_bytes(part.read_bytes())
    mine = results / "work" / "report.md"
    mine.write_text("my own notes\n")
    before = tree(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = run_cli("report", "..", cwd=results / "work", env=env)
    assert result.returncode == 0, result.stderr
    assert mine.read_text() == "my own notes\n"
    written = tree(tmp_path) - before
    root = results / "work" / "unetbench-out"  # the one output root, under the working folder
    out = root / "reports" / "my-run"
    assert written and all(p in (root, out.parent) or out in (p, *p.parents) for p in written), sorted(written)
    assert (out / "report.html").is_file()


def test_report_never_replaces_a_file_it_did_not_write(tmp_path: Path) -> None:
    """A report folder that holds a user's report.md (or figure) is refused before anything is
    written; a folder of its own making is rewritten freely."""
    folder = tmp_path / "notes"
    folder.mkdir()
    mine = folder / "report.md"
    mine.write_text("my own report\n")
    (folder / "fig").mkdir()
    picture = folder / "fig" / "quality.png"
    picture.write_bytes(b"my picture")
    ours = tmp_path / "ours"
    results = run_cli_many({
        "theirs": ["report", str(GOLDEN), "-o", str(folder)],
        "ours": ["report", str(GOLDEN), "-o", str(ours)],
    })  # fmt: skip
    assert_user_error(results["theirs"], f"{mine}: not written by unet-bench", "nothing was written")
    assert sorted(p.name for p in folder.rglob("*")) == ["fig", "quality.png", "report.md"]
    assert mine.read_text() == "my own report\n" and picture.read_bytes() == b"my picture"
    mine.unlink()  # the figure alone is refused too
    assert_user_error(run_cli("report", str(GOLDEN), "-o", str(folder)), f"{picture}: not written by unet-bench")
    assert picture.read_bytes() == b"my picture" and not (folder / "report.md").exists()

    assert results["ours"].returncode == 0, results["ours"].stderr
    again = run_cli("report", str(GOLDEN), "-o", str(ours))  # its own files: replaced
    assert again.returncode == 0, again.stderr
    listed = set((ours / ".unet-bench-report").read_text().splitlines()[1:])
    assert {p.relative_to(ours).as_posix() for p in ours.rglob("*.*")} - {".unet-bench-report"} == listed
