"""Reading radiographs from disk into one uint8 grayscale array, whatever the file holds."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut

from boneage.config.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")


def read_grayscale(path: str | Path) -> np.ndarray:
    """Decode an 8/16-bit, grayscale/RGB(A) PNG, JPEG, TIFF or a DICOM file into an HxW uint8 array.

    16-bit images are stretched from their own min to max: detectors store 10-14 bits in
    a 16-bit container, so a fixed division by 257 would leave most of them nearly black.
    """
    if is_dicom(path):
        return _stretch_to_uint8(_dicom_pixels(path))
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise DataError(f"Cannot read image {path}: the file is missing, unreadable or not an image.")
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    return image if image.dtype == np.uint8 else _stretch_to_uint8(image)


def unreadable_reason(path: str | Path) -> str | None:
    """Why the image at `path` cannot be used (None: it decodes). Decodes it fully: a truncated
    file passes a header check."""
    path = Path(path)
    if not path.is_file():
        return "file not found"
    if path.stat().st_size == 0:
        return "empty file"
    try:
        read_grayscale(path)
    except DataError as error:
        return str(error).removeprefix(f"Cannot read image {path}: ").removeprefix(f"Cannot read DICOM {path}: ")
    return None


def is_readable_image(path: Path) -> bool:
    """Cheap: reads the header only (full decoding happens in the loader)."""
    if is_dicom(path):
        return True
    try:
        with Image.open(path):
            return True
    except (OSError, UnidentifiedImageError):
        return False


def is_dicom(path: str | Path) -> bool:
    """A DICOM file by its marker (bytes 128-131 are 'DICM'), whatever its name ends with."""
    try:
        with open(path, "rb") as file:
            file.seek(128)
            return file.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_pixels(path: str | Path) -> np.ndarray:
    """Pixels as a hospital viewer shows them: rescale slope/intercept and the stored window
    applied, MONOCHROME1 (bone dark) inverted so that bone is bright as in every other image."""
    try:
        dataset = pydicom.dcmread(path)
        pixels = dataset.pixel_array
    except (InvalidDicomError, AttributeError, ValueError, RuntimeError, OSError) as error:
        raise DataError(
            f"Cannot read DICOM {path}: {error}. Compressed transfer syntaxes need pydicom's decoders "
            "(pip install pylibjpeg pylibjpeg-libjpeg), or export the image uncompressed."
        ) from error
    if pixels.ndim == 3:  # a multi-frame file or RGB: the first frame, or the mean colour
        pixels = pixels.mean(axis=-1) if dataset.get("SamplesPerPixel", 1) == 3 else pixels[0]
    pixels = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset).astype(np.float32)
    if dataset.get("PhotometricInterpretation") == "MONOCHROME1":
        pixels = pixels.max() - pixels
    return pixels


def _stretch_to_uint8(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return ((image - low) * scale).round().astype(np.uint8)
