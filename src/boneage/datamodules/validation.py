"""Row-level checks of a label table: every bad row named with what is wrong with it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from boneage.datamodules.images import IMAGE_SUFFIXES

SEX_CODES_HINT = " (declare what it means: data.source.sex_codes, e.g. {true: M, false: F})"


def row_problems(table: pd.DataFrame, image_dir: Path, target_problems: Sequence[pd.Series] = ()) -> pd.Series:
    """What is wrong with each row (None where nothing is): first problem found wins, the
    targets' own (`target_problems`, one per head of the task) first. Whether each file decodes
    is checked after these, by decoding it (see ImageDataModule.setup).

    `table` holds image (path as written), sex, and raw_sex (the cell as written, to tell an
    unknown code from an empty cell).
    """
    problems = pd.Series(None, index=table.index, dtype=object)

    def flag(mask: pd.Series, reason: str | pd.Series) -> None:
        fresh = mask & problems.isna()
        problems[fresh] = reason if isinstance(reason, str) else reason[fresh]

    for found in target_problems:
        flag(found.notna(), found)
    unknown_sex = table["raw_sex"].notna() & table["sex"].isna()
    flag(unknown_sex, "unknown sex code " + table["raw_sex"].astype(str).map(repr) + SEX_CODES_HINT)
    first_row = table.groupby("image")["row"].transform("first")
    flag(table["image"].duplicated(), "duplicate of row " + first_row.astype(str))
    root = os.path.realpath(image_dir)  # strings and os.path: pathlib takes seconds on 10,000s of rows
    paths = table["image"].map(lambda name: os.path.realpath(os.path.join(root, name)))
    flag(~paths.map(lambda path: path.startswith(os.path.join(root, ""))), "path outside the image folder")
    missing = ~paths.map(os.path.isfile)
    flag(missing, paths[missing].map(_missing_file_reason).reindex(paths.index))
    return problems


def describe(problems: pd.DataFrame, table_path: str, shown: int = 5) -> str:
    """A message grouping bad rows by problem: how many, and the first few rows and files."""
    lines = [f"{len(problems)} bad row(s) in {table_path} (row numbers as a spreadsheet shows them):"]
    for reason, rows in problems.groupby("problem", sort=False):
        examples = ", ".join(f"{row.row} ({row.file})" for row in rows.head(shown).itertuples())
        more = f" and {len(rows) - shown} more" if len(rows) > shown else ""
        lines.append(f"  {reason}: {len(rows)} row(s): {examples}{more}")
    lines.append("Fix the table, or set data.on_bad_rows=drop to train without these rows.")
    return "\n".join(lines)


def _missing_file_reason(path: str) -> str:
    """'file not found', with the way out when the table holds names without their extension."""
    for suffix in IMAGE_SUFFIXES:
        if os.path.isfile(path + suffix):
            return f"file not found, but the name with {suffix} is there (set data.source.image_suffix={suffix})"
    return "file not found"
