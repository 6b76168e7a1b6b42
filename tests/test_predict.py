"""`unet-bench predict`: a folder of new images in, probability maps and masks out, and never a
file of the user's replaced."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from tests.conftest import SHARED_DATA, assert_user_error, run_cli

SIZES = {"a": (70, 90), "b": (96, 96), "c": (120, 64)}  # stem -> (height, width), unlike the training tile


@pytest.fixture(scope="module")
def checkpoint(cli_trained: tuple[subprocess.CompletedProcess[str], Path]) -> Path:
    """The best.pt of the one tiny `unet-bench train` the tests share (conftest.cli_trained),
    trained in a user's folder with no -o: it lands in the one output root and nowhere else."""
    trained, out = cli_trained
    assert trained.returncode == 0, trained.stderr
    user = out.parents[2]
    assert json.loads(trained.stdout)["checkpoint"] == str(Path("unetbench-out/checkpoints/train-unet-original/best.pt"))
    assert sorted(p.name for p in user.iterdir()) == ["unetbench-out"], "nothing written beside the output root"
    return out / "best.pt"


def image_folder(root: Path) -> Path:
    """Three images of different sizes and formats: 8-bit PNG, 16-bit PNG, float TIFF."""
    rng = np.random.default_rng(0)
    folder = root / "images"
    folder.mkdir()
    Image.fromarray(rng.integers(0, 256, SIZES["a"], dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 65536, SIZES["b"], dtype=np.uint16)).save(folder / "b.png")
    tifffile.imwrite(folder / "c.tif", rng.random(SIZES["c"], dtype=np.float32))
    (folder / "notes.txt").write_text("not an image: ignored")
    return folder


def test_predict_writes_a_map_and_a_mask_per_image(tmp_path: Path, checkpoint: Path) -> None:
    images, out = image_folder(tmp_path), tmp_path / "out"
    result = run_cli("predict", str(checkpoint), str(images), "-o", str(out), "--threshold", "0.5")
    assert result.returncode == 0, result.stderr
    assert "3 probability maps" in result.stdout and "3 masks" in result.stdout
    assert sorted(p.name for p in (out / "probabilities").iterdir()) == ["a.tif", "b.tif", "c.tif"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["a.png", "b.png", "c.png"]
    for stem, shape in SIZES.items():
        probability = tifffile.imread(out / "probabilities" / f"{stem}.tif")
        mask = np.asarray(Image.open(out / "masks" / f"{stem}.png"))
        assert probability.shape == mask.shape == shape and probability.dtype == np.float32
        assert 0.0 <= probability.min() and probability.max() <= 1.0
        assert set(np.unique(mask).tolist()) <= {0, 255}
        np.testing.assert_array_equal(mask == 255, probability > 0.5)
    again = run_cli("predict", str(checkpoint), str(images), "-o", str(out))  # its own files: replaced
    assert again.returncode == 0, again.stderr


def test_predict_refuses_a_folder_with_the_users_files_and_bad_input(tmp_path: Path, checkpoint: Path) -> None:
    images, out = image_folder(tmp_path), tmp_path / "out"
    (out / "masks").mkdir(parents=True)
    (out / "masks" / "a.png").write_bytes(b"the user's own")
    refused = run_cli("predict", str(checkpoint), str(images), "-o", str(out))
    assert_user_error(refused, "masks/a.png: not written by unet-bench", "choose another output folder (-o)")
    assert (out / "masks" / "a.png").read_bytes() == b"the user's own"
    assert sorted(p.name for p in out.rglob("*")) == ["a.png", "masks"], "nothing was written"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert_user_error(run_cli("predict", str(checkpoint), str(empty), "-o", str(tmp_path / "o1")), "no PNG or TIFF")
    (images / "broken.png").write_bytes(b"not a png")
    broken = run_cli("predict", str(checkpoint), str(images), "-o", str(tmp_path / "o2"))
    assert_user_error(broken, "broken.png: cannot read image")
    assert not (tmp_path / "o2").exists(), "a bad image fails before anything is written"
    not_checkpoint = run_cli("predict", str(images / "a.png"), str(images), "-o", str(tmp_path / "o3"))
    assert_user_error(not_checkpoint, "a.png: refused to load")


def test_predict_segments_the_isbi_test_sections(tmp_path: Path, checkpoint: Path) -> None:
    """The issue's case: the 30 unlabelled ISBI 2012 test sections, one map and one mask each."""
    images = SHARED_DATA / "isbi2012" / "test" / "images"
    result = run_cli("predict", str(checkpoint), str(images), "-o", str(tmp_path / "isbi"))
    assert result.returncode == 0, result.stderr
    maps = sorted((tmp_path / "isbi" / "probabilities").glob("*.tif"))
    masks = sorted((tmp_path / "isbi" / "masks").glob("*.png"))
    assert len(maps) == len(masks) == 30 == len(list(images.iterdir()))
    assert tifffile.imread(maps[0]).shape == np.asarray(Image.open(masks[0])).shape == (512, 512)
