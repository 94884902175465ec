"""DICOM files as archives and modalities write them, encoded by the codecs they use.

pydicom's own encoders write RLE and JPEG 2000 (OpenJPEG); imagecodecs writes the JPEG family with
libjpeg-turbo (Baseline, 12-bit Extended, Lossless Process 14 and SV1) and JPEG-LS with CharLS:
the files the reader meets are made by other tools than the reader's own decoders.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import imagecodecs
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filereader import read_file_meta_info
from pydicom.fileset import FileSet
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from boneage.datamodules.images import DICM_PREAMBLE, META_LENGTH_ELEMENT

DIGITAL_XRAY = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"

UNCOMPRESSED = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian]
LOSSLESS = [*UNCOMPRESSED, RLELossless, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless]
LOSSY = [JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLSNearLossless, JPEG2000]
EVERY_SYNTAX = LOSSLESS + LOSSY


def radiograph(rows: int = 96, columns: int = 72, seed: int = 0) -> np.ndarray:
    """A 12-bit detector image (in uint16): a smooth hand-like blob on a dark field, with noise."""
    y, x = np.mgrid[:rows, :columns]
    blob = np.exp(-(((y - rows / 2) / (rows / 3)) ** 2) - ((x - columns / 2) / (columns / 4)) ** 2)
    noise = np.random.default_rng(seed).normal(0, 40, (rows, columns))
    return np.clip(200 + 3600 * blob + noise, 0, 4095).astype(np.uint16)


def dataset(shape: tuple[int, ...], syntax: str, bits: int, photometric: str = "MONOCHROME2", **patient) -> Dataset:
    """An image's header: shape (rows, columns[, samples]) or (frames, rows, columns[, samples])."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = DIGITAL_XRAY, generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientID, ds.PatientName = "DX", "P001", "Test^Child"
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "20260101", "120000", "1", 1, 1
    for key, value in patient.items():
        setattr(ds, key, value)
    colour = photometric not in ("MONOCHROME1", "MONOCHROME2", "PALETTE COLOR")
    frames = shape[0] if len(shape) == (4 if colour else 3) else 1
    ds.Rows, ds.Columns = shape[-3:-1] if colour else shape[-2:]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = (3 if colour else 1), photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, min(bits, 12), min(bits, 12) - 1, 0
    if bits == 8:
        ds.BitsStored, ds.HighBit = 8, 7
    return ds


def write_dicom(path: Path, pixels: np.ndarray, syntax: str = ExplicitVRLittleEndian, **header) -> Path:
    """`pixels` (uint8, or uint16 holding 12 bits) written in `syntax`, with extra header fields."""
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds = dataset(pixels.shape, ExplicitVRLittleEndian, bits, **header)
    if syntax in (RLELossless, JPEG2000Lossless):
        ds.PixelData = pixels.tobytes()
        ds.compress(syntax, pixels)
    elif syntax == JPEG2000:
        ds.PixelData = pixels.tobytes()
        ds.compress(syntax, pixels, j2k_cr=[15])
    elif syntax in UNCOMPRESSED:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = (pixels.byteswap() if syntax == ExplicitVRBigEndian else pixels).tobytes()
    else:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([_jpeg(syntax, frame) for frame in (pixels if "NumberOfFrames" in ds else [pixels])])
        ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def _jpeg(syntax: str, frame: np.ndarray) -> bytes:
    bits = 12 if frame.dtype == np.uint16 else 8
    if syntax in (JPEGBaseline8Bit, JPEGExtended12Bit):  # Extended: Process 2 (8 bits) or 4 (12 bits)
        return imagecodecs.jpeg8_encode(frame, level=90, bitspersample=bits)
    if syntax in (JPEGLossless, JPEGLosslessSV1):
        return imagecodecs.jpeg8_encode(frame, lossless=True, predictor=1 if syntax == JPEGLosslessSV1 else 6,
                                        bitspersample=bits)  # fmt: skip
    if syntax == JPEGLSLossless:
        return imagecodecs.jpegls_encode(frame)
    if syntax == JPEGLSNearLossless:
        return imagecodecs.jpegls_encode(frame, level=2)
    raise ValueError(f"no encoder here for {syntax}")


def write_colour_frames(path: Path, frames: np.ndarray, syntax: str) -> Path:
    """Multi-frame colour as ultrasound and endoscopy store it: RLE of RGB, or JPEG Baseline of YBR."""
    if syntax == RLELossless:
        ds = dataset(frames.shape, ExplicitVRLittleEndian, 8, photometric="RGB")
        ds.PixelData = frames.tobytes()
        ds.compress(RLELossless, frames)
    else:
        ds = dataset(frames.shape, JPEGBaseline8Bit, 8, photometric="YBR_FULL_422")
        ds.PixelData = encapsulate([imagecodecs.jpeg8_encode(frame, level=90, outcolorspace="ycbcr",
                                                             subsampling="422") for frame in frames])  # fmt: skip
        ds["PixelData"].VR = "OB"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_palette(path: Path, indices: np.ndarray, palette: np.ndarray) -> Path:
    """PALETTE COLOR: 8-bit indices into a 256-entry 16-bit RGB lookup table (`palette`, 256 x 3)."""
    ds = dataset(indices.shape, ExplicitVRLittleEndian, 8, photometric="PALETTE COLOR")
    for channel, name in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{name}PaletteColorLookupTableData", palette[:, channel].astype("<u2").tobytes())
    ds.PixelData = indices.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_signed(path: Path, pixels: np.ndarray) -> Path:
    """A CT-like slice: signed 16-bit stored values, Hounsfield units through slope and intercept."""
    ds = dataset(pixels.shape, ExplicitVRLittleEndian, 16)
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 16, 15
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = pixels.astype(np.int16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_float(path: Path, pixels: np.ndarray) -> Path:
    """Float Pixel Data (parametric maps): 32-bit floats, no stored-bits arithmetic."""
    ds = dataset(pixels.shape, ExplicitVRLittleEndian, 32)
    for key in ("BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, key)
    ds.FloatPixelData = pixels.astype("<f4").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_report(path: Path) -> Path:
    """A structured report: a DICOM file with no image at all."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = BASIC_TEXT_SR, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = BASIC_TEXT_SR, meta.MediaStorageSOPInstanceUID, "SR"
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_dicom_bomb(path: Path, side: int = 30000) -> Path:
    """A small file whose header claims side x side 16-bit pixels (its pixel data is one row)."""
    ds = dataset((side, side), ExplicitVRLittleEndian, 16)
    ds.PixelData = bytes(2 * side)
    ds.save_as(path, enforce_file_format=True)
    return path


def png_bomb(path: Path, side: int = 20000, bit_depth: int = 16) -> Path:
    """A real decompression bomb: a valid side x side grayscale PNG of zeros, streamed into zlib
    row by row (a few hundred KB on disk, side² x 2 bytes once decoded)."""
    compressor, row = zlib.compressobj(9), bytes(1 + side * bit_depth // 8)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", side, side, bit_depth, 0, 0, 0, 0)  # grayscale, no interlace
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def pacs_export(folder: Path, hand: np.ndarray, **patient) -> list[Path]:
    """An export as a PACS writes it to disk: DICOMDIR at the top, files named IM000000... in nested
    patient/study/series folders, no extensions, the hand in every transfer syntax above."""
    staging = folder.with_name(folder.name + "_staging")
    files = [write_dicom(staging / f"{index}", hand, syntax, **patient) for index, syntax in enumerate(EVERY_SYNTAX)]
    fileset = FileSet()
    for file in files:
        fileset.add(file)
    fileset.write(folder)
    shutil.rmtree(staging)
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "DICOMDIR")


def deflated_at(path: Path, side: int) -> Path:
    """A side x side 16-bit radiograph of zeros, rescaled and windowed, in Deflated Explicit VR: a few
    hundred KB that decode through pydicom's most memory-hungry path (inflate, rescale, window)."""
    ds = dataset((side, side), DeflatedExplicitVRLittleEndian, 16, RescaleSlope=2, RescaleIntercept=-1024,
                 WindowCenter=0, WindowWidth=4000)  # fmt: skip
    ds.PixelData = bytes(2 * side * side)
    ds.save_as(path, enforce_file_format=True)
    return path


def padded_deflated(path: Path, pixels: np.ndarray) -> Path:
    """`pixels` in Deflated Explicit VR whose deflate stream has odd length, so the file ends with the
    pad byte the standard asks for after it (about every other Deflated file a writer makes)."""
    for patient in range(64):
        write_dicom(path, pixels, DeflatedExplicitVRLittleEndian, PatientID=f"P{patient:03d}")
        stream_start = DICM_PREAMBLE + META_LENGTH_ELEMENT + read_file_meta_info(path).FileMetaInformationGroupLength
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        inflater.decompress(path.read_bytes()[stream_start:])
        if inflater.eof and inflater.unused_data == b"\x00":
            return path
    raise AssertionError("64 Deflated files in a row had even-length streams")


def deflated_bomb(path: Path, hidden_mb: int = 40) -> Path:
    """A Deflated file whose header claims a small image but which carries `hidden_mb` MB of zeros
    in a private element: a few tens of KB on disk, inflated whole by a reader before its header."""
    ds = dataset((64, 48), DeflatedExplicitVRLittleEndian, 8)
    ds.PixelData = bytes(64 * 48)
    ds.add_new(0x00091010, "OB", bytes(hidden_mb * 2**20))
    ds.save_as(path, enforce_file_format=True)
    return path
