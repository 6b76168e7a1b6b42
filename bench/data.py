"""Data sets behind one interface: a list of (image, mask, optional instances) samples.

Sources: a seeded synthetic EM-like default (nothing downloaded), an ``images/`` + ``labels/``
folder (PNG or TIFF, as ../shared/data/isbi2012/train), the challenge's multi-page TIFF stacks,
and the Cell Tracking Challenge 2D layout. Every reader checks what it reads and names the file
when something is wrong: a corrupt image, a label of another size, a non-binary label.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from bench.errors import UserError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


class DataError(UserError):
    """A data problem a user can fix; the message names the file."""


@dataclass
class Sample:
    """One image: ``image`` float32 in [0, 1]; ``mask`` uint8, 1 = interior, 0 = membrane."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray | None = None


@dataclass
class Dataset:
    """Samples plus where they came from (recorded with every result)."""

    name: str
    samples: list[Sample]
    source: str
    meta: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: Sequence[int], suffix: str) -> Dataset:
        return Dataset(f"{self.name}:{suffix}", [self.samples[i] for i in indices], self.source, dict(self.meta))


# --- reading files ----------------------------------------------------------------------------


@contextlib.contextmanager
def _tifffile_complaints() -> Iterator[list[str]]:
    """Collect what tifffile logs about a damaged file instead of letting it reach the user's
    terminal as a stray line; the caller puts it into its one error message."""
    logger = logging.getLogger("tifffile")
    complaints: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            complaints.append(record.getMessage().splitlines()[0])

    handler, propagate = Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield complaints
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def read_image(path: Path) -> np.ndarray:
    """A 2D array from a PNG or single-page TIFF; RGB is converted to grey. Names the file on error."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            with _tifffile_complaints() as complaints:
                import tifffile

                array = tifffile.imread(path)
            if array.size == 0:  # tifffile logs a damaged file and returns nothing
                raise ValueError("; ".join(complaints) or "no pixel data")
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                array = np.asarray(im.convert("L") if im.mode in ("RGB", "RGBA", "P", "LA") else im)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt or unreadable file
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3].mean(axis=-1)
    if array.ndim != 2:
        raise DataError(f"{path}: expected a 2D greyscale image, got shape {array.shape}")
    return array


def to_unit_float(array: np.ndarray, path: Path | str) -> np.ndarray:
    """Scale 8-bit, 16-bit or float images to float32 in [0, 1]; refuse NaN and infinities."""
    if np.issubdtype(array.dtype, np.integer):
        top = np.iinfo(array.dtype).max if array.max(initial=0) > 255 else 255
        return (array.astype(np.float32) / top).clip(0, 1)
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise DataError(f"{path}: image holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if 0.0 <= low and high <= 1.0:
        return array
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def binary_mask(label: np.ndarray, path: Path | str) -> np.ndarray:
    """A {0, 1} mask from a label with two values: 0 = membrane, the other (255 or 1) = interior."""
    values = np.unique(label)
    if not (set(values.tolist()) <= {0, 255} or set(values.tolist()) <= {0, 1}):
        shown = ", ".join(str(v) for v in values[:6]) + (" ..." if values.size > 6 else "")
        raise DataError(
            f"{path}: label is not binary (values {shown}); expected 0 = membrane and 255 (or 1) = interior"
        )
    return (label > 0).astype(np.uint8)


def make_sample(name: str, image: np.ndarray, label: np.ndarray, image_path: Path, label_path: Path) -> Sample:
    if image.shape != label.shape:
        raise DataError(
            f"{label_path}: label is {label.shape[1]}x{label.shape[0]} but {image_path.name} is {image.shape[1]}x{image.shape[0]}"
        )
    return Sample(name, to_unit_float(image, image_path), binary_mask(label, label_path))


# --- sources -----------------------------------------------------------------------------------


def load_folder(root: Path) -> Dataset:
    """``root/images/*`` with ``root/labels/*`` of the same names, or ``train-volume.tif`` +
    ``train-labels.tif`` (the challenge's stacks, one section per page)."""
    root = Path(root)
    if (root / "train-volume.tif").exists():
        return load_tiff_stacks(root / "train-volume.tif", root / "train-labels.tif")
    images_dir, labels_dir = root / "images", root / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise DataError(f"{root}: expected images/ and labels/ folders (or train-volume.tif + train-labels.tif)")
    images = {p.stem: p for p in sorted(images_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    labels = {p.stem: p for p in sorted(labels_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    if not images:
        raise DataError(f"{images_dir}: no PNG or TIFF images")
    if images.keys() != labels.keys():
        missing = sorted(images.keys() - labels.keys())[:5]
        extra = sorted(labels.keys() - images.keys())[:5]
        raise DataError(
            f"{root}: images/ and labels/ do not match: no label for {missing or 'none'}, no image for {extra or 'none'}"
        )
    samples = [
        make_sample(stem, read_image(images[stem]), read_image(labels[stem]), images[stem], labels[stem])
        for stem in sorted(images)
    ]
    return Dataset(root.name, samples, str(root))


def load_tiff_stacks(volume: Path, labels: Path) -> Dataset:
    """The ISBI challenge's multi-page TIFFs: page i of the labels belongs to page i of the volume."""
    import tifffile

    try:
        images, masks = tifffile.imread(volume), tifffile.imread(labels)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt or unreadable file
        raise DataError(f"{volume.parent}: cannot read the TIFF stacks ({exc})") from None
    if images.shape != masks.shape:
        raise DataError(f"{labels}: shape {masks.shape} differs from {volume.name} {images.shape}")
    samples = [
        Sample(f"{i:02d}", to_unit_float(images[i], f"{volume}[{i}]"), binary_mask(masks[i], f"{labels}[{i}]"))
        for i in range(images.shape[0])
    ]
    return Dataset(volume.parent.name, samples, str(volume.parent))


def instances_to_mask(instances: np.ndarray) -> np.ndarray:
    """Interior mask of an instance image with a one-pixel boundary between touching objects."""
    grown = ndimage.grey_dilation(instances, size=(3, 3))
    shrunk = -ndimage.grey_dilation(-instances, size=(3, 3))
    touching = (grown != shrunk) & (instances > 0) & (shrunk > 0)
    return ((instances > 0) & ~touching).astype(np.uint8)


def load_ctc(root: Path, sequence: str = "01") -> Dataset:
    """Cell Tracking Challenge 2D: ``01/t000.tif`` images, ``01_GT/SEG/man_seg000.tif`` instances.

    Only frames with a segmentation ground truth are samples.
    """
    root = Path(root)
    seg_dir = root / f"{sequence}_GT" / "SEG"
    if not seg_dir.is_dir():
        raise DataError(f"{root}: no {sequence}_GT/SEG folder (Cell Tracking Challenge layout)")
    samples = []
    for seg_path in sorted(seg_dir.glob("man_seg*.tif")):
        frame = re.sub(r"^man_seg", "", seg_path.stem)
        image_path = root / sequence / f"t{frame}.tif"
        if not image_path.exists():
            raise DataError(f"{seg_path}: no matching image {image_path}")
        image, instances = read_image(image_path), read_image(seg_path).astype(np.int32)
        if image.shape != instances.shape:
            raise DataError(f"{seg_path}: shape {instances.shape} differs from {image_path.name} {image.shape}")
        samples.append(Sample(f"t{frame}", to_unit_float(image, image_path), instances_to_mask(instances), instances))
    if not samples:
        raise DataError(f"{seg_dir}: no man_seg*.tif files")
    return Dataset(f"{root.name}-{sequence}", samples, str(root))


def synthetic_em(count: int = 12, size: int = 256, seed: int = 0, cell_spacing: float = 24.0) -> Dataset:
    """EM-like images made on the spot: Voronoi cells with dark membranes, texture, blur, noise.

    Membrane thickness, cell size and contrast vary between images, like serial sections.
    """
    rng = np.random.default_rng(seed)
    samples = []
    for index in range(count):
        n_cells = max(2, int(rng.poisson((size / cell_spacing) ** 2)))
        seeds = np.zeros((size, size), dtype=np.int32)
        ys, xs = rng.integers(0, size, n_cells), rng.integers(0, size, n_cells)
        seeds[ys, xs] = np.arange(1, n_cells + 1)
        # every pixel takes the label of its nearest seed (a Voronoi tessellation) ...
        _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        cells = seeds[iy, ix]
        # ... and pixels next to another cell form the membrane, 1-3 px thick
        thickness = int(rng.integers(1, 4))
        grown = ndimage.grey_dilation(cells, size=(thickness + 1, thickness + 1))
        shrunk = -ndimage.grey_dilation(-cells, size=(thickness + 1, thickness + 1))
        mask = (grown == shrunk).astype(np.uint8)

        texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 2.0)
        interior_tone = rng.uniform(0.55, 0.8)
        image = np.where(mask == 1, interior_tone, rng.uniform(0.1, 0.25)) + 0.08 * texture / (texture.std() + 1e-8)
        # a few dark organelles inside cells: membrane-like distractors the network must ignore
        blobs = ndimage.gaussian_filter((rng.random((size, size)) > 0.9992).astype(float), 2.5)
        image = image - 0.4 * blobs / (blobs.max() + 1e-8)
        image = ndimage.gaussian_filter(image, rng.uniform(0.6, 1.2)) + rng.normal(0, 0.04, (size, size))
        samples.append(Sample(f"synthetic-{index:03d}", image.clip(0, 1).astype(np.float32), mask, cells * mask))
    return Dataset("synthetic", samples, f"synthetic:count={count},size={size},seed={seed}")


SYNTHETIC_OPTIONS = ("count", "size", "seed")


@dataclass(frozen=True)
class DataSpec:
    """Which data a job reads, spelt one way in checkpoints, result rows and reports: the
    built-in synthetic set with all its options, a known data set by name (``isbi2012``), or an
    absolute folder. ``str(spec)`` is that spelling and ``DataSpec.parse`` reads it back."""

    source: str = "synthetic"
    count: int = 12  # the synthetic set's options; unused for other sources
    size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.count < 1 or self.size < 16 or self.seed < 0:
            raise DataError(
                f"synthetic data needs count >= 1, size >= 16 and seed >= 0, got {self.count}, {self.size}, {self.seed}"
            )

    @classmethod
    def parse(cls, text: str | Path, base: Path | None = None) -> DataSpec:
        """``synthetic[:count=N,size=N,seed=N]``, a data set name, or a folder (relative to
        ``base`` when given, else to the working directory)."""
        name, _, options = str(text).partition(":")
        if name == "synthetic":
            parsed: dict[str, int] = {}
            for item in filter(None, options.split(",")):
                key, _, value = item.partition("=")
                if key not in SYNTHETIC_OPTIONS or not value.isdigit():
                    raise DataError(f"cannot read {str(text)!r}: expected synthetic:count=N,size=N,seed=N")
                parsed[key] = int(value)
            return cls("synthetic", **parsed)
        from bench.fetch import DATASETS

        if str(text) in DATASETS:
            return cls(str(text))
        folder = Path(text).expanduser()
        return cls(str(((base / folder) if base is not None else folder).resolve()))

    @property
    def synthetic(self) -> bool:
        return self.source == "synthetic"

    def __str__(self) -> str:
        if self.synthetic:
            return f"synthetic:count={self.count},size={self.size},seed={self.seed}"
        return self.source

    def load(self) -> Dataset:
        """The images: generated, or read from the named data set's or the folder's files."""
        if self.synthetic:
            return synthetic_em(self.count, self.size, self.seed)
        from bench.fetch import DATASETS, find_dataset

        root = Path(self.source)
        if self.source in DATASETS:  # a known data set by name, e.g. "isbi2012"
            found = find_dataset(self.source)
            if found is None:
                raise DataError(f"data set {self.source!r} is not on this machine; run `unet-bench data fetch {self}`")
            root = found.resolve()
        return load_root(root)


def load_data(spec: str | Path) -> Dataset:
    """``synthetic[:count=..,size=..,seed=..]``, a known data set by name (``isbi2012``), or a
    folder (images/ + labels/, TIFF stacks, or the Cell Tracking Challenge layout)."""
    return DataSpec.parse(spec).load()


def load_root(root: Path) -> Dataset:
    """A data folder in any of the layouts ``load_data`` reads (``root`` absolute)."""
    if not root.exists():
        raise DataError(f"{root}: no such data folder (use 'synthetic' for the built-in data)")
    if any(root.glob("*_GT")):
        return load_ctc(root)
    return load_folder(root)


# --- splits ------------------------------------------------------------------------------------


def parse_indices(text: str) -> list[int]:
    """``"25-29"`` or ``"0,3,5-7"`` -> sorted indices."""
    indices: set[int] = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise DataError(f"cannot read section list {text!r}: expected e.g. '25-29' or '0,3,5-7'")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise DataError(f"section range {part!r} runs backwards")
        indices.update(range(low, high + 1))
    return sorted(indices)


def split_by_index(data: Dataset, val_indices: Sequence[int], exclude: Sequence[int] = ()) -> tuple[Dataset, Dataset]:
    """Deterministic train / validation split; the validation indices travel with the results.
    ``exclude`` (a test split) is kept out of both."""
    bad = [i for i in (*val_indices, *exclude) if not 0 <= i < len(data)]
    if bad:
        raise DataError(f"sections {bad} are outside 0..{len(data) - 1} of {data.source}")
    held_out = set(exclude)
    val = sorted(set(val_indices) - held_out)
    held_out.update(val)
    train = [i for i in range(len(data)) if i not in held_out]
    if not train or not val:
        raise DataError(f"a split needs both training and validation images (got {len(train)} and {len(val)})")
    return data.subset(train, "train"), data.subset(val, "val")


def format_sections(indices: Sequence[int]) -> str:
    """[25, 26, 27, 29] -> '25-27,29' (the form --val-sections takes)."""
    parts: list[str] = []
    run: list[int] = []
    for i in sorted(indices):
        if run and i != run[-1] + 1:
            parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = []
        run.append(i)
    if run:
        parts.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(parts)


def default_val_sections(count: int, exclude: Sequence[int] = ()) -> list[int]:
    """The last sixth of the sections (at least one) that are not in ``exclude`` (a test
    split): serial sections next to each other are alike, so a contiguous block is the honest
    held-out set."""
    held_out = set(exclude)
    pool = [i for i in range(count) if i not in held_out]
    held = max(1, len(pool) // 6)
    return pool[len(pool) - held :]


def kfold_indices(n: int, k: int, fold: int) -> list[int]:
    """Validation indices of fold ``fold`` of ``k`` contiguous folds (serial sections stay together)."""
    if not 2 <= k <= n or not 0 <= fold < k:
        raise ValueError(f"need 2 <= k <= {n} and 0 <= fold < k, got k={k}, fold={fold}")
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    return list(range(bounds[fold], bounds[fold + 1]))


MIN_FOLDS = 3  # each fold holds out one block for test and the next for validation; the rest trains


def kfold_split(n: int, k: int, fold: int) -> tuple[list[int], list[int]]:
    """Fold ``fold`` of ``k``-fold cross-validation over ``n`` serial sections: its validation
    sections (the next block, ``(fold + 1) % k``) and its test sections (block ``fold``); the
    other blocks train. Over the folds every section is tested exactly once."""
    if k < MIN_FOLDS:
        raise DataError(f"{k} folds leave no image to train on (one block tests, the next validates); "
                        f"use folds >= {MIN_FOLDS}")  # fmt: skip
    if k > n:
        raise DataError(f"{k} folds need at least {k} images; the data has {n}")
    return kfold_indices(n, k, (fold + 1) % k), kfold_indices(n, k, fold)
