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
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from bench.errors import UserError
from bench.instances import instances_to_mask
from variants.overrides import ConfigError

IMAGE_SUFFIXES = (".png", ".tif", ".tiff")


class DataError(UserError):
    """A data problem a user can fix; the message names the file."""


@dataclass
class Sample:
    """One image: ``image`` float32, (H, W) grey in [0, 1], or (C, H, W) / per-image normalised
    for instance data; ``mask`` uint8, 1 = interior, 0 = membrane; ``instances`` 0 = background,
    1..N objects; ``kind`` (size and modality) is what stratified splits balance."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    instances: np.ndarray | None = None
    kind: str = ""


@dataclass
class Dataset:
    """Samples plus where they came from (recorded with every result)."""

    name: str
    samples: list[Sample]
    source: str
    meta: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def instance_task(self) -> bool:
        """True for instance-labelled data (trained with instance targets, scored as instances)."""
        return self.meta.get("task") == "instances"

    @property
    def channels(self) -> int:
        """Input channels of the images (1 for grey)."""
        image = self.samples[0].image
        return 1 if image.ndim == 2 else int(image.shape[0])

    def instance_labels(self) -> list[np.ndarray]:
        """Every sample's instance labels (instance data has them all)."""
        labels = [s.instances for s in self.samples if s.instances is not None]
        if len(labels) != len(self.samples):
            raise DataError(f"{self.source}: not every image has instance labels")
        return labels

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
    """Scale integer or float images to float32 in [0, 1]; refuse NaN and infinities."""
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / integer_full_scale(array, path)
    if not np.issubdtype(array.dtype, np.floating):  # complex, bool, ...: no intensity to scale
        raise DataError(f"{path}: pixels of type {array.dtype} are not intensities (integer or real images only)")
    if not np.isfinite(array).all():
        raise DataError(f"{path}: image holds NaN or infinite values")
    if np.abs(array).max() > np.finfo(np.float32).max:  # float64 past float32 would become infinite
        raise DataError(f"{path}: pixel values up to {np.abs(array).max():.3g} are past float32's range")
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    if 0.0 <= low and high <= 1.0:
        return array
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


# the bit depths cameras and files use; an integer image's scale is the fewest that hold its values
BIT_DEPTHS = (8, 10, 12, 14, 16)


def integer_full_scale(array: np.ndarray, path: Path | str) -> float:
    """The value that reads as 1.0 in an integer image: 2**bits - 1 for the fewest of
    ``BIT_DEPTHS`` holding its largest value, so a 12-bit camera image in a 16-bit file spans
    [0, 1] instead of [0, 0.06], and 8-bit data saved as 16 bits reads as 8-bit. Negative values
    are refused: clipping them to 0 (as before) lost the image's dark half without a word."""
    low, high = int(array.min(initial=0)), int(array.max(initial=0))
    if low < 0:
        raise DataError(f"{path}: image holds negative values ({array.dtype}, {low} to {high}); unet-bench reads "
                        "unsigned integer or float images: convert it (e.g. shift it to unsigned) first")  # fmt: skip
    bits = next((b for b in BIT_DEPTHS if high < 2**b), np.iinfo(array.dtype).bits)
    return float(2**bits - 1)


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
    ``train-labels.tif`` (the challenge's stacks, one section per page). Labels of more than 8
    bits are instance labels (``load_instance_folder``)."""
    root = Path(root)
    if (root / "train-volume.tif").exists():
        return load_tiff_stacks(root / "train-volume.tif", root / "train-labels.tif")
    pairs = matched_files(root)
    if is_instance_label(pairs[0][2]):
        return load_instance_folder(root, pairs)
    samples = [make_sample(stem, read_image(image), read_image(label), image, label) for stem, image, label in pairs]
    return Dataset(root.name, samples, str(root))


def matched_files(root: Path) -> list[tuple[str, Path, Path]]:
    """(name, image, label) of ``root/images`` and ``root/labels``, by name; mismatches are named."""
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
    return [(stem, images[stem], labels[stem]) for stem in sorted(images)]


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


def is_instance_label(path: Path) -> bool:
    """A label file of more than 8 bits per pixel (16-bit PNG or TIFF) holds instance labels;
    only its header is read."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                return bool(tif.pages[0].dtype.itemsize > 1)  # type: ignore[union-attr]
        from PIL import Image

        with Image.open(path) as im:
            return im.mode.startswith("I")
    except Exception:  # noqa: BLE001 - an unreadable label is reported by the reader that follows
        return False


def read_channels(path: Path) -> np.ndarray:
    """(H, W) for a grey image (a colour file whose channels are all equal included), (H, W, 3)
    for a colour one; alpha is dropped. Names the file on error."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            array = np.asarray(tifffile.imread(path))
        else:
            from PIL import Image

            with Image.open(path) as im:
                im.load()
                array = np.asarray(im.convert("RGB") if im.mode in ("RGBA", "P", "LA", "CMYK") else im)
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a corrupt or unreadable file
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., :3]
        if (array == array[..., :1]).all():
            array = array[..., 0]
    if array.ndim not in (2, 3):
        raise DataError(f"{path}: expected a grey or colour 2D image, got shape {array.shape}")
    return array


def normalise_intensity(image: np.ndarray, low: float = 1.0, high: float = 99.8) -> np.ndarray:
    """Per-image normalisation: the ``low`` and ``high`` percentiles over all channels go to 0
    and 1 (colour ratios kept), so dim and bright images, 8- and 16-bit, look alike to the net.
    Integer images take the percentiles from their histogram and map through a lookup table."""
    if image.dtype in (np.uint8, np.uint16):
        cdf = np.cumsum(np.bincount(image.ravel())) / image.size
        lo, hi = (float(np.searchsorted(cdf, q / 100)) for q in (low, high))
        if hi <= lo:
            return np.zeros(image.shape, np.float32)
        return ((np.arange(cdf.size, dtype=np.float32) - lo) / (hi - lo))[image]
    lo, hi = np.percentile(image, (low, high))
    if hi <= lo:
        return np.zeros(image.shape, np.float32)
    return ((image.astype(np.float32) - lo) / (hi - lo)).astype(np.float32)


def objects_bright(image: np.ndarray) -> np.ndarray:
    """A normalised image whose background is bright (median above the middle: brightfield and
    H&E, where nuclei are dark) inverted, so that objects are bright on dark in every image, as
    in fluorescence. On DSB 2018 the medians part cleanly: 0.52-0.94 for the 98 brightfield and
    H&E images, at most 0.19 for the fluorescence ones."""
    return (1.0 - image).astype(np.float32) if np.median(image) > 0.5 else image


def instance_input(image: np.ndarray) -> np.ndarray:
    """What a network trained on instance data sees of an image: ``normalise_intensity``, then
    ``objects_bright``."""
    return objects_bright(normalise_intensity(image))


def read_model_input(path: Path, channels: int, instance: bool) -> np.ndarray:
    """An image file as a model trained on such data takes it: grey in [0, 1] for membrane data;
    for instance data ``channels`` channels (grey replicated, colour averaged to grey), each
    image normalised on its own (``instance_input``)."""
    if not instance:
        return to_unit_float(read_image(path), path)
    image = read_channels(path)
    if channels == 1 and image.ndim == 3:
        image = image.mean(axis=-1)
    elif channels > 1:
        image = np.moveaxis(image, -1, 0) if image.ndim == 3 else np.repeat(image[None], channels, axis=0)
    return instance_input(image)


def load_instance_folder(root: Path, pairs: Sequence[tuple[str, Path, Path]]) -> Dataset:
    """Images of any size, grey or colour, with instance labels (0 = background). A set with any
    colour image is read as 3 channels (grey images replicated), else as 1; each image is
    normalised on its own, objects bright (``instance_input``)."""
    images = [read_channels(image) for _, image, _ in pairs]
    colour = any(image.ndim == 3 for image in images)
    samples = []
    for (stem, image_path, label_path), image in zip(pairs, images, strict=True):
        instances = read_image(label_path)
        if not np.issubdtype(instances.dtype, np.integer):
            raise DataError(f"{label_path}: instance labels must be integers, got {instances.dtype}")
        if instances.shape != image.shape[:2]:
            h, w = image.shape[:2]
            raise DataError(
                f"{label_path}: label is {instances.shape[1]}x{instances.shape[0]} but {image_path.name} is {w}x{h}"
            )
        kind = f"{image.shape[1]}x{image.shape[0]} {'colour' if image.ndim == 3 else 'grey'}"
        if colour:
            image = np.moveaxis(image, -1, 0) if image.ndim == 3 else np.repeat(image[None], 3, axis=0)
        instances = instances.astype(np.int32)
        samples.append(Sample(stem, instance_input(image), instances_to_mask(instances), instances, kind))
    return Dataset(root.name, samples, str(root), {"task": "instances"})


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
        for name, least in (("count", 1), ("size", 16), ("seed", 0)):
            if getattr(self, name) < least:  # the key, so a suite's error names its line
                raise ConfigError(f"synthetic data needs {name} >= {least}, got {getattr(self, name)}", key=name)

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

    @property
    def instance_task(self) -> bool:
        """Whether the data holds instance labels (decided from one label file's header)."""
        if self.synthetic:
            return False
        root = self.root()
        labels = root / "labels"
        first = (
            min((p for p in labels.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), default=None)
            if labels.is_dir()
            else None
        )
        return first is not None and is_instance_label(first)

    def root(self) -> Path:
        """The folder of a named data set or a folder source (a DataError when it is missing)."""
        from bench.fetch import DATASETS, find_dataset

        if self.source in DATASETS:  # a known data set by name, e.g. "isbi2012"
            found = find_dataset(self.source)
            if found is None:
                raise DataError(f"data set {self.source!r} is not on this machine; {DATASETS[self.source].how_to_get}")
            return found.resolve()
        if not Path(self.source).exists():
            raise DataError(f"{self.source}: no such data folder (use 'synthetic' for the built-in data)")
        return Path(self.source)

    def __str__(self) -> str:
        if self.synthetic:
            return f"synthetic:count={self.count},size={self.size},seed={self.seed}"
        return self.source

    def load(self) -> Dataset:
        """The images: generated, or read from the named data set's or the folder's files."""
        if self.synthetic:
            return synthetic_em(self.count, self.size, self.seed)
        return load_root(self.root())


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


MAX_SECTIONS = 1_000_000  # more images than any data set this harness reads


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
        if high >= MAX_SECTIONS:  # checked before the range is built: '0-99999999999' must not fill memory
            raise DataError(f"section {high} in {part!r} is past any data set (sections run 0..{MAX_SECTIONS - 1:,})")
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


VAL_FRACTION, TEST_FRACTION = 0.05, 0.1  # of each kind, for instance data's default split


def stratified_split(
    kinds: Sequence[str], val_fraction: float = VAL_FRACTION, test_fraction: float = TEST_FRACTION
) -> tuple[list[int], list[int]]:
    """Validation and test indices holding each kind (image size and modality) in proportion:
    of every kind with at least 3 images, a fixed pseudo-random choice of ``val_fraction`` and
    ``test_fraction`` of them (at least one each), the rest trains; rarer kinds only train. The
    draw of a kind depends on its name and members only, so the split is the same on every
    machine and for any order of the kinds."""
    by_kind: dict[str, list[int]] = {}
    for index, kind in enumerate(kinds):
        by_kind.setdefault(kind, []).append(index)
    val: list[int] = []
    test: list[int] = []
    for kind, members in by_kind.items():
        if len(members) < 3:
            continue
        order = np.random.default_rng(zlib.crc32(kind.encode())).permutation(members).tolist()
        n_val = max(1, round(len(members) * val_fraction))
        n_test = max(1, round(len(members) * test_fraction))
        val += order[:n_val]
        test += order[n_val : n_val + n_test]
    return sorted(val), sorted(test)


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
