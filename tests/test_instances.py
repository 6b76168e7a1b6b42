"""Instance data (DSB 2018): the folder source on real files, the stratified split, the instance
targets and their decoding, overlap-tile prediction of any size, and train + eval through the CLI."""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from bench import data
from bench.config import TrainCfg
from bench.infer import mirror_pad, plan_for_image, predict_tiled
from bench.instances import class_weights, decode_instances, instance_target, target_probabilities
from bench.job import TrainJob
from bench.store import read_configs, read_results
from tests.conftest import SHARED_DATA, run_cli
from variants import resolve_config

DSB = SHARED_DATA / "dsb2018" / "train"
needs_dsb = pytest.mark.skipif(not (DSB / "images").is_dir(), reason="DSB 2018 not in ../shared/data")
COLOUR = "00ae65c1c6631ae6f2be1a449902976e6eb8483bf6b0740d00530220832c6d3e"  # 320x256 H&E
GREY = "00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552"  # 256x256 fluorescence
CROWDED = "07fb37aafa6626608af90c1e18f6a743f29b6b233d2e427dcd1102df6a916cf5"  # 696x520, 313 nuclei


def copy_dsb(root: Path, names: list[str]) -> Path:
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(DSB / sub / f"{name}.png", root / sub / f"{name}.png")
    return root


def dsb_names(kinds: dict[tuple[int, int, bool], int]) -> list[str]:
    """The first real DSB images of each (height, width, colour) kind, as many as asked."""
    found: dict[tuple[int, int, bool], list[str]] = {k: [] for k in kinds}
    for path in sorted((DSB / "images").iterdir()):
        with Image.open(path) as im:
            h, w = im.height, im.width
            if not any(k[:2] == (h, w) and len(found[k]) < n for k, n in kinds.items()):
                continue
            rgb = np.asarray(im)[..., :3]
        key = (h, w, bool((rgb != rgb[..., :1]).any()))
        if key in found and len(found[key]) < kinds[key]:
            found[key].append(path.stem)
        if all(len(found[k]) == n for k, n in kinds.items()):
            break
    return [name for names in found.values() for name in names]


@needs_dsb
def test_dsb_folder_reads_rgba_as_rgb_keeps_16_bit_labels_and_normalises_each_image(tmp_path: Path) -> None:
    root = copy_dsb(tmp_path, [COLOUR, GREY, CROWDED])
    dataset = data.load_data(root)
    assert dataset.instance_task and dataset.channels == 3
    by_name = {s.name: s for s in dataset.samples}
    rgba = np.asarray(Image.open(DSB / "images" / f"{COLOUR}.png"))
    assert rgba.shape[-1] == 4 and by_name[COLOUR].image.shape == (3, *rgba.shape[:2])
    rgb = rgba[..., :3].astype(np.float64)
    lo, hi = np.percentile(rgb, 1), np.percentile(rgb, 99.8)
    normalised = np.moveaxis((rgb - lo) / (hi - lo), -1, 0)
    assert np.median(normalised) > 0.5, "H&E: dark nuclei on a bright background"
    assert np.allclose(by_name[COLOUR].image, 1 - normalised, atol=0.02), "inverted: nuclei bright, as in fluorescence"
    grey = by_name[GREY].image
    assert np.median(grey) < 0.5 and grey.max() > 0.9, "fluorescence is kept as it is"
    predicted_input = data.read_model_input(DSB / "images" / f"{COLOUR}.png", 3, instance=True)
    assert np.array_equal(predicted_input, by_name[COLOUR].image), "predict sees what training saw"
    assert np.array_equal(grey[0], grey[1]) and np.array_equal(grey[1], grey[2]), "a grey image is replicated"
    truth = np.asarray(Image.open(DSB / "labels" / f"{CROWDED}.png")).astype(np.int64)
    assert truth.max() == 313 and np.array_equal(by_name[CROWDED].instances, truth), "16-bit labels intact"
    assert (by_name[COLOUR].kind, by_name[GREY].kind) == ("320x256 colour", "256x256 grey")
    grey_only = data.load_data(copy_dsb(tmp_path / "grey", [GREY]))
    assert grey_only.channels == 1 and grey_only.samples[0].image.shape == (256, 256)


def test_stratified_split_puts_every_kind_in_train_validation_and_test() -> None:
    counts = {"256x256 grey": 287, "320x256 colour": 85, "360x360 grey": 79, "696x520 grey": 75,
              "1024x1024 grey": 13, "640x512 grey": 12, "1272x603 grey": 6, "347x260 grey": 3,
              "320x256 grey": 3, "1388x1040 grey": 1}  # fmt: skip  # the DSB 2018 set's kinds
    kinds = [kind for kind, n in counts.items() for _ in range(n)]
    val, test = data.stratified_split(kinds)
    assert (val, test) == data.stratified_split(kinds)
    train = sorted(set(range(len(kinds))) - set(val) - set(test))
    assert not set(val) & set(test)
    for kind, n in counts.items():
        present = [sum(kinds[i] == kind for i in split) > 0 for split in (train, val, test)]
        assert present == ([True, True, True] if n >= 3 else [True, False, False]), kind
    assert Counter(kinds[i] for i in test)["256x256 grey"] == round(287 * data.TEST_FRACTION)


def test_three_class_target_marks_the_pixels_between_two_touching_nuclei_as_boundary() -> None:
    instances = np.zeros((10, 12), np.int32)
    instances[2:8, 2:6], instances[2:8, 6:10] = 1, 2
    labels, weights = instance_target(instances, "three_class", w0=0.0, sigma=5.0)
    assert (labels[3:7, 5] == 2).all() and (labels[3:7, 6] == 2).all(), "both sides of the contact"
    assert (labels[3:7, 3:5] == 1).all() and (labels[3:7, 7:9] == 1).all()
    assert (labels[instances == 0] == 0).all() and (labels[2, 2:10] == 2).all()
    counts = np.bincount(labels.ravel(), minlength=3)
    expected = np.array([labels.size / (3 * counts[k]) for k in range(3)])[labels]
    assert np.allclose(weights, expected), "w0 = 0: the class weights alone"
    binary, binary_weights = instance_target(instances, "binary", w0=0.0, sigma=5.0)
    assert binary[4, 5] == 0 and binary[4, 6] == 0 and binary[4, 4] == 1, "a background line parts them"
    assert ndimage.label(binary)[1] == 2, "also where the contact meets the background"
    assert np.allclose(binary_weights, class_weights(binary, 2))
    spaced = np.pad(instances, 20)  # room for pixels far from both nuclei
    spaced_binary, bordered = instance_target(spaced, "binary", w0=10.0, sigma=5.0)
    plain = class_weights(spaced_binary, 2)
    gap, far = (24, 25), (0, 0)
    assert bordered[gap] > plain[gap] + 5, "the paper's border term between touching nuclei"
    assert bordered[far] == pytest.approx(plain[far], abs=1e-3) and (bordered >= plain).all()


def test_the_decodings_min_size_is_half_the_smallest_training_object_and_drops_specks(tmp_path: Path) -> None:
    """Specks are false positives at every IoU threshold; the size below which a decoded object
    is one comes from the training labels only (never the held-out ones), or from the user."""
    names = dsb_names({(256, 256, False): 3, (256, 320, True): 3})
    spec = data.DataSpec.parse(copy_dsb(tmp_path, names))
    job = TrainJob("unet-16", spec, TrainCfg())
    held_out = set(job.val_sections or ()) | set(job.test_sections)
    labels = [s.instances for i, s in enumerate(data.load_data(tmp_path).samples) if i not in held_out]
    smallest = min(int(np.bincount(a.ravel())[1:][np.bincount(a.ravel())[1:] > 0].min()) for a in labels)
    assert job.train.min_size == smallest // 2 > 0
    assert TrainJob("unet-16", spec, TrainCfg(min_size=0)).train.min_size == 0, "the user's choice stands"
    assert TrainJob.from_meta(job.to_meta(job.val_sections or ())).train.min_size == job.train.min_size
    probs = np.zeros((2, 40, 40), np.float32)
    probs[0] = 1
    probs[:, 5:15, 5:15] = [[[0.0]], [[1.0]]]  # a 100-pixel object
    probs[:, 30:32, 30:32] = [[[0.0]], [[1.0]]]  # a 4-pixel speck
    assert len(np.unique(decode_instances(probs))) == 3
    assert np.unique(decode_instances(probs, min_size=5)).tolist() == [0, 1]


@needs_dsb
def test_validation_chooses_the_decoding_threshold_that_parts_touching_nuclei() -> None:
    """A prediction that is a little less sure on the lines between touching nuclei merges them
    at 0.5; choosing the threshold on the scores parts them, and a fixed threshold is kept."""
    from bench.train import decode_and_score, with_chosen_decoding

    truth = np.asarray(Image.open(DSB / "labels" / f"{CROWDED}.png")).astype(np.int32)
    interior = instance_target(truth, "binary", 0.0, 1.0)[0] == 1
    foreground = np.select([interior, truth > 0], [0.65, 0.55], 0.1).astype(np.float32)
    probs = [np.stack([1 - foreground, foreground])]
    chosen, _ = decode_and_score(probs, [truth], TrainCfg(monitor="dsb_ap"))
    fixed, _ = decode_and_score(probs, [truth], TrainCfg(monitor="dsb_ap", decode_threshold=0.5))
    assert chosen["threshold_dsb_ap"] == 0.6 and fixed["threshold_dsb_ap"] == 0.5
    assert chosen["dsb_ap"] > 0.9 > fixed["dsb_ap"], (chosen["dsb_ap"], fixed["dsb_ap"])
    instance_cfg = TrainCfg(monitor="dsb_ap")
    assert with_chosen_decoding(instance_cfg, chosen).decode_threshold == 0.6
    assert with_chosen_decoding(instance_cfg, {}).decode_threshold == 0.5, "none recorded: never chosen on test"
    assert with_chosen_decoding(TrainCfg(monitor="dsb_ap", decode_threshold=0.4), chosen).decode_threshold == 0.4
    assert with_chosen_decoding(TrainCfg(), chosen) == TrainCfg(), "membrane jobs decode nothing"


@needs_dsb
def test_decoding_a_perfect_three_class_prediction_recovers_the_real_nuclei() -> None:
    from bench.instance_metrics import score_instances

    truth = np.asarray(Image.open(DSB / "labels" / f"{COLOUR}.png")).astype(np.int32)
    touching = (ndimage.grey_dilation(truth, size=3) != truth) & (truth > 0) & (ndimage.grey_erosion(truth, size=3) > 0)
    assert touching.sum() > 50, "the image has touching nuclei"
    decoded = decode_instances(target_probabilities(truth, "three_class"))
    assert score_instances(decoded, truth)["dsb_ap"] == pytest.approx(1.0)
    majority = [np.bincount(decoded[truth == t]).max() for t in range(1, truth.max() + 1)]
    assert sum(majority) / (truth > 0).sum() > 0.995, "each nucleus decoded whole, but for a stray boundary pixel"
    assert len(np.unique(decoded)) == len(np.unique(truth)) and (decoded[truth == 0] == 0).all()
    binary = decode_instances(target_probabilities(truth, "binary"))
    assert score_instances(binary, truth)["dsb_ap"] < 1.0, "the binary target loses the separating pixels"
    crowded = np.asarray(Image.open(DSB / "labels" / f"{CROWDED}.png")).astype(np.int32)
    scores = score_instances(decode_instances(target_probabilities(crowded, "three_class")), crowded)
    assert scores["dsb_ap"] > 0.99 and scores["recall_50"] == 1.0, "313 nuclei: a few boundary pixels go astray"


@pytest.mark.parametrize("size", [(100, 130), (37, 53), (131, 97)])
def test_valid_net_predicts_any_size_as_one_mirrored_tile_would(size: tuple[int, int]) -> None:
    config = resolve_config("unet-original").tiny()
    torch.manual_seed(0)
    model = config.build().eval()
    image = np.random.default_rng(0).random(size, dtype=np.float32)
    tiled = predict_tiled(model, image, config, tile=572)
    assert tiled.shape == (2, *size) and np.allclose(tiled.sum(axis=0), 1, atol=1e-5)
    plan = plan_for_image(config, 572, *size)
    assert plan.input_tile < 572 and plan.keep >= max(size), "a small image takes a small tile"
    border = (plan.input_tile - plan.output_tile) // 2
    padded = mirror_pad(image, border, plan.input_tile - border - size[0], plan.input_tile - border - size[1])
    with torch.no_grad():
        direct = model(torch.from_numpy(padded.copy())[None, None]).softmax(dim=1)[0].numpy()
    assert np.allclose(tiled, direct[:, : size[0], : size[1]], atol=1e-5)


@pytest.mark.parametrize("size", [(100, 130), (37, 53), (300, 211)])
def test_same_padded_net_predicts_any_size_with_three_channels(size: tuple[int, int]) -> None:
    config = resolve_config("unet-same", in_channels=3).tiny()
    model = config.build().eval()
    image = np.random.default_rng(1).random((3, *size), dtype=np.float32)
    small, large = (predict_tiled(model, image, config, tile=t) for t in (96, 572))
    assert small.shape == large.shape == (2, *size) and np.isfinite(small).all()
    assert np.allclose(small.sum(axis=0), 1, atol=1e-5)


@pytest.mark.parametrize("variant", ["unet-16", "resunet", "inception-unet", "smp-resnet18-unet"])
def test_every_family_builds_with_three_input_channels_through_overrides(variant: str) -> None:
    config = resolve_config(variant, in_channels=3, num_classes=3).tiny()
    size = config.valid_input_size(96)
    with torch.no_grad():
        out = config.build().eval()(torch.zeros(1, 3, size, size))
    assert out.shape[:2] == (1, 3)


@needs_dsb
def test_an_instance_job_takes_channels_classes_monitor_and_split_from_the_data(tmp_path: Path) -> None:
    names = dsb_names({(256, 256, False): 3, (256, 320, True): 3})
    job = TrainJob("unet-16", data.DataSpec.parse(copy_dsb(tmp_path, names)), TrainCfg(instance_target="three_class"))
    config = job.model_config()
    assert (config.in_channels, config.num_classes, job.train.monitor) == (3, 3, "dsb_ap")
    assert job.val_sections is not None and len(job.val_sections) == len(job.test_sections) == 2
    kinds = [s.kind for s in data.load_data(tmp_path).samples]
    for split in (job.val_sections, job.test_sections):
        assert {kinds[i] for i in split} == set(kinds)


@needs_dsb
def test_train_then_eval_print_the_same_dsb_scores(tmp_path: Path) -> None:
    root = copy_dsb(tmp_path / "dsb", dsb_names({(256, 256, False): 3, (256, 320, True): 3}))
    args = ["--variant", "unet-same", "--data", str(root), "--epochs", "1", "--set", "steps_per_epoch=2",
            "--set", "model.base_width=4", "--set", "model.depth=2", "--set", "tile=96",
            "--set", "instance_target=three_class", "-o", str(tmp_path / "run")]  # fmt: skip
    trained = run_cli("train", *args)
    assert trained.returncode == 0, trained.stderr
    held_out = next(line for line in trained.stdout.splitlines() if line.startswith("held-out"))
    assert "DSB AP" in held_out and "F1@0.5" in held_out
    evaluated = run_cli("eval", str(tmp_path / "run" / "best.pt"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert held_out.split(": ", 1)[1] == evaluated.stdout.strip()
    as_json = json.loads(run_cli("eval", str(tmp_path / "run" / "best.pt"), "--json").stdout)
    assert {"dsb_ap", "precision_50", "recall_50", "f1_50", "seg", "aji"} <= as_json.keys()
    chosen = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["best"]["threshold_dsb_ap"]
    assert as_json["threshold_dsb_ap"] == chosen, "test images are decoded at validation's threshold"
    assert f"(t={chosen:.1f})" in held_out
    predicted = run_cli("predict", str(tmp_path / "run" / "best.pt"), str(root / "images"), "-o", str(tmp_path / "p"))
    assert predicted.returncode == 0, predicted.stderr
    assert len(list((tmp_path / "p" / "probabilities").glob("*.tif"))) == 6, "colour and grey images alike"
    for label_path in sorted((root / "labels").iterdir()):
        decoded = np.asarray(Image.open(tmp_path / "p" / "instances" / label_path.name))
        assert decoded.dtype == np.uint16 and decoded.shape == np.asarray(Image.open(label_path)).shape
        assert set(np.unique(decoded)) | {0} == set(range(int(decoded.max()) + 1)), "ids numbered 1..N"
    scored = run_cli("score", "--instances", "--pred", str(tmp_path / "p" / "instances"), "--truth",
                     str(root / "labels"), "--json")  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    assert 0.0 <= json.loads(scored.stdout)["dsb_ap"] <= 1.0


@needs_dsb
def test_a_suite_on_instance_data_ranks_its_variants_by_dsb_ap(tmp_path: Path) -> None:
    """`unet-bench run` on DSB images: instance rows, a log line with DSB AP (it read V_rand and
    crashed), and a report ranked by DSB AP with F1 beside it."""
    root = copy_dsb(tmp_path / "dsb", dsb_names({(256, 256, False): 4, (256, 320, True): 3}))
    suite = tmp_path / "nuclei.toml"
    suite.write_text(f'[suite]\nname = "nuclei"\n[data]\nsource = "{root}"\n[train]\nepochs = 1\n'
                     'steps_per_epoch = 2\ntile = 96\nval_tile = 96\n[model]\nwidth_scale = 0.25\n'
                     '[variants]\nnames = ["unet-same"]\nseeds = 1\n')  # fmt: skip
    result = run_cli("run", str(suite), "-o", str(tmp_path / "out"), "--reports", str(tmp_path / "reports"))
    assert result.returncode == 0, result.stderr
    assert re.search(r"unet-same seed 0: DSB AP \d\.\d{4}, F1@0\.5 \d\.\d{4}", result.stderr), result.stderr
    report = (tmp_path / "reports" / "nuclei" / "report.md").read_text()
    assert "Ranked by mean DSB AP" in report and "F1@0.5" in report


def test_a_suite_sets_the_instance_target_and_the_weight_map(tmp_path: Path) -> None:
    from bench.suite import load_suite

    path = tmp_path / "weightmap.toml"
    path.write_text('[suite]\nname = "weightmap"\n[variants]\nnames = ["unet-16"]\n[data]\nsource = "dsb2018"\n'
                    '[train]\ninstance_target = "three_class"\nw0 = 0.0\nsigma = 3.0\n')  # fmt: skip
    train = load_suite(path).train
    assert (train.instance_target, train.w0, train.sigma) == ("three_class", 0.0, 3.0)
    path.write_text(path.read_text().replace('"three_class"', '"four_class"'))
    with pytest.raises(Exception, match="instance_target"):
        load_suite(path)


@needs_dsb
def test_suite_arms_compare_training_settings_on_one_network(tmp_path: Path) -> None:
    """[arms]: each arm trains the same variant with its own settings; rows, the model table and
    the deltas name the arms, and the first arm is the baseline a later `report` keeps."""
    root = copy_dsb(tmp_path / "dsb", dsb_names({(256, 256, False): 4, (256, 320, True): 3}))
    suite = tmp_path / "arms.toml"
    suite.write_text(f'[suite]\nname = "arms"\n[data]\nsource = "{root}"\n[train]\nepochs = 1\n'
                     'steps_per_epoch = 2\ntile = 96\nval_tile = 96\n[model]\nwidth_scale = 0.25\n'
                     '[variants]\nnames = ["unet-same"]\nseeds = 1\n[arms]\nweight-map = {}\n'
                     'no-weight-map = { w0 = 0.0 }\nthree-class = { instance_target = "three_class" }\n')  # fmt: skip
    result = run_cli("run", str(suite), "-o", str(tmp_path / "out"), "--reports", str(tmp_path / "reports"))
    assert result.returncode == 0, result.stderr
    run_dir = next((tmp_path / "out" / "arms").iterdir())
    frame = read_results(run_dir)
    assert set(frame["variant"]) == {"weight-map", "no-weight-map", "three-class"}
    evals = frame[(frame["stage"] == "eval") & (frame["metric"] == "dsb_ap")]
    assert evals["config_hash"].nunique() == 3, "each arm is a configuration of its own"
    configs = read_configs(run_dir)
    trained = {c["label"]: c for c in configs.values()}
    assert trained["no-weight-map"]["train_cfg"]["w0"] == 0.0 and trained["weight-map"]["train_cfg"]["w0"] == 10.0
    assert trained["three-class"]["overrides"]["num_classes"] == 3, "the arm's target sets the network's classes"
    report = (tmp_path / "reports" / "arms" / "report.md").read_text()
    assert "| weight-map | " in report and "w0=0.0 on unet-same" in report
    assert "Ablation deltas against weight-map" in report and "In words, against weight-map: no-weight-map " in report
    again = run_cli("report", str(run_dir), "-o", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert "Ablation deltas against weight-map" in (tmp_path / "again" / "report.md").read_text()
