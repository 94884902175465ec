"""The one reader every image enters through: one 2-D uint8 grayscale array, or a named refusal.

Whatever a file holds (8/16-bit, float or signed pixels, colour, palettes, several frames, any
DICOM transfer syntax), what comes out is checked (2-D, non-empty, finite) before anything else
sees it, and "can this file be used" is answered by this same reader (`unreadable_reason`), so
the two can never disagree. A boundary that takes files from outside (the table check, predict's
folder, the server) passes its `ImageLimits`: the pixel count is then read from the header and
a decompression bomb refused before a pixel is decoded.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pydicom
from PIL import Image, UnidentifiedImageError
from pydicom.filereader import read_file_meta_info
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array
from pydicom.uid import DeflatedExplicitVRLittleEndian

from boneage.config.errors import ConfigError, DataError

# pydicom logs each decoding plugin's failure with a traceback before it raises; read_grayscale
# turns that failure into UnreadableImage naming every plugin's reason, so the tracebacks only repeat it.
logging.getLogger("pydicom.pixels.decoders.base").addFilter(lambda record: record.exc_info is None)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")
MULTI_FRAME = ("first", "refuse")
DICM_PREAMBLE = 132  # 128 bytes of preamble and the 'DICM' marker
META_LENGTH_ELEMENT = 12  # (0002,0000) File Meta Information Group Length: tag, VR, length, value
PIXEL_KEYWORDS = {"PixelData", "FloatPixelData", "DoubleFloatPixelData"}
NOT_AN_IMAGE = "not a readable image (not a PNG, JPEG, TIFF, BMP or DICOM file, or truncated)"
ITU_R_601 = np.array([0.299, 0.587, 0.114], np.float32)  # luma of R, G, B: gray as a viewer (and OpenCV) shows colour


class UnreadableImage(DataError):
    """A named refusal: why one image file cannot be used. `too_large`: over the pixel limit."""

    def __init__(self, path: str | Path, reason: str, too_large: bool = False) -> None:
        super().__init__(f"Cannot read image {path}: {reason}")
        self.path, self.reason, self.too_large = str(path), reason, too_large


@dataclass(frozen=True)
class ImageLimits:
    """What a boundary accepts: at most `max_pixels` (rows x columns x frames, from the header;
    None: no limit), and for a file of several frames its first (`first`) or none (`refuse`)."""

    max_pixels: int | None = None
    multi_frame: str = "first"

    def __post_init__(self) -> None:
        if self.multi_frame not in MULTI_FRAME:
            raise ConfigError(f"multi_frame must be one of {MULTI_FRAME}, not {self.multi_frame!r}.")
        if self.max_pixels is not None and self.max_pixels <= 0:
            raise ConfigError(f"max_pixels must be positive (or null: no limit), not {self.max_pixels}.")


def read_grayscale(path: str | Path, limits: ImageLimits | None = None) -> np.ndarray:
    """Decode an image file into an HxW uint8 array, or raise `UnreadableImage` with the reason.

    16-bit, signed and float images are stretched from their own min to max: detectors store
    10-14 bits in a 16-bit container, so a fixed division by 257 would leave most of them nearly
    black. Without `limits`, no pixel limit applies (readers after a boundary that checked).
    """
    limits = limits or ImageLimits()
    path = Path(path)
    if not path.is_file():
        raise UnreadableImage(path, "file not found")
    if path.stat().st_size == 0:
        raise UnreadableImage(path, "empty file")
    try:
        image = _dicom_pixels(path, limits) if is_dicom(path) else _other_pixels(path, limits)
        return _checked(image, path)
    except UnreadableImage:
        raise
    except Exception as error:  # any decoder's failure (corrupt data, a codec's own error, memory) is this file's
        detail = " ".join(str(error).split())  # pydicom names each decoding plugin's failure on a line of its own
        raise UnreadableImage(path, f"cannot be decoded ({type(error).__name__}: {detail[:400]})") from error


def unreadable_reason(path: str | Path, limits: ImageLimits | None = None) -> str | None:
    """Why the image at `path` cannot be used (None: it reads). Decodes it fully, with the reader
    itself: a truncated file passes a header check."""
    try:
        read_grayscale(path, limits)
    except UnreadableImage as refusal:
        return refusal.reason
    return None


def is_dicom(path: str | Path) -> bool:
    """A DICOM file by its marker (bytes 128-131 are 'DICM'), whatever its name ends with."""
    try:
        with open(path, "rb") as file:
            file.seek(128)
            return file.read(4) == b"DICM"
    except OSError:
        return False


def is_dicomdir(path: str | Path) -> bool:
    """A DICOMDIR: the index a PACS export or CD carries beside its images, not an image."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["MediaStorageSOPClassUID"])
    except Exception:
        return False
    return header.file_meta.get("MediaStorageSOPClassUID") == pydicom.uid.MediaStorageDirectoryStorage


def _refuse_oversized(path: Path, limits: ImageLimits, shape: str, pixels: int) -> None:
    if limits.max_pixels is not None and pixels > limits.max_pixels:
        raise UnreadableImage(
            path, f"too large: {pixels:,} pixels ({shape}), over max_pixels={limits.max_pixels:,}", too_large=True
        )


def _refuse_deflate_bomb(path: Path, limits: ImageLimits) -> None:
    """A Deflated file is inflated whole by pydicom before a single header element is read, so a
    few MB can become many GB before the pixel count is known. Inflate it here first, a megabyte
    at a time, and refuse it once it grows past what `max_pixels` allows (8 bytes a pixel, and
    16 MB of header)."""
    if limits.max_pixels is None:
        return
    meta = read_file_meta_info(path)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return
    allowed = 8 * limits.max_pixels + 2**24
    start = DICM_PREAMBLE + META_LENGTH_ELEMENT + int(meta.get("FileMetaInformationGroupLength", 0))
    if _inflates_past(path, start, allowed):
        reason = f"too large: its Deflated data inflates past {allowed:,} bytes (max_pixels={limits.max_pixels:,})"
        raise UnreadableImage(path, reason, too_large=True)


def _inflates_past(path: Path, start: int, allowed: int) -> bool:
    """Whether the raw deflate stream from byte `start` of `path` inflates to more than `allowed`
    bytes; never more than a megabyte of it is held at once. The stream may end before the file
    (the standard pads an odd stream with a byte), and zlib then keeps that byte as an unconsumed
    tail for ever: the end of the stream, not of the input, ends the loop."""
    inflater, inflated = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with open(path, "rb") as file:
        file.seek(start)
        pending = b""
        while not inflater.eof and (pending or (pending := file.read(2**20))):
            inflated += len(inflater.decompress(pending, 2**20))
            if inflated > allowed:
                return True
            pending = inflater.unconsumed_tail
    return False


def _other_pixels(path: Path, limits: ImageLimits) -> np.ndarray:
    """PNG, JPEG, TIFF, BMP: the size from the header first (Pillow reads only that), then OpenCV
    decodes (8 and 16 bits, any channels)."""
    if limits.max_pixels is not None:
        try:
            with Image.open(path) as header:
                width, height = header.size
        except Image.DecompressionBombError as error:  # Pillow's own limit, above any sensible max_pixels
            raise UnreadableImage(path, f"too large ({error}); max_pixels={limits.max_pixels:,}", True) from error
        except (OSError, UnidentifiedImageError, ValueError) as error:
            raise UnreadableImage(path, NOT_AN_IMAGE) from error
        _refuse_oversized(path, limits, f"{width} x {height}", width * height)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UnreadableImage(path, NOT_AN_IMAGE)
    if image.ndim == 3 and image.shape[2] <= 2:  # gray, or gray and alpha
        return image[..., 0]
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY)
    return image


def _dicom_pixels(path: Path, limits: ImageLimits) -> np.ndarray:
    """Pixels as a hospital viewer shows them: the first frame, rescale slope/intercept and the
    stored window applied, MONOCHROME1 (bone dark) inverted so that bone is bright as in every
    other image, colour (RGB, YBR, palette) as its luma. Every transfer syntax decodes through
    pydicom's pylibjpeg plugins (JPEG, JPEG-LS, JPEG 2000, RLE)."""
    _refuse_deflate_bomb(path, limits)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    rows, columns = int(header.get("Rows") or 0), int(header.get("Columns") or 0)
    if not rows or not columns:
        kind = header.get("SOPClassUID")
        what = kind.name if isinstance(kind, pydicom.uid.UID) else "no SOP class"
        modality = header.get("Modality", "?")
        raise UnreadableImage(
            path, f"no image in this DICOM file ({what}, modality {modality}: a report, or cut short)"
        )
    frames = int(header.get("NumberOfFrames") or 1)
    if frames > 1 and limits.multi_frame == "refuse":
        raise UnreadableImage(path, f"{frames} frames in one file (multi_frame=first reads the first)")
    _refuse_oversized(path, limits, f"{columns} x {rows} x {frames} frame(s)", rows * columns * frames)
    dataset = pydicom.dcmread(path)
    if not PIXEL_KEYWORDS & set(dataset.dir()):
        raise UnreadableImage(path, f"no pixel data in this DICOM file (its header names a {columns} x {rows} image: "
                                    "the file was cut short, or its pixels removed)")  # fmt: skip
    pixels = pixel_array(dataset, index=0 if frames > 1 else None)  # decodes one frame, not the whole series
    for keyword in PIXEL_KEYWORDS & set(dataset.dir()):  # decoded: the encoded copy need not stay beside it
        delattr(dataset, keyword)
    photometric = str(dataset.get("PhotometricInterpretation", ""))
    if photometric == "PALETTE COLOR":
        return _luma(apply_color_lut(pixels, dataset))
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # RGB, or YBR that pydicom turned into RGB
        return _luma(pixels)
    if _linear_luts(dataset):
        pixels, inverted = _windowed_in_place(pixels, dataset)
    else:  # lookup tables or a sigmoid: pydicom's own functions, in float64
        pixels, inverted = apply_voi_lut(apply_modality_lut(pixels, dataset), dataset), False
    gray = _checked(pixels, path)
    flat = gray.min() == gray.max()  # a constant image has no dark and bright to swap
    return 255 - gray if inverted != (photometric == "MONOCHROME1") and not flat else gray


def _linear_luts(dataset: pydicom.Dataset) -> bool:
    """Rescale and window are straight lines (no lookup tables, no sigmoid): the usual radiograph."""
    tables = ("ModalityLUTSequence", "VOILUTSequence")
    return not any(table in dataset for table in tables) and dataset.get("VOILUTFunction", "LINEAR") != "SIGMOID"


def _windowed_in_place(pixels: np.ndarray, dataset: pydicom.Dataset) -> tuple[np.ndarray, bool]:
    """The stored window applied as a clip of the stored values, in their own dtype: after the
    min-max stretch this equals rescaling and windowing in float64 (both maps are straight lines;
    within two gray levels, the window's edges rounded to stored integers), without the
    8-bytes-a-pixel copies that cost gigabytes at 50 MP. Returns the pixels and whether the
    rescale's negative slope inverted them."""
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    centers, widths = dataset.get("WindowCenter"), dataset.get("WindowWidth")
    if centers is not None and widths is not None and _first(widths) >= 1:
        center, width = _first(centers), _first(widths)
        exact = dataset.get("VOILUTFunction") == "LINEAR_EXACT"
        low, high = (center - width / 2, center + width / 2) if exact else (center - 0.5 - (width - 1) / 2,
                                                                           center - 0.5 + (width - 1) / 2)  # fmt: skip
        stored = np.sort([(low - intercept) / slope, (high - intercept) / slope])
        if pixels.dtype.kind in "ui":  # integer bounds inside the dtype's range
            limits = np.iinfo(pixels.dtype)
            stored = np.clip([np.ceil(stored[0]), np.floor(stored[1])], limits.min, limits.max)
        np.clip(pixels, *stored.astype(pixels.dtype), out=pixels)
    return pixels, slope < 0


def _first(value: object) -> float:
    """A multi-valued window (several presets) gives its first, as viewers show it."""
    return float(value[0]) if isinstance(value, pydicom.multival.MultiValue) else float(value)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Gray of an RGB array, in its own integer range (uint8 stays uint8, as OpenCV's BGR2GRAY)."""
    gray = rgb.astype(np.float32) @ ITU_R_601
    return gray.round().astype(rgb.dtype) if rgb.dtype.kind in "ui" else gray


def _checked(image: np.ndarray, path: Path) -> np.ndarray:
    """The reader's promise: one 2-D, non-empty, finite image, as uint8."""
    if image.ndim != 2 or image.size == 0:
        raise UnreadableImage(path, f"not one 2-D image (decoded shape {image.shape})")
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise UnreadableImage(path, "pixels that are not finite numbers (NaN or infinity)")
    return image if image.dtype == np.uint8 else _stretch_to_uint8(image)


def _stretch_to_uint8(image: np.ndarray) -> np.ndarray:
    """Min to max onto 0..255 in one pass, with no float copy of a (possibly 50 MP) image."""
    if image.dtype not in (np.uint16, np.int16, np.int32, np.float32, np.float64):  # what OpenCV takes
        image = image.astype(np.float32)
    return cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)


def unreadable_images(paths: Sequence[str], limits: ImageLimits | None = None, workers: int = 1) -> dict[str, str]:
    """Each of `paths` that does not read, with its reason; decoded in `workers` threads (the
    decoders release the GIL)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        reasons = pool.map(lambda path: unreadable_reason(path, limits), paths)
        return {path: reason for path, reason in zip(paths, reasons, strict=True) if reason is not None}
