"""Table columns fed to the model beside the image (data.extra_inputs), encoded as numbers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from boneage.config.errors import DataError
from boneage.datamodules.sex import read_sex

SEX_VALUES = {"F": 1.0, "M": 0.0}


def encode_inputs(rows: pd.DataFrame, columns: Sequence[str], source: str = "the table") -> np.ndarray:
    """An (images x columns) float32 array: sex as F=1/M=0, any other column as its number.

    Every value must be present: a model trained with an input cannot guess it later.
    """
    encoded = np.empty((len(rows), len(columns)), dtype=np.float32)
    for position, column in enumerate(columns):
        if column not in rows:
            raise DataError(
                f"data.extra_inputs names column {column!r}, which {source} does not have; "
                f"its columns are: {', '.join(map(str, rows.columns))}."
            )
        values = _sex_codes(rows[column]) if column == "sex" else pd.to_numeric(rows[column], errors="coerce")
        missing = values.isna().to_numpy()
        if missing.any():
            shown = rows.loc[missing, "row"] if "row" in rows else pd.Series(np.flatnonzero(missing))
            raise DataError(
                f"Column {column!r} of {source} (a model input, data.extra_inputs) is empty or not a number in "
                f"{int(missing.sum())} row(s), e.g. row(s) {', '.join(map(str, shown.head(5)))}. "
                "Fill them in, or drop the column from data.extra_inputs."
            )
        encoded[:, position] = values.to_numpy(np.float32)
    return encoded


def _sex_codes(values: pd.Series) -> pd.Series:
    return read_sex(values).map(SEX_VALUES).astype(float)
