"""Bad data through the real command (`unet-bench data check`, which reads a data set exactly
as training does): each problem is one line naming the file and the problem, exit 2; images
that can be converted (16-bit, RGB, constant) are accepted."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import SHARED_DATA, assert_user_error, run_cli, run_cli_many
from tests.test_data import write_folder


def corrupt_png(root: Path) -> tuple[Path, str]:
    path = root / "images" / "01.png"
    path.write_bytes(path.read_bytes()[:40])  # header only: a download cut short
    return path, "cannot read image"


def corrupt_tiff(root: Path) -> tuple[Path, str]:
    (root / "images" / "01.png").unlink()
    path = root / "images" / "01.tif"
    path.write_bytes(b"II*\x00" + b"\xff" * 60)  # a TIFF header pointing nowhere
    return path, "cannot read image"


def label_of_another_size(root: Path) -> tuple[Path, str]:
    path = root / "labels" / "02.png"
    Image.fromarray(np.full((16, 32), 255, np.uint8)).save(path)
    return path, "label is 32x16 but 02.png is 32x32"


def non_binary_label(root: Path) -> tuple[Path, str]:
    path = root / "labels" / "00.png"
    Image.fromarray(np.tile(np.array([0, 128, 255], np.uint8), (32, 11))[:, :32]).save(path)
    return path, "label is not binary (values 0, 128, 255)"


def nan_image(root: Path) -> tuple[Path, str]:
    (root / "images" / "01.png").unlink()
    path = root / "images" / "01.tif"
    image = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    image[3, 4] = np.nan
    tifffile.imwrite(path, image)
    return path, "image holds NaN or infinite values"


def complex_image(root: Path) -> tuple[Path, str]:
    (root / "images" / "01.png").unlink()
    path = root / "images" / "01.tif"
    tifffile.imwrite(path, np.full((32, 32), 1 + 2j, np.complex64))
    return path, "pixels of type complex64 are not intensities"


def image_past_float32(root: Path) -> tuple[Path, str]:
    (root / "images" / "01.png").unlink()
    path = root / "images" / "01.tif"
    tifffile.imwrite(path, np.full((32, 32), 1e300))
    return path, "pixel values up to 1e+300 are past float32's range"


def mismatched_names(root: Path) -> tuple[Path, str]:
    (root / "labels" / "01.png").rename(root / "labels" / "07.png")
    return root, "no label for ['01'], no image for ['07']"


def empty_folder(root: Path) -> tuple[Path, str]:
    for path in [*root.glob("images/*"), *root.glob("labels/*")]:
        path.unlink()
    return root / "images", "no PNG or TIFF images"


CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    f.__name__: f
    for f in (
        corrupt_png,
        corrupt_tiff,
        label_of_another_size,
        non_binary_label,
        nan_image,
        complex_image,
        image_past_float32,
        mismatched_names,
        empty_folder,
    )
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str, subprocess.CompletedProcess[str]]]:
    """Each damaged folder through `unet-bench data check`, side by side: case -> (file the
    error must name, the problem, result)."""
    root = tmp_path_factory.mktemp("damaged")
    made = {}
    for case, damage in CASES.items():
        write_folder(root / case)
        made[case] = damage(root / case)
    results = run_cli_many({case: ["data", "check", str(root / case)] for case in CASES})
    return {case: (*made[case], results[case]) for case in CASES}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_names_the_file_and_the_problem(checked, case: str) -> None:
    named, problem, result = checked[case]
    assert_user_error(result, str(named), problem)


def test_a_missing_folder_says_what_to_use_instead(tmp_path: Path) -> None:
    assert_user_error(run_cli("data", "check", str(tmp_path / "nowhere")), "no such data folder", "'synthetic'")


def test_16_bit_rgb_and_constant_images_are_converted_not_refused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root)
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 65535, (32, 32), dtype=np.uint16)).save(root / "images" / "00.png")
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), mode="RGB").save(root / "images" / "01.png")
    Image.fromarray(np.full((32, 32), 77, np.uint8)).save(root / "images" / "02.png")
    result = run_cli("data", "check", str(root))
    assert result.returncode == 0, result.stderr
    assert "3 images (32x32), binary labels" in result.stdout


@pytest.mark.parametrize(
    ("values", "scale"),
    [(np.array([[0, 4095]], np.uint16), 4095), (np.array([[0, 200]], np.uint16), 255),
     (np.array([[3, 65535]], np.uint16), 65535), (np.array([[0, 1000]], np.int16), 1023)],
)  # fmt: skip
def test_an_integer_image_is_read_by_the_bits_it_uses(values: np.ndarray, scale: int) -> None:
    """A 12-bit camera image in a 16-bit file spans [0, 1] (it was read as [0, 0.06]); 8-bit
    data saved as 16 bits reads as 8-bit; signed images without negative values are accepted."""
    from bench.data import to_unit_float

    assert to_unit_float(values, "x.png").tolist() == (values / scale).astype(np.float32).tolist()


def test_a_signed_image_with_negative_values_is_one_line_not_clipped(tmp_path: Path) -> None:
    root = tmp_path / "data"
    write_folder(root)
    tifffile.imwrite(root / "images" / "00.tif", np.array([[-512, 3000]] * 32 * 16, np.int16).reshape(32, 32))
    (root / "images" / "00.png").unlink()
    result = run_cli("data", "check", str(root))
    assert_user_error(result, "00.tif: image holds negative values (int16, -512 to 3000)", "convert it")


ISBI_LABELS = SHARED_DATA / "isbi2012" / "train" / "labels"


@pytest.mark.skipif(not ISBI_LABELS.is_dir(), reason="ISBI 2012 not in ../shared/data")
def test_score_reads_what_the_values_say_and_refuses_logits(tmp_path: Path) -> None:
    """Masks stored as 0/1 are masks (they once scored the exact truth as pixel error 0.78,
    V_rand 0); float maps outside [0, 1] are refused in one line instead of rescaled."""
    truth = (np.asarray(Image.open(ISBI_LABELS / "00.png")) > 127).astype(np.uint8)
    for folder, values in {"truth": truth, "zero-one": truth, "zero-255": truth * 255}.items():
        (tmp_path / folder).mkdir()
        Image.fromarray(values).save(tmp_path / folder / "00.png")
    for folder in ("zero-one", "zero-255"):
        result = run_cli("score", "--pred", str(tmp_path / folder), "--truth", str(tmp_path / "truth"), "--json")
        assert result.returncode == 0, result.stderr
        scores = json.loads(result.stdout)
        assert (scores["pixel_error"], scores["v_rand"], scores["iou"]) == (0.0, 1.0, 1.0), (folder, scores)
    # a 16-bit map of low probabilities (200 / 65535) is no interior anywhere: once read as 8-bit
    # data (200 / 255 = 0.78), it scored as all interior
    (tmp_path / "low-16-bit").mkdir()
    Image.fromarray(np.full(truth.shape, 200, np.uint16)).save(tmp_path / "low-16-bit" / "00.png")
    low = run_cli("score", "--pred", str(tmp_path / "low-16-bit"), "--truth", str(tmp_path / "truth"), "--json")
    assert json.loads(low.stdout)["pixel_error"] == pytest.approx(float(truth.mean()), abs=1e-6), low.stderr
    (tmp_path / "logits").mkdir()
    tifffile.imwrite(tmp_path / "logits" / "00.tif", (truth.astype(np.float32) - 0.5) * 8)
    result = run_cli("score", "--pred", str(tmp_path / "logits"), "--truth", str(tmp_path / "truth"))
    assert_user_error(result, "00.tif", "from -4 to 4", "[0, 1]")


def test_score_names_labels_without_interior_where_v_rand_means_nothing(tmp_path: Path) -> None:
    for folder, value in {"truth": 0, "pred": 255}.items():
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((32, 32), value, np.uint8)).save(tmp_path / folder / "00.png")
    result = run_cli("score", "--pred", str(tmp_path / "pred"), "--truth", str(tmp_path / "truth"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["pixel_error"] == 1.0
    assert "1 of 1 labels have no interior pixel (00.png)" in result.stderr and "V_rand" in result.stderr
