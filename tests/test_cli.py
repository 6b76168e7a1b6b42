"""The ``unet-bench`` command as a user runs it (a real subprocess, exit codes and output)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.cli import main
from tests.conftest import REPO, run_cli, run_cli_many


def test_list_filters_by_pattern(capsys) -> None:
    assert main(["list", "unet-*"]) == 0  # test_catalog runs list --json
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("unet-original ") for line in lines)
    assert not any(line.startswith(("resunet", "smp-", "inception")) for line in lines)


def test_list_with_no_match_fails_and_says_so(capsys) -> None:
    assert main(["list", "nothing-like-this*"]) != 0
    assert "no variant matches" in capsys.readouterr().err


def test_train_then_eval_print_the_same_numbers(cli_trained, capsys) -> None:
    trained, out = cli_trained
    assert trained.returncode == 0, trained.stderr
    assert "epoch 2/2" in trained.stderr, "progress is shown on stderr"
    train_metrics = json.loads(trained.stdout)["metrics"]
    assert {"pixel_error", "v_rand", "v_info", "warping_error", "threshold_v_rand"} <= train_metrics.keys()
    evaluated = run_cli("eval", str(out / "best.pt"), "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads(evaluated.stdout) == train_metrics
    capsys.readouterr()
    assert main(["eval", str(out / "best.pt")]) == 0  # the plain form in-process: no second start-up
    assert f"V_rand {train_metrics['v_rand']:.4f}" in capsys.readouterr().out


def test_train_rejects_bad_settings_in_one_line() -> None:
    results = run_cli_many({
        "variant": ["train", "--variant", "unet-orignal", "--epochs", "1"],
        "key": ["train", "--variant", "unet-16", "--set", "lrr=0.1"],
        "epochs": ["train", "--variant", "unet-16", "--epochs", "0"],
    })  # fmt: skip
    result = results["variant"]
    assert result.returncode == 2 and "Did you mean 'unet-original'" in result.stderr
    assert "Traceback" not in result.stderr
    result = results["key"]
    assert result.returncode == 2 and "'lrr'" in result.stderr and "lr" in result.stderr
    result = results["epochs"]
    assert result.returncode == 2 and "epochs must be positive" in result.stderr


def test_a_bad_batch_or_a_huge_size_is_refused_by_the_parser(tmp_path: Path) -> None:
    """profile --batch -3 or 1e9, and sides past MAX_SIDE (profile --input, a --set tile)
    ended in a traceback from torch or int(); now argparse's own line (or one error line) and
    exit 2, before a model is built or a folder made."""
    from bench.config import MAX_SIDE

    out = tmp_path / "run"
    results = run_cli_many({
        "negative_batch": ["profile", "--variant", "unet-16", "--batch", "-3"],
        "float_batch": ["profile", "--variant", "unet-16", "--batch", "1e9"],
        "huge_input": ["profile", "--variant", "unet-16", "--input", "99999999999"],
        "huge_list_input": ["list", "--input", str(MAX_SIDE + 1)],
        "huge_predict_tile": ["predict", "x.pt", str(tmp_path), "-o", str(out), "--tile", str(MAX_SIDE + 1)],
        "huge_tile": ["train", "--variant", "unet-16", "--set", "tile=99999999999999999999999", "-o", str(out)],
    })  # fmt: skip
    expected = {
        "negative_batch": "argument --batch: must be positive, got -3",
        "float_batch": "argument --batch: expected a whole number, got '1e9'",
        "huge_input": f"argument --input: at most {MAX_SIDE} pixels, got 99999999999",
        "huge_list_input": f"argument --input: at most {MAX_SIDE} pixels, got {MAX_SIDE + 1}",
        "huge_predict_tile": f"argument --tile: at most {MAX_SIDE} pixels, got {MAX_SIDE + 1}",
        "huge_tile": f"unet-bench: error: tile must be positive and at most {MAX_SIDE} pixels, got 99999999999999999999999",
    }
    for case, line in expected.items():
        result = results[case]
        assert result.returncode == 2 and "Traceback" not in result.stderr, (case, result.stderr[-2000:])
        assert result.stderr.strip().splitlines()[-1].endswith(line), (case, result.stderr)
    assert not out.exists(), "nothing was written"
    assert main(["profile", "--variant", "unet-16", "--batch", "2", "--input", "92", "--max-seconds", "0.1"]) == 0


def test_score_folders_like_the_challenge(tmp_path) -> None:
    import numpy as np
    from PIL import Image
    from scipy import ndimage

    from tests.conftest import SHARED_DATA

    truth = SHARED_DATA / "isbi2012" / "train" / "labels"
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in ("00.png", "01.png"):
        mask = np.asarray(Image.open(truth / name)) > 0
        Image.fromarray((ndimage.binary_erosion(mask) * 255).astype(np.uint8)).save(pred / name)
    subset = tmp_path / "truth"
    subset.mkdir()
    for name in ("00.png", "01.png"):
        (subset / name).write_bytes((truth / name).read_bytes())
    results = run_cli_many({
        "scored": ["score", "--pred", str(pred), "--truth", str(subset), "--json"],
        "missing": ["score", "--pred", str(pred), "--truth", str(truth)],
    })  # fmt: skip
    result = results["scored"]
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert 0 < scores["pixel_error"] < 0.2 and 0.5 < scores["v_rand"] < 1.0
    missing = results["missing"]
    assert missing.returncode == 2 and "no prediction for ['02'" in missing.stderr


def test_score_instances_on_real_dsb_labels(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from bench.instance_metrics import score_instance_stack
    from tests.conftest import SHARED_DATA

    labels = sorted((SHARED_DATA / "dsb2018" / "train" / "labels").glob("*.png"))[:2]
    pred, truth = tmp_path / "pred", tmp_path / "truth"
    pred.mkdir()
    truth.mkdir()
    preds, truths = [], []
    for path in labels:
        true_labels = np.asarray(Image.open(path))
        shifted = np.roll(true_labels, 2, axis=1).astype(np.uint16) * 3  # ids 3, 6, ...: not consecutive
        (truth / path.name).write_bytes(path.read_bytes())
        Image.fromarray(shifted).save(pred / path.name)
        preds.append(shifted)
        truths.append(true_labels)
    result = run_cli("score", "--instances", "--pred", str(pred), "--truth", str(truth), "--json")
    assert result.returncode == 0, result.stderr
    expected = score_instance_stack(preds, truths)[0]
    assert json.loads(result.stdout) == expected and 0 < expected["dsb_ap"] < 1
    plain = run_cli("score", "--instances", "--pred", str(pred), "--truth", str(truth))
    assert f"DSB AP {expected['dsb_ap']:.4f}" in plain.stdout and "AJI" in plain.stdout
    Image.fromarray(np.zeros((4, 4), np.float32)).save(pred / "00.tif")  # a probability map is no label image
    (truth / "00.tif").write_bytes((pred / "00.tif").read_bytes())
    refused = run_cli("score", "--instances", "--pred", str(pred), "--truth", str(truth))
    assert refused.returncode == 2 and "not a label image" in refused.stderr


def test_data_fetch_verifies_checksums(tmp_path) -> None:
    from tests.conftest import SHARED_DATA

    source = SHARED_DATA / "isbi2012"
    fetched = run_cli("data", "fetch", "isbi2012", "--url", source.as_uri(), "--dest", str(tmp_path / "isbi"))
    assert fetched.returncode == 0, fetched.stderr
    assert "90 fetched" in fetched.stdout
    assert (tmp_path / "isbi" / "train" / "labels" / "29.png").read_bytes() == (source / "train/labels/29.png").read_bytes()
    again = run_cli("data", "fetch", "isbi2012", "--url", source.as_uri(), "--dest", str(tmp_path / "isbi"))
    assert "0 fetched, 90 already present" in again.stdout

    tampered = tmp_path / "mirror"
    for path in source.rglob("*.png"):
        target = tampered / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    (tampered / "train/images/03.png").write_bytes(b"tampered")
    bad = run_cli("data", "fetch", "isbi2012", "--url", tampered.as_uri(), "--dest", str(tmp_path / "other"))
    assert bad.returncode == 2 and "SHA-256 mismatch for train/images/03.png" in bad.stderr
    assert not (tmp_path / "other" / "train/images/03.png").exists()


def test_run_writes_under_the_output_root_unless_asked_for_the_reference() -> None:
    """README command 1 (`unet-bench run quick`) must not touch the committed results/ and reports/."""
    from bench.cli import build_parser, run_roots

    parser = build_parser()
    assert run_roots(parser.parse_args(["run", "quick"])) == (Path("unetbench-out/results"), Path("unetbench-out/reports"))
    assert run_roots(parser.parse_args(["run", "quick", "--out", "/tmp/x"])) == (Path("/tmp/x/results"), Path("/tmp/x/reports"))
    assert run_roots(parser.parse_args(["run", "quick", "--reference"])) == (Path("results"), Path("reports"))
    assert run_roots(parser.parse_args(["run", "quick", "-o", "r", "--reports", "p"])) == (Path("r"), Path("p"))


def test_an_out_root_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    from tests.conftest import assert_user_error

    blocker = tmp_path / "afile"
    blocker.write_text("the user's")
    result = run_cli("report", str(REPO / "tests" / "data" / "golden"), "--out", str(blocker / "sub"))
    assert_user_error(result, "is a file, not a folder")
    assert blocker.read_text() == "the user's" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_model_too_large_for_this_machine_is_one_line_not_a_bug_report(tmp_path: Path) -> None:
    """100 billion filters cannot be allocated: the user's to shrink, so one line and exit 2."""
    result = run_cli("train", "--variant", "unet-16", "--set", "model.base_width=99999999999",
                     "-o", str(tmp_path / "run"), "--epochs", "1")  # fmt: skip
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    error = result.stderr.strip().splitlines()[-1]  # after train's 'recipe: ...' line
    assert error.startswith("unet-bench: error: out of memory (") and "can't allocate memory" in error
    assert error.endswith("lower the width, batch or tile")
    assert not any(p.is_file() for p in tmp_path.rglob("*")), "nothing written"
