"""Every shipped suite loads and validates; the ablations compare one axis against the paper's net."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import get_args

import pytest

from bench.data import load_data
from bench.metrics import ScoreName
from bench.profile_suite import load_profile_suite
from bench.suite import Pruner, Sampler, SuiteCfg, load_suite
from bench.suite_file import SUITES_DIR, SuiteError
from tests.conftest import TINY_SEARCH

TINY_SUITE = TINY_SEARCH.parent / "tiny-suite.toml"  # every section, a search and two variants

PROFILE_SUITES = ("gpu", "gpu-fast", "cpu-smoke")  # [[sweep]] tables, for `profile --suite`
TRAINING_SUITES = sorted(p.stem for p in SUITES_DIR.glob("*.toml") if p.stem not in PROFILE_SUITES)


@pytest.mark.parametrize("name", TRAINING_SUITES)
def test_training_suites_validate(name: str) -> None:
    suite = load_suite(name)
    assert suite.variants and suite.seeds >= 2
    if str(suite.data) == "dsb2018":  # the stratified split holds out validation and test images
        assert suite.seeds >= 3 and suite.search is not None and suite.searched_variants() == suite.variants
        assert suite.search.objective == "dsb_ap" and not suite.test_sections
        assert suite.baseline == ("weight-map" if suite.arms else None)
        return
    if name.startswith("ablation-") or name == "quick":
        assert suite.seeds >= 3, "no interval from fewer than 3 seeds"
        assert suite.search is not None and suite.searched_variants() == suite.variants, "an equal tuning budget"
        assert suite.test_sections and not set(suite.val_sections or ()) & set(suite.test_sections)
    if name.startswith("ablation-"):
        # the paper's net is every ablation's baseline, but where the varied net must change a
        # second axis too (5x5 kernels need same padding), its control differs in that axis alone
        baseline = suite.baseline or suite.variants[0]
        assert baseline == "unet-original" or (name, baseline) == ("ablation-kernels", "unet-same"), baseline
        assert str(suite.data) == "isbi2012" and suite.val_sections == (20, 21, 22, 23, 24)
        assert suite.test_sections == (25, 26, 27, 28, 29), "disjoint train / validation / test sections"


def test_quick_suite_spans_blocks_nonlinearities_and_widths() -> None:
    from variants import get_variant

    suite = load_suite("quick")
    configs = [get_variant(v).config for v in suite.variants]
    assert len(suite.variants) >= 5 and suite.search is not None and suite.search.pruner != "none"
    assert {c.block for c in configs} == {"plain", "residual", "inception"}
    assert len({c.activation for c in configs}) >= 2
    assert len({suite.model_overrides(v)["base_width"] for v in suite.variants}) >= 2


def test_profile_suites_validate() -> None:
    for name in PROFILE_SUITES:
        header, configs = load_profile_suite(name)
        assert configs and header["name"] == name


def test_isbi2012_by_name_finds_the_shared_copy() -> None:
    data = load_data("isbi2012")
    assert len(data) == 30 and data.source.endswith("isbi2012/train")


def test_paper_suite_is_the_papers_recipe_with_a_cpu_schedule() -> None:
    suite = load_suite("paper")
    assert suite.variants == ("unet-original",) and str(suite.data) == "isbi2012"
    t = suite.train
    assert (t.optimizer, t.momentum, t.batch_size, t.tile, t.loss, t.w0, t.sigma) == ("sgd", 0.99, 1, 572, "weighted_ce", 10.0, 5.0)
    assert (t.augment.elastic_sigma, t.augment.elastic_points) == (10.0, 3)
    assert suite.cpu_train is not None and suite.cpu_train.epochs * suite.cpu_train.steps_per_epoch < t.epochs * t.steps_per_epoch


def test_width_scale_is_a_suite_field_that_scales_each_variants_own_width() -> None:
    suite = load_suite("quick")
    assert suite.width_scale == 0.25 and suite.model == {"depth": 2}, "[model] holds only real model overrides"
    assert suite.model_overrides("unet-original") == {"depth": 2, "base_width": 16}
    assert suite.model_overrides("unet-32") == {"depth": 2, "base_width": 8}
    assert load_suite(TINY_SUITE).model_overrides("resunet") == {"base_width": 4, "depth": 2}, "no scale: as written"


def broken_suite(tmp_path: Path, old: str, new: str) -> Path:
    """tiny-suite.toml with ``old`` replaced by ``new``."""
    text = TINY_SUITE.read_text()
    assert old in text
    path = tmp_path / "broken.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def load_error(path: Path, key: str) -> str:
    """The SuiteError of loading ``path``, checked to name the file, the line of ``key`` and the key."""
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.startswith(f"{key} ="))
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: key {key!r}: "), message
    return message


@pytest.mark.parametrize(
    ("old", "new", "key", "choices", "meant"),
    [
        ('objective = "v_rand"', 'objective = "v_rnad"', "objective", get_args(ScoreName), "v_rand"),
        ('pruner = "median"', 'pruner = "medain"', "pruner", get_args(Pruner), "median"),
        ("trials = 3", 'trials = 3\nsampler = "tpf"', "sampler", get_args(Sampler), "tpe"),
        ('val_thresholds = "fixed"', 'val_thresholds = "fixed"\nmonitor = "vrand"', "monitor", get_args(ScoreName), "v_rand"),
    ],
)  # fmt: skip
def test_a_misspelt_choice_fails_on_load_with_the_valid_choices(
    tmp_path: Path, old: str, new: str, key: str, choices: tuple[str, ...], meant: str
) -> None:
    message = load_error(broken_suite(tmp_path, old, new), key)
    assert all(repr(choice) in message for choice in choices), message
    assert f"Did you mean {meant!r}" in message


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('objective = "v_rand"', 'objective = "warping_error"', "objective", "only with val_warping = true"),
        ('val_thresholds = "fixed"', 'val_thresholds = "fixed"\nmonitor = "warping_error"', "monitor", "only with val_warping = true"),
        ("depth = 2", "depth = 2\nwidth_scale = 0", "width_scale", "width_scale must be positive, got 0"),
        ("depth = 2", 'depth = 2\nwidth_scale = "half"', "width_scale", "expected float"),
        ("seeds = 2", "seed = 2", "seed", "[variants]: unknown override 'seed'. Did you mean 'seeds'"),
        ("depth = 2", 'depth = 2\nactivaton = "gelu"', "activaton", "Did you mean 'activation'?"),
    ],
)  # fmt: skip
def test_a_value_that_would_fail_in_training_fails_on_load(
    tmp_path: Path, old: str, new: str, key: str, problem: str
) -> None:
    assert problem in load_error(broken_suite(tmp_path, old, new), key)


def test_warping_error_is_an_objective_when_validation_scores_it(tmp_path: Path) -> None:
    path = broken_suite(tmp_path, 'objective = "v_rand"', 'objective = "warping_error"')
    text = path.read_text().replace('val_thresholds = "fixed"', 'val_thresholds = "fixed"\nval_warping = true')
    path.write_text(text)
    assert load_suite(path).search.objective == "warping_error"  # type: ignore[union-attr]


def test_every_variant_is_tuned_unless_the_suite_says_otherwise(tmp_path: Path) -> None:
    """per_variant (the default) gives each [variants] name a study; a `variant` beside it is
    ambiguous and refused on its line; per_variant = false tunes that one variant only."""
    assert load_suite(TINY_SUITE).searched_variants() == ("unet-original", "resunet")
    ambiguous = broken_suite(tmp_path, "trials = 3", 'trials = 3\nvariant = "resunet"')
    assert "per_variant = false" in load_error(ambiguous, "variant")
    one = broken_suite(tmp_path, "trials = 3", 'trials = 3\nvariant = "resunet"\nper_variant = false')
    assert load_suite(one).searched_variants() == ("resunet",)
    assert load_suite(TINY_SEARCH).searched_variants() == ("unet-original",), "no [variants]: the search's variant"


def test_test_sections_that_overlap_validation_are_refused_naming_file_and_sections(tmp_path: Path) -> None:
    """Selection (checkpoint choice, search objective) and the reported test score must not see the
    same images: the suite is refused on load, before anything trains or is written."""
    overlapping = broken_suite(tmp_path, 'val_sections = "4"', 'val_sections = "3-4"\ntest_sections = "2-3"')
    message = load_error(overlapping, "test_sections")
    assert "sections [3] are both validation and test sections" in message


def test_folds_hold_out_contiguous_blocks_each_tested_once(tmp_path: Path) -> None:
    """[data] folds = 3 on 6 images: fold f tests block f and validates on the next block; train,
    validation and test are disjoint in every fold, and every image is tested exactly once."""
    from bench.job import job_split, suite_job

    path = broken_suite(tmp_path, 'count = 5\nsize = 96\nval_sections = "4"', "count = 6\nsize = 96\nfolds = 3")
    suite = load_suite(path)
    assert suite.folds == 3 and suite.val_sections is None and suite.test_sections == ()
    blocks = [[0, 1], [2, 3], [4, 5]]  # 6 images in 3 contiguous blocks
    tested = []
    for fold in range(3):
        job = suite_job(suite, "unet-original", {}, 0, owner="test", fold=fold)
        train_data, _, val = job_split(job)
        train = [int(s.name.removeprefix("synthetic-")) for s in train_data.samples]
        assert list(job.test_sections) == blocks[fold] and val == blocks[(fold + 1) % 3]
        assert sorted(train + val + list(job.test_sections)) == list(range(6)), "disjoint, and cover the data"
        tested += job.test_sections
    assert sorted(tested) == list(range(6)), "each image is a test image exactly once"
    searched = suite_job(suite, "unet-original", {}, 0, owner="test")
    assert searched.val_sections == (2, 3) and searched.test_sections == (0, 1), "the search trains on fold 0"


@pytest.mark.parametrize(
    ("new", "problem"),
    [
        ('val_sections = "4"\nfolds = 3', "folds chooses each fold's validation and test sections; remove"),
        ("folds = 2", "2 folds leave no image to train on"),
        ("folds = 6", "6 folds need at least 6 images; the data has 5"),
        ('folds = "3"', "expected int"),
    ],
)
def test_folds_refuse_explicit_sections_and_too_few_images_or_folds(tmp_path: Path, new: str, problem: str) -> None:
    message = load_error(broken_suite(tmp_path, 'val_sections = "4"', new), "folds")
    assert problem in message, message


def test_folds_beyond_a_folders_image_count_are_refused_when_the_suite_runs(tmp_path: Path) -> None:
    """A folder's image count is known only from its files: the first job names the suite's folds line."""
    from bench.job import suite_job
    from tests.test_data import write_folder

    write_folder(tmp_path / "data", n=3)
    path = broken_suite(tmp_path, 'source = "synthetic"\ncount = 5\nsize = 96\nval_sections = "4"',
                        'source = "data"\nfolds = 4')  # fmt: skip
    suite = load_suite(path)
    line = path.read_text().splitlines().index("folds = 4") + 1
    with pytest.raises(SuiteError, match=rf"^{path}:{line}: key 'folds': \[data\] folds: 4 folds need at least 4 images; the data has 3"):
        suite_job(suite, "unet-original", {}, 0, owner="test")


def _one_variant_per_config_type() -> list[str]:
    """The first registered variant of each (family, config class): every family's ``scaled``."""
    from variants import get_variant, list_variants

    first: dict[tuple[str, str], str] = {}
    for name in list_variants():
        config = get_variant(name).config
        first.setdefault((config.family, type(config).__name__), name)
    return sorted(first.values())


@pytest.mark.parametrize("name", _one_variant_per_config_type())
def test_width_scale_shrinks_every_family_within_its_rules(name: str) -> None:
    import torch

    from variants import get_variant, resolve_config
    from variants.registry import count_parameters

    full = get_variant(name).config
    scaled = resolve_config(name, **full.scaled(0.25))
    with torch.device("meta"):
        full_model, scaled_model = full.build(), scaled.build()
    assert count_parameters(scaled_model) < count_parameters(full_model)
    if full.family == "smp":  # a published encoder keeps its widths; only the decoder shrinks
        assert count_parameters(scaled_model.encoder) == count_parameters(full_model.encoder)
    else:  # every width at most about halved (SwinUNETR stops at 12 of 24): a quarter of the weights or fewer
        assert count_parameters(scaled_model) <= 0.3 * count_parameters(full_model)
    size = scaled.valid_input_size(1)  # the smallest side it takes
    torch.manual_seed(0)
    with torch.no_grad():
        out = scaled.build().eval()(torch.rand(1, scaled.in_channels, size, size))
    out = out[0] if isinstance(out, (list, tuple)) else out
    side = scaled.output_size(size)
    assert out.shape == (1, scaled.num_classes, side, side)


def test_width_scale_keeps_each_librarys_rules() -> None:
    from variants.nnunet import PLAN_2D_512_FEATURES

    suite = load_suite("ablation-architectures")
    assert suite.width_scale == 0.25 and suite.model == {}
    quarter = tuple(f // 4 for f in PLAN_2D_512_FEATURES)  # 8..128, the plan's 8 stages kept
    assert suite.model_overrides("nnunet-resenc-2d") == {"features_per_stage": quarter}
    assert suite.model_overrides("monai-basicunet") == {"features": (8, 8, 16, 32, 64, 8)}
    assert suite.model_overrides("monai-swinunetr") == {"feature_size": 12}, "24 / 4 = 6; MONAI takes multiples of 12"
    bare = SuiteCfg(name="bare", path=Path("bare.toml"), width_scale=0.25)
    assert bare.model_overrides("smp-resnet18-unet") == {"decoder_channels": (64, 32, 16, 8, 4)}
    kept = replace(bare, model={"feature_size": 24})
    assert kept.model_overrides("monai-swinunetr") == {"feature_size": 24}, "a width [model] names is kept"


ARMS = '[arms]\nplain = {}\nno-dropout = { "model.dropout" = 0.0 }\nno-weight-map = { w0 = 0.0 }\n'


def test_arms_become_what_is_compared_each_over_the_suites_settings(tmp_path: Path) -> None:
    path = broken_suite(tmp_path, "[cpu]", ARMS.replace("\nplain = {}", "") + "[cpu]")
    path.write_text(path.read_text().replace('"model.dropout" = { choices = [0.0, 0.5] }\n', ""))
    suite = load_suite(path)
    assert suite.variants == (
        "unet-original+no-dropout", "unet-original+no-weight-map", "resunet+no-dropout", "resunet+no-weight-map"
    )  # fmt: skip
    assert suite.baseline == "unet-original+no-dropout", "the first arm, unless [variants] names a baseline"
    assert suite.network("resunet+no-weight-map") == "resunet" and suite.train_for("resunet+no-weight-map").w0 == 0
    assert suite.model_overrides("resunet+no-dropout")["dropout"] == 0.0
    assert suite.searched_variants() == suite.variants, "every arm gets the same tuning budget"


@pytest.mark.parametrize(
    ("arms", "key", "problem"),
    [
        ("[arms]\nbad = { w0 = -1.0 }\n", "bad", "w0 must be 0 or more"),
        ("[arms]\nbad = { sigmaa = 1.0 }\n", "bad", "Did you mean 'sigma'"),
        ("[arms]\nbad = 3\n", "bad", "expected a table of settings"),
        ("[arms]\nsame = { w0 = 10.0 }\nplain = {}\n", "plain", "trains the same settings as unet-original+same"),
        ("[arms]\nfast = { lr = 0.01 }\n", "fast", "[search.space] searches"),
        ("[arms]\nplain = {}\n", "baseline", "'unet-original' is not compared here"),
    ],
)
def test_a_bad_arm_fails_on_load_naming_file_line_and_arm(tmp_path: Path, arms: str, key: str, problem: str) -> None:
    extra = 'baseline = "unet-original"\n' if key == "baseline" else ""
    path = broken_suite(tmp_path, "seeds = 2\n", f"seeds = 2\n{extra}" + arms)
    assert problem in load_error(path, key)


def test_an_objective_must_score_the_suites_labels(tmp_path: Path) -> None:
    path = tmp_path / "nuclei.toml"
    path.write_text(SUITES_DIR.joinpath("dsb2018.toml").read_text().replace('"dsb_ap"', '"v_rand"'))
    assert "'v_rand' does not score dsb2018's instance labels; use an objective like 'dsb_ap'" in load_error(
        path, "objective"
    )
    path = broken_suite(tmp_path, 'objective = "v_rand"', 'objective = "dsb_ap"')
    assert "binary labels; use an objective like 'v_rand'" in load_error(path, "objective")


def test_arms_of_one_network_share_one_profile_measurement(tmp_path: Path) -> None:
    """Arms that change only training (w0, dropout) are one network for inference: measured once
    and written under each arm, so noise cannot put one arm of a network on a Pareto front and
    its twin off it (ablation-weightmap once showed 34.0 against 31.3 img/s for one network);
    a different network (resunet) is measured on its own."""
    from bench.run import profile_stage
    from bench.store import read_results

    path = broken_suite(tmp_path, "[cpu]", ARMS + "[cpu]")
    path.write_text(path.read_text().replace('"model.dropout" = { choices = [0.0, 0.5] }\n', ""))
    suite = load_suite(path)
    run_dir = tmp_path / "run"
    lines: list[str] = []
    profile_stage(suite, run_dir, {}, lines.append)
    rows = read_results(run_dir)
    throughput = rows[rows["metric"] == "throughput"].set_index("variant")["value"]
    arms = [v for v in suite.variants if suite.network(v) == "unet-original"]
    assert len(arms) == 3 and len(lines) == len(suite.variants)
    assert throughput[arms].nunique() == 1, "one measurement of unet-original, written under each of its arms"
    others = [v for v in suite.variants if suite.network(v) == "resunet"]
    assert throughput[others].nunique() == 1 and throughput[others[0]] != throughput[arms[0]]
