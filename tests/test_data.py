"""Data readers on real ISBI files and on small files written in each layout; errors name files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bench import data
from tests.conftest import SHARED_DATA

ISBI = SHARED_DATA / "isbi2012" / "train"


def test_isbi_folder_loads_30_binary_sections() -> None:
    ds = data.load_data(ISBI)
    assert len(ds) == 30 and ds.samples[0].image.shape == (512, 512)
    assert ds.samples[0].image.dtype == np.float32 and 0 <= ds.samples[0].image.min() < ds.samples[0].image.max() <= 1
    membrane = np.mean([1 - s.mask.mean() for s in ds.samples])
    assert membrane == pytest.approx(0.2196, abs=1e-3)  # the README's figure


def test_synthetic_data_is_seeded_and_em_like() -> None:
    a, b, c = data.synthetic_em(2, 128, seed=3), data.synthetic_em(2, 128, seed=3), data.synthetic_em(2, 128, seed=4)
    assert np.array_equal(a.samples[0].image, b.samples[0].image)
    assert not np.array_equal(a.samples[0].image, c.samples[0].image)
    s = a.samples[0]
    assert set(np.unique(s.mask).tolist()) == {0, 1} and 0.6 < s.mask.mean() < 0.95
    assert s.image[s.mask == 0].mean() < s.image[s.mask == 1].mean() - 0.2, "membranes must be darker"


def write_folder(root: Path, n: int = 3, size: int = 32) -> None:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(root / "images" / f"{i:02d}.png")
        Image.fromarray((rng.random((size, size)) > 0.3).astype(np.uint8) * 255).save(root / "labels" / f"{i:02d}.png")


def test_tiff_stacks_like_the_challenge(tmp_path: Path) -> None:
    ds = data.load_folder(ISBI)
    tifffile.imwrite(
        tmp_path / "train-volume.tif",
        np.stack([(s.image * 255).astype(np.uint8) for s in ds.samples[:3]]),
        photometric="minisblack",
    )
    tifffile.imwrite(tmp_path / "train-labels.tif", np.stack([s.mask * 255 for s in ds.samples[:3]]), photometric="minisblack")
    stacked = data.load_data(tmp_path)
    assert len(stacked) == 3
    assert np.array_equal(stacked.samples[2].mask, ds.samples[2].mask)
    assert np.allclose(stacked.samples[2].image, ds.samples[2].image, atol=1 / 255)


def test_cell_tracking_challenge_layout(tmp_path: Path) -> None:
    (tmp_path / "01").mkdir()
    (tmp_path / "01_GT" / "SEG").mkdir(parents=True)
    instances = np.zeros((40, 40), dtype=np.uint16)
    instances[5:20, 5:20] = 1
    instances[5:20, 20:35] = 2  # touching cell 1
    for t in (0, 3):
        tifffile.imwrite(tmp_path / "01" / f"t{t:03d}.tif", (instances * 100).astype(np.uint16))
        tifffile.imwrite(tmp_path / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", instances)
    tifffile.imwrite(tmp_path / "01" / "t001.tif", np.zeros((40, 40), np.uint16))  # no GT: not a sample
    ds = data.load_data(tmp_path)
    assert [s.name for s in ds.samples] == ["t000", "t003"]
    sample = ds.samples[0]
    assert np.array_equal(sample.instances, instances)
    assert sample.mask[10, 19] == 0 or sample.mask[10, 20] == 0, "touching cells need a boundary between them"
    assert sample.mask[10, 10] == 1 and sample.mask[0, 0] == 0


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / "images" / "01.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(data.DataError, match=r"images/01\.png: cannot read image"):
        data.load_data(tmp_path)


def test_label_of_another_size_names_the_file(tmp_path: Path) -> None:
    write_folder(tmp_path)
    Image.fromarray(np.zeros((16, 32), np.uint8)).save(tmp_path / "labels" / "02.png")
    with pytest.raises(data.DataError, match=r"labels/02\.png: label is 32x16 but 02\.png is 32x32"):
        data.load_data(tmp_path)


def test_non_binary_label_names_the_file_and_values(tmp_path: Path) -> None:
    write_folder(tmp_path)
    Image.fromarray(np.full((32, 32), 128, np.uint8)).save(tmp_path / "labels" / "00.png")
    with pytest.raises(data.DataError, match=r"labels/00\.png: label is not binary \(values 128\)"):
        data.load_data(tmp_path)


def test_mismatched_names_and_empty_folders(tmp_path: Path) -> None:
    write_folder(tmp_path)
    shutil.move(tmp_path / "labels" / "01.png", tmp_path / "labels" / "07.png")
    with pytest.raises(data.DataError, match=r"no label for \['01'\], no image for \['07'\]"):
        data.load_data(tmp_path)
    with pytest.raises(data.DataError, match="no such data folder"):
        data.load_data(tmp_path / "missing")


def test_sixteen_bit_and_rgb_images_are_converted(tmp_path: Path) -> None:
    write_folder(tmp_path, n=2)
    tifffile.imwrite(tmp_path / "images" / "00.tif", np.full((32, 32), 65535, np.uint16))
    (tmp_path / "images" / "00.png").unlink()
    Image.fromarray(np.full((32, 32, 3), 255, np.uint8)).save(tmp_path / "images" / "01.png")
    ds = data.load_data(tmp_path)
    assert ds.samples[0].image.max() == 1.0 and ds.samples[1].image.max() == 1.0


def test_splits() -> None:
    assert data.parse_indices("25-29") == [25, 26, 27, 28, 29]
    assert data.parse_indices("0,3,5-6") == [0, 3, 5, 6]
    with pytest.raises(data.DataError, match="cannot read section list"):
        data.parse_indices("a-b")
    ds = data.synthetic_em(6, 32)
    train, val = data.split_by_index(ds, [4, 5])
    assert [s.name for s in val.samples] == ["synthetic-004", "synthetic-005"] and len(train) == 4
    with pytest.raises(data.DataError, match="outside 0..5"):
        data.split_by_index(ds, [9])
    folds = [data.kfold_indices(10, 3, f) for f in range(3)]
    assert sorted(sum(folds, [])) == list(range(10)) and folds[0] == [0, 1, 2]


def test_nan_images_are_refused_and_constant_images_kept(tmp_path: Path) -> None:
    write_folder(tmp_path, n=2)
    bad = np.full((32, 32), 0.5, np.float32)
    bad[3, 3] = np.nan
    tifffile.imwrite(tmp_path / "images" / "00.tif", bad)
    (tmp_path / "images" / "00.png").unlink()
    with pytest.raises(data.DataError, match=r"images/00\.tif: image holds NaN or infinite values"):
        data.load_data(tmp_path)
    tifffile.imwrite(tmp_path / "images" / "00.tif", np.full((32, 32), 7.0, np.float32))
    constant = data.load_data(tmp_path).samples[0].image
    assert constant.shape == (32, 32) and np.all(constant == 0)
