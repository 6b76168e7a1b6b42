"""`unet-bench list --json` and docs/variants.md: the registry's table, regenerated from the
command's rows and compared (as results/README.md is kept in step with bench/schema.py)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, run_cli
from variants import list_variants
from variants.catalog import catalog_markdown


@pytest.fixture(scope="module")
def listed() -> list[dict[str, object]]:
    """The rows of one ``unet-bench list --json`` (it counts every variant's parameters and
    FLOPs, so both tests read the same run)."""
    result = run_cli("list", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_list_json_has_every_variant_with_the_documented_keys(listed: list[dict[str, object]]) -> None:
    assert [row["name"] for row in listed] == list_variants()
    for row in listed:
        assert {"name", "family", "source", "citation", "params", "gflops", "input_size", "output_size"} <= row.keys()
    original = next(r for r in listed if r["name"] == "unet-original")
    assert (original["source"], original["citation"]) == ("ours", "Ronneberger et al. 2015")
    assert (original["params"], original["input_size"], original["output_size"]) == (31_030_658, 572, 388)
    assert abs(float(original["gflops"]) - 300.9) < 1.0  # type: ignore[arg-type]


def test_docs_variants_md_is_the_generated_table(listed: list[dict[str, object]]) -> None:
    committed = (REPO / "docs" / "variants.md").read_text()
    assert committed == catalog_markdown(listed), "docs/variants.md is stale: python -m variants.catalog > docs/variants.md"
    for name in list_variants():
        assert f"| `{name}` |" in committed
    assert "| `unet-original` | unet | ours | Ronneberger et al. 2015 | 31.03 | 300.9 | 572 -> 388 |" in committed
