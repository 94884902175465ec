"""What a DICOM header says about the patient, used where a table would have given it.

A folder of DICOM files comes without a label table, but each header names the patient's sex
(PatientSex) and age: StudyDate minus PatientBirthDate (to the day), or PatientAge (`010Y`,
`018M`, `030W`, `100D`: whole units, so the dates are preferred where both are given).
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any

import pydicom

DAYS_PER_YEAR = 365.25
PATIENT_AGE_UNITS = {"D": 1 / DAYS_PER_YEAR, "W": 7 / DAYS_PER_YEAR, "M": 1 / 12, "Y": 1.0}  # in years
HEADER_COLUMNS = ("sex", "chronological_age_years", "chronological_age_from")


def patient_fields(path: str | Path) -> dict[str, Any]:
    """sex (F/M, or None), chronological_age_years (or None) and chronological_age_from (which
    header fields gave it) of one DICOM file; all None where the header does not say."""
    try:
        header = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["PatientSex", "PatientAge", "PatientBirthDate", "StudyDate"]
        )
    except Exception:  # an unreadable header is the reader's to report; here it just says nothing
        return dict.fromkeys(HEADER_COLUMNS)
    sex = str(header.get("PatientSex") or "").strip().upper()
    years, source = (
        _age_from_dates(header.get("StudyDate"), header.get("PatientBirthDate")),
        "StudyDate - PatientBirthDate",
    )
    if years is None:
        years, source = _age_from_patient_age(header.get("PatientAge")), "PatientAge"
    return {
        "sex": sex if sex in ("F", "M") else None,
        "chronological_age_years": years,
        "chronological_age_from": source if years is not None else None,
    }


def _age_from_dates(study: Any, birth: Any) -> float | None:
    study_date, birth_date = _date(study), _date(birth)
    if study_date is None or birth_date is None or study_date < birth_date:
        return None
    return (study_date - birth_date).days / DAYS_PER_YEAR


def _age_from_patient_age(value: Any) -> float | None:
    text = str(value or "").strip().upper()
    if len(text) != 4 or not text[:3].isdigit() or text[3] not in PATIENT_AGE_UNITS:
        return None
    return int(text[:3]) * PATIENT_AGE_UNITS[text[3]]


def _date(value: Any) -> date | None:
    """A DICOM DA value (YYYYMMDD), or None where it is missing or malformed."""
    try:
        return datetime.strptime(str(value or "").strip(), "%Y%m%d").date()
    except ValueError:
        return None
