"""Fuzzing (hypothesis, a bounded and repeatable number of examples): whatever a suite file or
an image file holds, the readers return or raise the project's own error, never anything else
(which would reach the user as a traceback)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bench.data import DataError, binary_mask, read_image, to_unit_float
from bench.profile_suite import load_profile_suite
from bench.suite import load_suite
from bench.suite_file import SUITES_DIR, SuiteError

FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])  # fmt: skip

TRAINING_SUITES = [(SUITES_DIR / f"{name}.toml").read_text() for name in ("quick", "paper", "ablation-blocks", "ablation-weightmap")]
PROFILE_SUITES = [(SUITES_DIR / f"{name}.toml").read_text() for name in ("gpu", "cpu-smoke")]
# keys, values and headers that real suites use, so edits reach the validators, not only tomllib
WORDS = ["lr", "epochs", "batch_size", "tile", "names", "variant", "trials", "sampler", "pruner", "costs", "source",
         "val_sections", "test_sections", "width_scale", "depth", "precisions", "batches", "model.dropout", "low", "high"]  # fmt: skip
VALUES = [
    "0",
    "-1",
    "1e9",
    '"x"',
    "[]",
    '["unet-original"]',
    "{ low = 1, high = 0 }",
    "true",
    '"25-29"',
    '"3-1"',
    "nan",
    "inf",
]
HEADERS = ["[suite]", "[data]", "[train]", "[cpu]", "[model]", "[variants]", "[search]", "[search.space]",
           "[search.constraints]", "[arms]", "[[sweep]]", "[profile]", "[x]"]  # fmt: skip


@st.composite
def edited(draw: st.DrawFn, bases: list[str]) -> str:
    """A shipped suite with a few random edits: lines dropped, duplicated or swapped for
    plausible ones, characters replaced."""
    lines = draw(st.sampled_from(bases)).splitlines()
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(lines)))
        kind = draw(st.sampled_from(["drop", "dup", "line", "header", "char"]))
        if kind == "drop" and lines:
            lines.pop(min(where, len(lines) - 1))
        elif kind == "dup" and lines:
            lines.insert(where, lines[min(where, len(lines) - 1)])
        elif kind == "line":
            lines.insert(where, f"{draw(st.sampled_from(WORDS))} = {draw(st.sampled_from(VALUES))}")
        elif kind == "header":
            lines.insert(where, draw(st.sampled_from(HEADERS)))
        elif lines:
            row = min(where, len(lines) - 1)
            text = lines[row]
            at = draw(st.integers(0, len(text)))
            lines[row] = text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at + 1 :]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def written(content: str | bytes, name: str) -> Iterator[Path]:
    """``content`` in a file named ``name``, removed after the example."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as folder:
        path = Path(folder) / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
        yield path


@FUZZ
@given(edited(TRAINING_SUITES))
def test_the_training_suite_reader_raises_only_suite_errors(text: str) -> None:
    with written(text, "suite.toml") as path:
        try:
            load_suite(path)
        except SuiteError:
            pass


@FUZZ
@given(edited(PROFILE_SUITES))
def test_the_profile_suite_reader_raises_only_suite_errors(text: str) -> None:
    with written(text, "profile.toml") as path:
        try:
            load_profile_suite(path)
        except SuiteError:
            pass


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _tiff(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, photometric="minisblack")
    return buffer.getvalue()


rng = np.random.default_rng(0)
VALID = {
    ".png": [_png(rng.integers(0, 255, (16, 16), dtype=np.uint8)), _png(rng.integers(0, 65535, (8, 8), dtype=np.uint16)),
             _png(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8))],
    ".tif": [_tiff(rng.random((8, 8), dtype=np.float32)), _tiff(rng.integers(0, 255, (3, 8, 8), dtype=np.uint8)),
             _tiff(rng.integers(0, 2, (8, 8), dtype=np.uint8))],
}  # fmt: skip


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, bytes]:
    """A valid PNG or TIFF, truncated and / or with bytes overwritten, or random bytes."""
    suffix = draw(st.sampled_from(sorted(VALID)))
    if draw(st.booleans()):
        return suffix, draw(st.binary(max_size=256))
    data = bytearray(draw(st.sampled_from(VALID[suffix])))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return suffix, bytes(data[: cut if draw(st.booleans()) else len(data)])


@FUZZ
@given(damaged())
def test_the_image_readers_raise_only_data_errors(case: tuple[str, bytes]) -> None:
    suffix, payload = case
    with written(payload, f"image{suffix}") as path:
        try:
            array = read_image(path)
            image = to_unit_float(array, path)
            assert image.dtype == np.float32 and image.ndim == 2
            binary_mask(array, path)
        except DataError as exc:
            assert str(path) in str(exc), "the error names the file"
