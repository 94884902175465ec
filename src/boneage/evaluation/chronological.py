"""Bone age against chronological age: the clinical question, advanced or delayed.

A child whose chronological age lies below the prediction interval of its bone age is advanced,
above it delayed; inside it, the model cannot tell the two apart at that level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DIFFERENCE = "bone_age_minus_chronological"
PER_YEAR = {"years": 1.0, "months": 12.0}  # an age unit's value of one year


def compare_with_chronological(rows: pd.DataFrame, predicted: str, levels: Sequence[float]) -> None:
    """Adds the difference (`predicted` minus column chronological_age) and, per interval level
    whose lower_/upper_ columns are there, development_<level>: advanced, delayed or within (empty
    where the chronological age is unknown)."""
    chronological = pd.to_numeric(rows["chronological_age"], errors="coerce")
    rows[DIFFERENCE] = rows[predicted] - chronological
    for level in levels:
        name = f"{round(100 * level)}"
        known = chronological.notna()
        development = np.select(
            [chronological < rows[f"lower_{name}"], chronological > rows[f"upper_{name}"]],
            ["advanced", "delayed"],
            "within",
        )
        rows[f"development_{name}"] = pd.Series(development, index=rows.index).where(known, None)


def chronological_figures(rows: pd.DataFrame, levels: Sequence[float]) -> dict[str, Any] | None:
    """The difference's distribution, and how many are advanced or delayed at each level; None
    where no image has a chronological age."""
    difference = rows[DIFFERENCE].dropna()
    if difference.empty:
        return None
    figures: dict[str, Any] = {
        "n": len(difference),
        "mean": float(difference.mean()),
        "sd": float(difference.std()) if len(difference) > 1 else 0.0,
        "median": float(difference.median()),
        "q05": float(difference.quantile(0.05)),
        "q95": float(difference.quantile(0.95)),
    }
    for level in levels:
        column = f"development_{round(100 * level)}"
        counts = rows[column].value_counts()
        figures[f"{round(100 * level)}%"] = {
            kind: int(counts.get(kind, 0)) for kind in ("advanced", "within", "delayed")
        }
    return figures


def chronological_lines(figures: dict[str, Any], unit: str) -> list[str]:
    """report.md's section on bone age minus chronological age."""
    lines = [
        "", "## Bone age minus chronological age", "",
        f"{figures['n']} images with a chronological age: difference mean {figures['mean']:.3f} {unit} "
        f"(SD {figures['sd']:.3f}), median {figures['median']:.3f}, "
        f"5-95% {figures['q05']:.3f} to {figures['q95']:.3f}.",
        "", "| interval level | advanced (chronological below) | within | delayed (chronological above) |",
        "|---|---|---|---|",
    ]  # fmt: skip
    for key, counts in figures.items():
        if key.endswith("%"):
            lines.append(f"| {key} | {counts['advanced']} | {counts['within']} | {counts['delayed']} |")
    return lines
