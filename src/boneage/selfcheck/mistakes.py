"""The usual mistakes, for measuring self-validation when no out-of-distribution folder is given:
made from real material the gate was not fitted on (the evaluated test hands, the photographs
scikit-learn ships, the images of other modalities pydicom ships as its test files).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom.data
from PIL import Image
from sklearn.datasets import load_sample_images

from boneage.datamodules.images import UnreadableImage, read_grayscale

PER_KIND = 40  # images of each mistake made from the test hands, and photograph crops


def generated_mistakes(hands: list[str], folder: Path, seed: int = 0) -> pd.DataFrame:
    """Writes the mistakes as PNGs under `folder`; columns image, kind."""
    folder.mkdir(parents=True, exist_ok=True)
    random = np.random.default_rng(seed)
    chosen = random.choice(hands, size=min(PER_KIND, len(hands)), replace=False)
    written: list[tuple[str, str]] = []

    def save(kind: str, index: int, pixels: np.ndarray) -> None:
        path = folder / f"{kind}_{index:03d}.png"
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
        written.append((str(path), kind))

    for index, hand in enumerate(chosen):
        pixels = read_grayscale(hand)
        rows, columns = pixels.shape
        save("inverted", index, 255 - pixels)  # a plate read with the wrong polarity
        fingers = Image.fromarray(pixels[: rows // 3]).resize((columns, rows))  # a crop of the fingers, enlarged
        save("partial_hand", index, np.asarray(fingers))
        save("blank_plate", index, random.normal(random.uniform(0, 255), random.uniform(1, 8), pixels.shape))
        save("noise_plate", index, random.uniform(0, 255, pixels.shape))
    for index, pixels in enumerate(_photograph_crops(random)):
        save("photograph", index, pixels)
    for index, pixels in enumerate(_other_modalities()):
        save("other_body_part", index, pixels)
    return pd.DataFrame(written, columns=["image", "kind"])


def _photograph_crops(random: np.random.Generator) -> list[np.ndarray]:
    """Square crops of scikit-learn's sample photographs, in gray."""
    photographs = _gray_photographs()
    crops = []
    for index in range(PER_KIND):
        photo = photographs[index % len(photographs)]
        side = int(random.integers(120, min(photo.shape)))
        top, left = (int(random.integers(0, limit - side + 1)) for limit in photo.shape)
        crops.append(photo[top : top + side, left : left + side])
    return crops


@functools.cache  # decoded once per process: every evaluate of a session uses the same
def _gray_photographs() -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(Image.fromarray(photo).convert("L")) for photo in load_sample_images().images)


@functools.cache  # 163 files decoded once per process, not at every evaluate
def _other_modalities() -> tuple[np.ndarray, ...]:
    """The decodable images of pydicom's test files (CT, MR, US, NM, ... and radiographs of other
    body parts), as pixels: the header stage would refuse most of their files before decoding."""
    images = []
    for file in pydicom.data.get_testdata_files():
        try:
            images.append(read_grayscale(file))
        except UnreadableImage:
            continue
    return tuple(images)
