"""What the node says of one received image: its bone age, as `predict` would write it for
that file, or why it gives none.

An image is assessed in the order that costs least: its header (another modality, a
non-radiograph object), its size and readability, the inputs the model needs (sex), then the
model's own self-validation. Any of them refusing means no age at all, only the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from boneage.config.errors import ConfigError
from boneage.datamodules.dicom_header import HEADER_COLUMNS, patient_fields
from boneage.datamodules.images import ImageLimits
from boneage.datamodules.intake import set_aside_unreadable
from boneage.evaluation.answers import Answers
from boneage.selfcheck.header import header_refusal
from boneage.tasks.age import AgeHead
from boneage.tasks.clinical import DIFFERENCE, PER_YEAR

MONTHS_PER_YEAR = 12


@dataclass(frozen=True)
class Assessment:
    """One image's answer in months (the unit a DICOM report carries), or `reason` it has none."""

    reason: str | None = None  # why the image was not assessed (None: it was)
    sex: str | None = None  # F or M from PatientSex, the one the model used
    bone_age: float | None = None
    lower: float | None = None  # the conformal interval at `level`
    upper: float | None = None
    level: float | None = None
    chronological_age: float | None = None  # from the header's dates or PatientAge
    difference: float | None = None  # bone age minus chronological age
    finding: str | None = None  # advanced | delayed | within (the chronological age against the interval)

    @property
    def assessed(self) -> bool:
        return self.reason is None


class Assessor:
    """The model's bone-age head behind the node, with the checks of `predict` before it."""

    def __init__(self, answers: Answers, level: float, limits: ImageLimits, modalities: list[str]) -> None:
        ages = [name for name, head in answers.task.heads.items() if isinstance(head, AgeHead)]
        if not ages:
            heads = answers.task.names
            raise ConfigError(f"The DICOM node reports bone age; this model's heads are {heads}, none an age.")
        self.answers, self.level, self.limits, self.modalities = answers, level, limits, modalities
        self.head = answers.task.heads[ages[0]]
        self.prefix = answers.task.column_prefix(ages[0])

    @property
    def member(self) -> object:
        """The first member: the one whose network draws the heat map."""
        return self.answers.members[0]

    def assess(self, path: Path) -> Assessment:
        if reason := header_refusal(path, self.modalities):
            return Assessment(reason)
        header = patient_fields(path)
        rows = pd.DataFrame([header], columns=list(HEADER_COLUMNS)).assign(image=str(path))
        readable, unreadable = set_aside_unreadable(rows, self.limits, inputs=self.answers.inputs)
        if len(unreadable):
            return Assessment(f"not assessed: {unreadable['reason'].iloc[0]}", header["sex"])
        written = self.answers.table(readable, [self.level] if self.level else []).iloc[0]
        if self.answers.gate is not None and not written["assessed"]:
            return Assessment(written["not_assessed"], header["sex"])
        return self._in_months(written, header["sex"])

    def _in_months(self, written: pd.Series, sex: str | None) -> Assessment:
        """predict's row for the image, its ages in months."""
        per_month = PER_YEAR[self.head.unit] / MONTHS_PER_YEAR
        percent = round(100 * self.level) if self.level else None  # interval=null: no interval, no finding

        def given(column: str, prefix: str = self.prefix) -> object | None:
            value = written.get(f"{prefix}{column}")
            return None if value is None or pd.isna(value) else value

        def months(column: str, prefix: str = self.prefix) -> float | None:
            value = given(column, prefix)
            return None if value is None else float(value) / per_month

        return Assessment(
            sex=sex,
            bone_age=months(f"predicted_{self.head.name}"),
            lower=months(f"lower_{percent}"),
            upper=months(f"upper_{percent}"),
            level=self.level,
            chronological_age=months("chronological_age", prefix=""),  # one column, whichever head it serves
            difference=months(DIFFERENCE),
            finding=given(f"development_{percent}"),
        )
