"""docs/variants.md is the registry's table, regenerated and compared (as results/README.md is kept
in step with bench/schema.py)."""

from __future__ import annotations

from tests.conftest import REPO
from variants import list_variants
from variants.catalog import catalog_markdown


def test_docs_variants_md_is_the_generated_table() -> None:
    committed = (REPO / "docs" / "variants.md").read_text()
    assert committed == catalog_markdown(), "docs/variants.md is stale: python -m variants.catalog > docs/variants.md"
    for name in list_variants():
        assert f"| `{name}` |" in committed
    assert "| `unet-original` | unet | ours | Ronneberger et al. 2015 | 31.03 | 300.9 | 572 -> 388 |" in committed
