"""Sex codes as tables write them (F/M, female/male, 女/男, True/False, 0/1) read as F or M."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

KNOWN_CODES = {
    "f": "F", "female": "F", "w": "F", "woman": "F", "girl": "F", "女": "F",
    "m": "M", "male": "M", "man": "M", "boy": "M", "男": "M",
}  # fmt: skip


def read_sex(values: pd.Series, declared: Mapping[Any, str] | None = None) -> pd.Series:
    """F, M or None per cell. `declared` (data.source.sex_codes) gives the meaning of codes
    that say nothing by themselves, e.g. {True: M, False: F} for a column named `male`."""
    codes = {**KNOWN_CODES, **{_code(key): str(sex).upper() for key, sex in (declared or {}).items()}}
    read = values.map(lambda cell: None if pd.isna(cell) else codes.get(_code(cell)))
    return read.astype(object).where(read.notna(), None)


def _code(cell: Any) -> str:
    """One spelling per code: True and 'true', 1, 1.0 and '1' are the same code."""
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    return str(cell).strip().lower()
