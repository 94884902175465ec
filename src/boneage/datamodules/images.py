"""Reading radiographs from disk into one uint8 grayscale array, whatever the file holds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from boneage.errors import DataError


def read_grayscale(path: str | Path) -> np.ndarray:
    """Decode an 8/16-bit, grayscale/RGB(A) PNG, JPEG or TIFF into an HxW uint8 array.

    16-bit images are stretched from their own min to max: detectors store 10-14 bits in
    a 16-bit container, so a fixed division by 257 would leave most of them nearly black.
    """
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"Cannot read image {path}: the file is missing, unreadable or not an image.")
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return ((image - low) * scale).round().astype(np.uint8)
