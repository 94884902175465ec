"""A site's own bone-age readings, as its archive holds them: structured reports whose NUM
"XR Bone age" (LOINC 85151-9) refers to the radiograph it was read on. A folder exported from
the archive (images and reports together) is then a labelled table without a table.

A report written by boneage itself is an answer, not a reading: it is never taken as a label.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
import pydicom
from pydicom.dataset import Dataset

BONE_AGE_LOINC = "85151-9"
UCUM_IN_YEARS = {"a": 1.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25}
ANSWERING_MANUFACTURER = "boneage"


def split_readings(files: Iterable[Path]) -> tuple[list[Path], pd.DataFrame]:
    """The image files among `files`, and the readings of the structured reports among them
    (columns sop_instance_uid of the image read, reading_years, read_in: the report's file)."""
    images, readings = [], []
    for path in files:
        header = _header(path)
        if header is None or header.get("Modality") != "SR":
            images.append(path)
            continue
        if str(header.get("Manufacturer", "")).strip() == ANSWERING_MANUFACTURER:
            continue
        for image_uid, years in _bone_ages(header):
            readings.append({"sop_instance_uid": image_uid, "reading_years": years, "read_in": str(path)})
    return images, pd.DataFrame(readings, columns=["sop_instance_uid", "reading_years", "read_in"])


def sop_instance_uid(path: str | Path) -> str | None:
    header = _header(path)
    return None if header is None else str(header.get("SOPInstanceUID", "")) or None


def _header(path: str | Path) -> Dataset | None:
    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # not DICOM, or a header pydicom cannot parse: the image reader names why
        return None


def _bone_ages(report: Dataset) -> Iterator[tuple[str, float]]:
    """(image SOP Instance UID, age in years) of each bone-age NUM in `report` with a known unit,
    referred to the image its measurement group names (else the report's only evidence image)."""
    evidence = [
        sop.ReferencedSOPInstanceUID
        for study in report.get("CurrentRequestedProcedureEvidenceSequence", [])
        for series in study.get("ReferencedSeriesSequence", [])
        for sop in series.get("ReferencedSOPSequence", [])
    ]

    def walk(items: Iterable[Dataset], image: str | None) -> Iterator[tuple[str, float]]:
        items = list(items)
        image = next((item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in items
                      if item.get("ValueType") == "IMAGE" and "ReferencedSOPSequence" in item), image)  # fmt: skip
        for item in items:
            name = item.ConceptNameCodeSequence[0] if "ConceptNameCodeSequence" in item else None
            if item.get("ValueType") == "NUM" and name is not None and name.CodeValue == BONE_AGE_LOINC:
                value = item.MeasuredValueSequence[0]
                unit = value.MeasurementUnitsCodeSequence[0].CodeValue
                if unit in UCUM_IN_YEARS and image is not None:
                    yield image, float(value.NumericValue) * UCUM_IN_YEARS[unit]
            yield from walk(item.get("ContentSequence", []), image)

    yield from walk(report.get("ContentSequence", []), evidence[0] if len(evidence) == 1 else None)
