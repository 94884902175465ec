"""A user's label table (CSV or XLSX, one row per image) read into boneage's own columns."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from boneage.config.errors import DataError
from boneage.datamodules.sex import read_sex
from boneage.datamodules.validation import row_problems
from boneage.tasks.protocol import Head

FIXED_ROLES = ("image", "subject", "sex")  # beside these, each of the task's heads is a role (age, label, ...)
DERIVED_COLUMNS = ("problem", "file", "set")  # columns boneage adds; a table's own of these names is not kept


@dataclass
class TableSource:
    """Where the labels and images are, and which table column plays which role.

    `columns` maps boneage's roles (image, subject, sex, and each target the task predicts:
    age, score, label, a multi-task head's name) to the table's own column names; subject
    and sex may be null. Ages stay in the declared `age_unit` (the age head's unit). A table that
    holds ids rather than file names gets `image_suffix` appended (RSNA: `<id>.png`);
    `sex_codes` declares codes such as True/False or 0/1.
    """

    path: str
    image_dir: str
    columns: Mapping[str, str | None] = field(
        default_factory=lambda: {"image": "image", "age": "age", "subject": None, "sex": None}
    )
    age_unit: str = "years"
    sheet: str | int = 0  # XLSX only: sheet name or index
    image_suffix: str = ""
    sex_codes: Mapping[Any, str] | None = None

    def prepare(self) -> None:
        """Nothing to download or generate: the user's files are already on disk."""

    def load(self, heads: Mapping[str, Head]) -> pd.DataFrame:
        """The table as columns image (absolute path), file (as written), one per head of the
        task, subject, sex (F/M/None), row (its number in the file), problem
        (what is wrong, or None), and the table's other columns as they are."""
        raw = self._read()
        mapping = self._checked_mapping(raw, list(heads))
        image_dir = Path(self.image_dir).expanduser()
        names = raw[mapping["image"]].astype(str).str.strip() + self.image_suffix
        raw_sex = raw[mapping["sex"]] if mapping["sex"] else pd.Series(None, index=raw.index, dtype=object)
        table = pd.DataFrame(
            {
                "image": names,
                **{name: head.read(raw[mapping[name]]) for name, head in heads.items()},
                "subject": (raw[mapping["subject"]] if mapping["subject"] else names).astype(str),
                "sex": read_sex(raw_sex, self.sex_codes),
                "raw_sex": raw_sex.where(raw_sex.notna(), None),
                "row": raw.index + 2,  # header is row 1
            }
        )
        for column in raw.columns.difference([*mapping.values(), *table.columns, *DERIVED_COLUMNS], sort=False):
            table[column] = raw[column]  # other columns ride along: model inputs (data.extra_inputs), reports
        target_problems = [head.problems(table[name], self) for name, head in heads.items()]
        table["problem"] = row_problems(table, image_dir, target_problems)
        table["file"] = names
        root = str(image_dir.resolve())
        table["image"] = [os.path.join(root, name) for name in names]  # os.path: pathlib is 10x slower per row
        return table.drop(columns="raw_sex")

    def _read(self) -> pd.DataFrame:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise DataError(f"Label table not found: {path} (set data.source.path).")
        if path.suffix.lower() in (".xlsx", ".xlsm", ".xls"):
            raw = pd.read_excel(path, sheet_name=self.sheet)
        else:
            raw = pd.read_csv(path)
        if raw.empty:
            raise DataError(f"Label table {path} has no rows.")
        return raw

    def _checked_mapping(self, raw: pd.DataFrame, targets: list[str]) -> dict[str, str | None]:
        roles = [*FIXED_ROLES, *targets]
        mapped = {role for role, column in self.columns.items() if column}
        unknown = mapped - set(roles) - {"age"}  # an age column may stay mapped under another task
        if unknown:
            raise DataError(
                f"data.source.columns has unknown role(s) {sorted(unknown)}; the roles are {roles} "
                "(the task's targets: see task=)."
            )
        mapping = {role: self.columns.get(role) for role in roles}
        for role in ("image", *targets):
            if not mapping[role]:
                raise DataError(
                    f"data.source.columns.{role} must name a column of {self.path} (the task predicts {role})."
                )
        for role, column in mapping.items():
            if column and column not in raw.columns:
                raise DataError(
                    f"Column {column!r} (data.source.columns.{role}) is not in {self.path}. "
                    f"Its columns are: {', '.join(map(str, raw.columns))}."
                )
        return mapping
