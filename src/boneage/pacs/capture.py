"""The answer as a picture, for viewers that do not render SR: a Secondary Capture (highdicom)
of the radiograph with its Grad-CAM heat map (a trained run; an export has no gradients, so
its picture is the radiograph alone) and the age written on it, in a series of its own."""

from __future__ import annotations

from pathlib import Path

import cv2
import highdicom as hd
import numpy as np
import pandas as pd
from pydicom.dataset import Dataset

from boneage.datamodules.images import read_grayscale
from boneage.evaluation.heatmaps import heat_maps
from boneage.evaluation.inference import TrainedRun
from boneage.pacs.assessment import Assessment
from boneage.pacs.identity import NodeIdentity, derived_uid

SC_SERIES_NUMBER = 9002
HEIGHT = 768  # the picture's rows: readable text on any viewer's tile
MIN_WIDTH = 640  # the caption's longest line fits


def picture(member: object, image: Path) -> np.ndarray:
    """The radiograph as RGB uint8, under its heat map where the member can make one."""
    if isinstance(member, TrainedRun):
        return heat_maps(member, pd.DataFrame({"image": [str(image)]}))[0]
    gray = read_grayscale(image)
    return np.repeat(gray[..., None], 3, axis=2)


def secondary_capture(source: Dataset, rgb: np.ndarray, assessment: Assessment, identity: NodeIdentity) -> Dataset:
    """The Secondary Capture of `rgb` with the assessment written on it, in `source`'s study."""
    width = round(rgb.shape[1] * HEIGHT / rgb.shape[0])
    canvas = cv2.resize(rgb, (width, HEIGHT), interpolation=cv2.INTER_CUBIC)
    if width < MIN_WIDTH:  # a narrow radiograph: black sides, so that the text fits
        side = np.zeros((HEIGHT, (MIN_WIDTH - width) // 2, 3), np.uint8)
        canvas = np.concatenate([side, canvas, side], axis=1)
    canvas = np.concatenate([canvas, np.zeros((110, canvas.shape[1], 3), np.uint8)])  # a band for the text
    for row, line in enumerate(caption(assessment)):
        cv2.putText(canvas, line, (12, HEIGHT + 34 + 34 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2,
                    cv2.LINE_AA)  # fmt: skip
    uid = source.SOPInstanceUID
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source,
        pixel_array=np.ascontiguousarray(canvas),
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=derived_uid(uid, identity, "sc-series"),
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=derived_uid(uid, identity, "sc"),
        instance_number=1,
        manufacturer=identity.manufacturer,
        patient_orientation=_orientation(source) or ("L", "F"),  # highdicom insists; emptied below if unknown
        laterality=_laterality(source),
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        contributing_equipment=[identity.equipment()],
    )
    capture.SeriesDescription = "Bone age heat map (boneage)"
    if _orientation(source) is None:  # Type 2: empty says "not known", where a guess would mislead
        capture.PatientOrientation = None
    if "Laterality" not in capture:  # Type 2C for a paired body part: empty where the source does not say
        capture.Laterality = None
    return capture


def caption(assessment: Assessment) -> list[str]:
    """The lines written under the picture: the age in years and months, its interval, and the
    chronological age with the finding."""
    lines = [f"Bone age {_years_months(assessment.bone_age)}"]
    if assessment.lower is not None:
        level = round(100 * assessment.level)
        lines[0] += f"  ({level}%: {_years_months(assessment.lower)} - {_years_months(assessment.upper)})"
    if assessment.chronological_age is not None:
        lines.append(f"Chronological {_years_months(assessment.chronological_age)}: {assessment.finding}")
    return lines


def _years_months(months: float) -> str:
    years, rest = divmod(round(months), 12)
    return f"{years} y {rest} m"


def _orientation(source: Dataset) -> tuple[str, str] | None:
    """The source's PatientOrientation where it gives one."""
    given = [str(value) for value in (source.get("PatientOrientation") or [])]
    return (given[0], given[1]) if len(given) == 2 and all(given) else None


def _laterality(source: Dataset) -> str | None:
    """The source's Laterality or ImageLaterality (L, R) where it gives one."""
    given = str(source.get("Laterality") or source.get("ImageLaterality") or "").strip().upper()
    return given if given in ("L", "R") else None
