"""Generated many-class data with a long tail: the shape of the users' 44-class set, for benchmarks.

The users' set has 44 classes of small 60x80 images, the largest class holding about a third
of the images, the median 166 of 35,551 and the smallest a handful. This source makes that
shape at any scale: class k has a count ~ (k + 1)^-1.4 (at least `smallest`), and each image is a pattern of oriented
stripes and a blob whose angle, frequency and place say the class, under noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from boneage.datamodules.generated import generate_once
from boneage.datamodules.table import TableSource
from boneage.tasks.base import Head


def class_counts(classes: int, images: int, smallest: int) -> np.ndarray:
    """Images per class, summing to about `images`: a power-law tail, the first class the largest."""
    shares = (np.arange(classes) + 1.0) ** -1.4
    return np.maximum(np.round(images * shares / shares.sum()).astype(int), smallest)


def render_pattern(label: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """Stripes whose angle (11 steps) and frequency (4 steps) and a blob whose place say the class."""
    angle = np.pi * (label % 11) / 11 + rng.normal(0, 0.05)
    frequency = 0.15 + 0.1 * (label // 11) + rng.normal(0, 0.005)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    stripes = 0.5 + 0.3 * np.sin(frequency * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    centre = (int(width * (0.25 + 0.5 * (label % 4) / 3)), int(height * rng.uniform(0.3, 0.7)))
    cv2.circle(stripes, centre, max(3, height // 8), 1.0, -1)
    noisy = stripes + rng.normal(0, 0.15, stripes.shape)
    return (np.clip(noisy, 0, 1) * 255).astype(np.uint8)


@dataclass
class SyntheticClasses:
    """Generated once into `root` (named by its settings), then served like a user's table with
    columns image, subject (one per image) and label (c00 ... c43)."""

    root: str
    images: int = 3555  # a tenth of the users' 35,551 training images
    classes: int = 44
    smallest: int = 5
    height: int = 80
    width: int = 60
    seed: int = 0

    @property
    def folder(self) -> Path:
        name = f"classes_n{self.images}_c{self.classes}_min{self.smallest}_{self.width}x{self.height}_seed{self.seed}"
        return Path(self.root).expanduser() / name

    @property
    def path(self) -> str:
        return str(self.folder / "labels.csv")

    def prepare(self) -> None:
        generate_once(self.folder, self._generate_into, "the many-class data set")

    def load(self, heads: Mapping[str, Head]) -> pd.DataFrame:
        self.prepare()
        columns = {"image": "image", "subject": "subject"} | {name: "label" for name in heads}
        return TableSource(self.path, str(self.folder / "images"), columns).load(heads)

    def _generate_into(self, folder: Path) -> None:
        rng = np.random.default_rng(self.seed)
        (folder / "images").mkdir()
        rows = []
        for label, count in enumerate(class_counts(self.classes, self.images, self.smallest)):
            for index in range(count):
                name = f"c{label:02d}_{index:05d}.png"
                cv2.imwrite(str(folder / "images" / name), render_pattern(label, self.height, self.width, rng))
                rows.append((name, name.removesuffix(".png"), f"c{label:02d}"))
        pd.DataFrame(rows, columns=["image", "subject", "label"]).to_csv(folder / "labels.csv", index=False)
