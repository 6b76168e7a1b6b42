"""``unet-bench predict``: segment every image of a folder with a trained checkpoint.

Each image is predicted by overlap-tile prediction (``bench.infer``) with the checkpoint's model,
exactly as evaluation predicts, and written twice under the same stem: ``probabilities/STEM.tif``,
P(interior) as float32 in [0, 1] (lossless; ``unet-bench score`` reads it as is), and
``masks/STEM.png``, 255 where P(interior) is above the threshold and 0 elsewhere (interior = 255,
as the ISBI 2012 labels). A checkpoint trained on instance labels also writes
``instances/STEM.png``: 16-bit labels (0 = background, one id per object) decoded as evaluation
decodes them (``bench.instances.decode_instances`` with the job's ``min_size`` and the threshold
validation chose), which ``unet-bench score --instances`` reads. The output folder is the
command's own: it refuses one that holds a file it did not write (``bench.owned``), and replaces
only files of an earlier prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.data import IMAGE_SUFFIXES, DataError, read_model_input
from bench.errors import UsageError
from bench.metrics import INSTANCE_METRICS
from bench.owned import check_whole_folder, claim

MANIFEST = ".unet-bench-predict"  # the files `predict` wrote in its output folder, one per line


def input_images(folder: Path) -> list[Path]:
    """The PNG and TIFF files directly in ``folder``, by name; a folder with none, or two
    images with one stem (their outputs would collide), is a DataError."""
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of images")
    images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise DataError(f"{folder}: no PNG or TIFF images ({', '.join(IMAGE_SUFFIXES)})")
    stems: dict[str, Path] = {}
    for path in images:
        if path.stem in stems:
            raise DataError(f"{path}: same name as {stems[path.stem].name}; their outputs would overwrite each other")
        stems[path.stem] = path
    return images


def write_outputs(
    out_dir: Path, stem: str, probability: np.ndarray, threshold: float, instances: np.ndarray | None = None
) -> tuple[Path, Path]:
    """The map and the mask of one image (and its instance labels, when given), listed in the
    manifest before they are written."""
    import tifffile
    from PIL import Image

    prob_path, mask_path = out_dir / "probabilities" / f"{stem}.tif", out_dir / "masks" / f"{stem}.png"
    paths = [prob_path, mask_path] + ([out_dir / "instances" / f"{stem}.png"] if instances is not None else [])
    claim(out_dir, MANIFEST, [p.relative_to(out_dir).as_posix() for p in paths], "predict")
    for path in paths:
        path.parent.mkdir(exist_ok=True)
    tifffile.imwrite(prob_path, probability.astype(np.float32))
    Image.fromarray(np.where(probability > threshold, 255, 0).astype(np.uint8)).save(mask_path)
    if instances is not None:
        if instances.max() > np.iinfo(np.uint16).max:
            raise DataError(f"{stem}: {instances.max()} objects do not fit a 16-bit label image")
        Image.fromarray(instances.astype(np.uint16)).save(paths[2])
    return prob_path, mask_path


def predict_folder(
    checkpoint: Path, images: Path, out_dir: Path, threshold: float = 0.5, tile: int | None = None,
    log: Callable[[str], None] = print,
) -> list[tuple[Path, Path]]:  # fmt: skip
    """Predict every image of ``images`` into ``out_dir``; returns each image's (map, mask).
    Everything is checked (the checkpoint, every image, the output folder) before anything is
    written; images are read again one at a time to predict, so a large folder is never all in memory."""
    from skimage.segmentation import relabel_sequential

    from bench.infer import predict_tiled
    from bench.instances import decode_instances
    from bench.job import load_trained

    if not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold}: a probability, between 0 and 1")
    job, model, device = load_trained(checkpoint)
    config = job.model_config()
    instance = job.train.monitor in INSTANCE_METRICS  # an instance job always monitors an instance metric
    paths = input_images(images)
    for path in paths:  # a bad image fails now, not after an hour of predicting the others
        read_model_input(path, config.in_channels, instance)
    check_whole_folder(out_dir, MANIFEST, "choose another output folder (-o)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for number, path in enumerate(paths, 1):
        image = read_model_input(path, config.in_channels, instance)
        probs = predict_tiled(model, image, config, tile=tile or job.train.val_tile, device=device)
        instances = None
        if instance:  # numbered 1..N: the ids of dropped specks leave no gaps
            assert job.train.decode_threshold is not None  # load_trained fixed validation's choice (or 0.5)
            decoded = decode_instances(probs, job.train.decode_threshold, min_size=job.train.min_size or 0)
            instances = relabel_sequential(decoded)[0]
        written.append(write_outputs(out_dir, path.stem, probs[1], threshold, instances))
        objects = f", {int(instances.max())} objects" if instances is not None else ""
        interior = float((probs[1] > threshold).mean())
        log(
            f"[{number}/{len(paths)}] {path.name}: {image.shape[-1]}x{image.shape[-2]}, {interior:.1%} interior{objects}"
        )
    return written
