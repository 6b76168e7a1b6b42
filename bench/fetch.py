"""``unet-bench data fetch``: the only code path that downloads, and only with checksums.

Each known data set has a manifest of SHA-256 sums shipped in the package. Files are fetched
one by one (``https://`` or ``file://``), written to a temporary name, verified, then renamed:
an interrupted or tampered download never leaves a file that looks complete. Files already
present with the right checksum are skipped, so a fetch can simply be rerun.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from bench.errors import UserError


class FetchError(UserError):
    """A download that failed or did not match its checksum; the message names the file."""


@dataclass(frozen=True)
class RemoteDataset:
    """A data set known by name. One without ``default_url`` is found on the machine only
    (``find_dataset``); ``fetch_dataset`` refuses it with ``how_to_get``."""

    name: str
    manifest: str  # file in bench/datasets/ ("" when there is nothing to fetch)
    default_url: str | None
    remote_path: Callable[[str], str]  # our relative path -> path under default_url
    licence: str
    get_hint: str = ""  # how to put it on the machine, when it cannot be fetched

    @property
    def how_to_get(self) -> str:
        return self.get_hint or f"run `unet-bench data fetch {self.name}`"


def _zhixuhao_layout(path: str) -> str:
    """train/images/07.png -> train/image/7.png (the layout of the repository we mirror)."""
    split, kind, file = path.split("/")
    number = int(Path(file).stem)
    if split == "test":
        return f"test/{number}.png"
    return f"train/{'image' if kind == 'images' else 'label'}/{number}.png"


DATASETS = {
    "isbi2012": RemoteDataset(
        name="isbi2012",
        manifest="isbi2012.sha256",
        default_url="https://raw.githubusercontent.com/zhixuhao/unet/b45af4d458437d8281cc218a07fd4380818ece4a/data/membrane",
        remote_path=_zhixuhao_layout,
        licence="ISBI 2012 challenge data: non-commercial research use; cite Cardona et al. 2010 and "
        "Arganda-Carreras et al. 2015",
    ),
    "dsb2018": RemoteDataset(
        name="dsb2018",
        manifest="",
        default_url=None,
        remote_path=str,
        licence="Data Science Bowl 2018 stage 1 training set (BBBC038) with the community fixes: CC0; cite "
        "Caicedo et al. 2019",
        get_hint="it is not downloaded: put its train/ folder (images/ + 16-bit labels/) at "
        "../shared/data/dsb2018/train beside the checkout or at $UNETBENCH_DATA/dsb2018/train",
    ),
}


def read_manifest(dataset: RemoteDataset) -> dict[str, str]:
    """relative path -> expected SHA-256."""
    text = resources.files("bench.datasets").joinpath(dataset.manifest).read_text()
    entries = {}
    for line in text.splitlines():
        if line.strip():
            digest, path = line.split(maxsplit=1)
            entries[path.strip().lstrip("*")] = digest
    return entries


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def default_data_dir(name: str) -> Path:
    return Path(os.environ.get("UNETBENCH_DATA", Path.home() / ".cache" / "unet-bench" / "data")) / name


def fetch_dataset(
    name: str, dest: Path | None = None, url: str | None = None, log: Callable[[str], None] = print
) -> Path:
    """Fetch data set ``name`` into ``dest``; ``url`` is a mirror laid out like the data set
    itself (e.g. ``file:///path/to/isbi2012``). Returns the folder."""
    if name not in DATASETS:
        raise FetchError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    dataset = DATASETS[name]
    if dataset.default_url is None:
        raise FetchError(f"{name} cannot be fetched; {dataset.how_to_get}")
    dest = Path(dest) if dest else default_data_dir(name)
    manifest = read_manifest(dataset)
    fetched = skipped = 0
    for relative, expected in sorted(manifest.items()):
        target = dest / relative
        if target.exists() and sha256_of(target) == expected:
            skipped += 1
            continue
        source = f"{url.rstrip('/')}/{relative}" if url else f"{dataset.default_url}/{dataset.remote_path(relative)}"
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.part")
        try:
            with urllib.request.urlopen(source, timeout=60) as response, open(partial, "wb") as out:
                out.write(response.read())
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise FetchError(f"{source}: download failed ({exc})") from None
        actual = sha256_of(partial)
        if actual != expected:
            partial.unlink()
            raise FetchError(
                f"{source}: SHA-256 mismatch for {relative} (expected {expected[:16]}..., got {actual[:16]}...)"
            )
        os.replace(partial, target)
        fetched += 1
    log(f"{name}: {fetched} fetched, {skipped} already present, all {len(manifest)} verified -> {dest}")
    log(f"licence: {dataset.licence}")
    return dest


def find_dataset(name: str) -> Path | None:
    """The training folder of a known data set if it is on this machine: $UNETBENCH_DATA/NAME,
    the fetch default (~/.cache/unet-bench/data/NAME), or ../shared/data/NAME beside the
    checkout. Never downloads: that is ``unet-bench data fetch``'s job."""
    repo = Path(__file__).resolve().parents[1]
    for root in (default_data_dir(name), repo.parent / "shared" / "data" / name):
        if (root / "train").is_dir():
            return root / "train"
    return None
