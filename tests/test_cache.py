"""The preprocessing cache: same pixels as without it, misses when anything changes, safe when shared."""

from __future__ import annotations

import json
import multiprocessing
import os

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from boneage.datamodules.cache import cached_images
from boneage.datamodules.images import ImageLimits
from boneage.datamodules.transforms import preprocessing
from tests.helpers import TINY

SETTINGS = {"image_size": 32, "clahe": True}


def write_images(folder, count: int = 6) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        image = np.random.default_rng(index).integers(0, 255, (80, 60), dtype=np.uint8)
        paths.append(str(folder / f"{index}.png"))
        cv2.imwrite(paths[-1], image)
    return paths


def preprocess(image: np.ndarray) -> np.ndarray:
    return A.Compose(preprocessing(32, clahe=True))(image=image)["image"]


def entries(root) -> list[str]:
    return sorted(path.name for path in root.glob("*.npy"))


def test_cached_batches_hold_the_same_pixels_as_uncached(compose_train, tmp_path):
    overrides = [*TINY, "data.clahe=true", f"data.cache_dir={tmp_path / 'cache'}", "data.num_workers=0"]  # pixels only
    batches = {}
    for cache in ("false", "true"):
        cfg = compose_train([*overrides, f"data.cache={cache}"])
        datamodule = instantiate(cfg.data, task=instantiate(cfg.task))
        datamodule.prepare_data()
        datamodule.setup()
        batches[cache] = (next(iter(datamodule.train_dataloader())), next(iter(datamodule.val_dataloader())))
    for uncached, cached in zip(batches["false"], batches["true"], strict=True):
        assert torch.equal(uncached["image"], cached["image"])  # augmented train batch and plain val batch
    assert len(entries(tmp_path / "cache")) == 1


def test_a_changed_setting_or_touched_file_misses_the_cache(tmp_path):
    images = write_images(tmp_path / "images")
    root = tmp_path / "cache"
    first = cached_images(root, images, SETTINGS, preprocess)
    assert cached_images(root, images, SETTINGS, preprocess).path == first.path  # a hit
    other = cached_images(root, images, SETTINGS | {"clahe_clip_limit": 3.0}, preprocess)
    assert other.path != first.path
    stat = os.stat(images[2])
    os.utime(images[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: same bytes, new time
    touched = cached_images(root, images, SETTINGS, preprocess)
    assert touched.path not in (first.path, other.path)
    assert len(entries(root)) == 3


def _build_in_another_process(arguments) -> list[float]:
    root, images = arguments
    cache = cached_images(root, images, SETTINGS, preprocess, workers=2)
    return [float(cache[image].astype(np.float64).sum()) for image in images]


@pytest.mark.slow
def test_two_processes_building_one_cache_at_once_both_get_correct_data(tmp_path):
    images = write_images(tmp_path / "images", count=24)
    root = tmp_path / "cache"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        sums = pool.map(_build_in_another_process, [(root, images)] * 2)
    expected = [float(preprocess(cv2.imread(image, cv2.IMREAD_GRAYSCALE)).astype(np.float64).sum()) for image in images]
    assert sums[0] == sums[1] == expected
    assert len(entries(root)) == 1
    assert not list(root.glob("*.partial.npy"))


def test_cache_entry_records_its_settings(tmp_path):
    images = write_images(tmp_path / "images")
    entry = cached_images(tmp_path / "cache", images, SETTINGS, preprocess).path
    limits = {"max_pixels": None, "multi_frame": "first"}  # what decides which images are refused
    assert json.loads(entry.with_suffix(".json").read_text())["settings"] == SETTINGS | limits


def test_building_the_cache_lists_each_image_that_does_not_read_and_keeps_the_others(tmp_path):
    images = write_images(tmp_path / "images", count=4)
    with open(images[1], "r+b") as file:
        file.truncate(60)  # a PNG cut off after its header
    cv2.imwrite(images[3], np.zeros((300, 200), np.uint8))  # 60,000 pixels: over the limit below
    cache = cached_images(tmp_path / "cache", images, SETTINGS, preprocess, limits=ImageLimits(max_pixels=50_000))
    assert sorted(cache.unreadable) == [images[1], images[3]]
    assert "too large: 60,000 pixels (200 x 300), over max_pixels=50,000" in cache.unreadable[images[3]]
    assert np.array_equal(cache[images[2]], preprocess(cv2.imread(images[2], cv2.IMREAD_GRAYSCALE)))
    again = cached_images(tmp_path / "cache", images, SETTINGS, preprocess, limits=ImageLimits(max_pixels=50_000))
    assert again.unreadable == cache.unreadable  # read back from the entry's manifest
