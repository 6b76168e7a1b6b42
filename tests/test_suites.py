"""Every shipped suite loads and validates; the ablations compare one axis against the paper's net."""

from __future__ import annotations

import pytest

from bench.config import SUITES_DIR
from bench.data import load_data
from bench.profile_suite import load_profile_suite
from bench.suite import load_suite

TRAINING_SUITES = sorted(p.stem for p in SUITES_DIR.glob("*.toml") if p.stem not in ("gpu", "cpu-smoke"))


@pytest.mark.parametrize("name", TRAINING_SUITES)
def test_training_suites_validate(name: str) -> None:
    suite = load_suite(name)
    assert suite.variants and suite.seeds >= 2
    if name.startswith("ablation-"):
        assert suite.variants[0] == "unet-original", "the paper's net is every ablation's baseline"
        assert suite.data == "isbi2012" and suite.val_sections == "25-29"
        assert suite.search is None, "a matched budget: every variant trains with the same recipe"


def test_quick_suite_spans_blocks_nonlinearities_and_widths() -> None:
    from variants import get_variant

    suite = load_suite("quick")
    configs = [get_variant(v).config for v in suite.variants]
    assert len(suite.variants) >= 6 and suite.search is not None and suite.search.pruner != "none"
    assert {c.block for c in configs} == {"plain", "residual", "inception"}
    assert len({c.activation for c in configs}) >= 2
    assert len({suite.model_overrides(v)["base_width"] for v in suite.variants}) >= 2


def test_profile_suites_validate() -> None:
    for name in ("gpu", "cpu-smoke"):
        header, configs = load_profile_suite(name)
        assert configs and header["name"] == name


def test_isbi2012_by_name_finds_the_shared_copy() -> None:
    data = load_data("isbi2012")
    assert len(data) == 30 and data.source.endswith("isbi2012/train")


def test_paper_suite_is_the_papers_recipe_with_a_cpu_schedule() -> None:
    suite = load_suite("paper")
    assert suite.variants == ("unet-original",) and suite.data == "isbi2012"
    t = suite.train
    assert (t.optimizer, t.momentum, t.batch_size, t.tile, t.loss, t.w0, t.sigma) == ("sgd", 0.99, 1, 572, "weighted_ce", 10.0, 5.0)
    assert (t.augment.elastic_sigma, t.augment.elastic_points) == (10.0, 3)
    assert suite.cpu_train is not None and suite.cpu_train.epochs * suite.cpu_train.steps_per_epoch < t.epochs * t.steps_per_epoch
