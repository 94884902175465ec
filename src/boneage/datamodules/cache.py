"""Preprocessed images on disk: decode, grayscale, CLAHE and resize once, not every epoch.

Small data sets trained for hundreds of epochs spend most of their loader time redoing
this deterministic work. The cache holds its result for a list of image files as one
uint8 array (images x size x size) in a .npy file that loader workers memory-map; only
the random augmentations remain per epoch. Building it decodes every image, so it is also the
check that every image reads: the files that do not are listed with the reason in its
manifest (`CachedImages.unreadable`), and their rows are left out of training, never met by a
loader worker mid-epoch. The file's name is a hash of everything the
pixels depend on (each file's path, size and modification time, every preprocessing
setting, this module's version), so a changed setting or a touched file gets a new entry
and a stale one is never read. A file lock lets one process build an entry while others
(DDP ranks, parallel sweep jobs) wait and then read it; the entry appears atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from boneage.datamodules.images import ImageLimits, UnreadableImage, read_grayscale

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when read_grayscale or the preprocessing steps change what they produce


class CachedImages:
    """Read access to one cache entry: the preprocessed image of each cached file by path.

    The memory map is opened lazily in each process (a pickled memmap would be copied
    whole into every loader worker).
    """

    def __init__(self, path: Path, images: Sequence[str]) -> None:
        self.path = path
        self.row_of = {image: row for row, image in enumerate(images)}
        self._array: np.ndarray | None = None
        self.unreadable: dict[str, str] = json.loads(path.with_suffix(".json").read_text()).get("unreadable", {})

    def __getitem__(self, image: str) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return np.array(self._array[self.row_of[image]])  # a private copy: augmentations write into it

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__ | {"_array": None}


def cache_key(images: Sequence[str], settings: Mapping[str, Any]) -> str:
    """A hash of the files (path, size, modification time) and the preprocessing settings."""
    digest = hashlib.sha256(json.dumps({"version": CACHE_VERSION, "settings": dict(settings)}, sort_keys=True).encode())
    for image in images:
        stat = os.stat(image)
        digest.update(f"{image}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def cached_images(
    root: str | Path,
    images: Sequence[str],
    settings: Mapping[str, Any],
    preprocess: Callable[[np.ndarray], np.ndarray],
    workers: int = 1,
    limits: ImageLimits | None = None,
) -> CachedImages:
    """The cache entry for `images` under `settings`, built first if no process has built it.

    `preprocess` maps a decoded uint8 grayscale image to its square uint8 result; every
    image must come out the same shape (the settings fix the size). Images over `limits`
    are refused as unreadable.
    """
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    limits = limits or ImageLimits()
    settings = {**settings, "max_pixels": limits.max_pixels, "multi_frame": limits.multi_frame}
    key = cache_key(images, settings)
    entry = root / f"{key}.npy"
    with FileLock(root / f"{key}.lock"):
        if not entry.is_file():
            _build(entry, images, settings, preprocess, workers, limits)
        else:
            log.info("Preprocessed images read from the cache %s", entry)
    return CachedImages(entry, images)


def _build(
    entry: Path,
    images: Sequence[str],
    settings: Mapping[str, Any],
    preprocess: Callable[[np.ndarray], np.ndarray],
    workers: int,
    limits: ImageLimits,
) -> None:
    log.info("Preprocessing %d images once into the cache %s", len(images), entry)
    shape = preprocess(np.zeros((1, 1), np.uint8)).shape  # the settings fix it, whatever the image
    partial = entry.with_name(f"{entry.stem}.{os.getpid()}.partial.npy")
    array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(len(images), *shape))
    unreadable: dict[str, str] = {}

    def fill(row: int) -> None:
        try:
            array[row] = preprocess(read_grayscale(images[row], limits))
        except UnreadableImage as refusal:
            unreadable[images[row]] = refusal.reason
        except Exception as error:  # a preprocessing step failing on one image is that image's problem
            unreadable[images[row]] = f"cannot be preprocessed ({type(error).__name__}: {error})"

    try:
        with ThreadPoolExecutor(max(1, workers)) as pool:  # OpenCV releases the GIL while it decodes and resizes
            list(pool.map(fill, range(len(images))))
        array.flush()
        manifest = {
            "images": len(images), "settings": dict(settings), "version": CACHE_VERSION, "unreadable": unreadable,
        }  # fmt: skip
        entry.with_suffix(".json").write_text(json.dumps(manifest, indent=2))
        os.replace(partial, entry)  # readers see a complete entry or none
    finally:
        partial.unlink(missing_ok=True)
