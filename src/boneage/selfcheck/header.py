"""Stage 1 of self-validation: a DICOM header that rules out a hand radiograph.

Headers lie about body parts (BodyPartExamined is often empty, or says CHEST for a hand), so
only objects that cannot be a radiograph at all are refused here: another modality (CT, MR,
US, NM, PT, RT objects, SEG, SR, waveforms), or a storage class that is not a projection
radiograph's. Everything else, files without a modality and every non-DICOM image included,
goes on to the image's own features.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pydicom
from pydicom.uid import UID

from boneage.datamodules.images import is_dicom

# The storage classes a hand radiograph arrives in: computed and digital radiography, and the
# secondary captures of digitised film. A class pydicom does not know (a private one) passes.
RADIOGRAPH_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
    "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage - For Presentation
    "1.2.840.10008.5.1.4.1.1.1.1.1",  # Digital X-Ray Image Storage - For Processing
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word Secondary Capture Image Storage
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame True Color Secondary Capture Image Storage
}


def header_refusal(path: str | Path, modalities: Collection[str]) -> str | None:
    """Why the DICOM file at `path` cannot be a hand radiograph, read from its header alone (its
    pixels are never decoded); None for a possible one, a non-DICOM image or an unreadable header
    (the reader names what is wrong with it)."""
    if not is_dicom(path):
        return None
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "SOPClassUID"])
    except Exception:
        return None
    modality = str(header.get("Modality") or "").strip().upper()
    if modality and modality not in modalities:
        accepted = ", ".join(modalities)
        return f"not assessed: modality {modality} cannot be a hand radiograph (accepted_modalities: {accepted})"
    kind = header.get("SOPClassUID")
    if isinstance(kind, UID) and kind.is_valid and kind.name != kind and kind not in RADIOGRAPH_CLASSES:
        return f"not assessed: a {kind.name} object cannot be a hand radiograph"
    return None
