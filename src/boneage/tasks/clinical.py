"""What a clinician asks of an age estimate, beyond its error: per age bin and sex, per subject,
with a bootstrap interval of the MAE; the linear calibration's effect per age bin; and bone age
against chronological age (advanced, delayed or within the interval). The age head's evaluation
and report are written from these, wherever the head is (alone, or one of several).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from boneage.tasks.markdown import comparison_lines, fmt, heading, interval_lines
from boneage.tasks.metrics import bootstrap_mae_interval, regression_metrics

DIFFERENCE = "bone_age_minus_chronological"
PER_YEAR = {"years": 1.0, "months": 12.0}  # an age unit's value of one year
FIGURES = (
    ("mae", "MAE"), ("mae_ci95", "MAE 95% CI"), ("rmse", "RMSE"), ("median_ae", "median absolute error"),
    ("bias", "mean signed error (bias)"), ("pearson_r", "Pearson r"), ("spearman_rho", "Spearman rho"), ("r2", "R²"),
)  # fmt: skip


def age_bins(ages: pd.Series, width: float) -> pd.Series:
    """Each age's bin as "[low, high)", ordered from the youngest bin (every per-age-bin table)."""
    lows = np.floor(ages / width) * width
    labels = {low: f"[{low:g}, {low + width:g})" for low in sorted(lows.unique())}
    return pd.Series(pd.Categorical(lows.map(labels), categories=list(labels.values())), index=ages.index)


def grouped_mae(true: pd.Series, predicted: pd.Series, by: pd.Series) -> dict[Any, dict[str, float]]:
    """MAE and count per group (age bin, sex), in the groups' natural order."""
    error = (predicted - true).abs()
    return {name: {"mae": float(group.mean()), "n": len(group)} for name, group in error.groupby(by, observed=True)}


def clinical_figures(
    ages: pd.DataFrame, limits: Sequence[float], bin_width: float, resamples: int, seed: int
) -> dict[str, Any]:
    """Image- and subject-level figures (a subject: the mean of its images' true and predicted
    ages), per age bin and per sex, with a bootstrap MAE interval. `ages`: columns true,
    predicted, subject and sex, one row per image."""
    result: dict[str, Any] = {}
    subjects = ages.groupby("subject", sort=False)[["true", "predicted"]].mean()
    for level, rows in (("image", ages), ("subject", subjects)):
        figures = regression_metrics(rows["true"], rows["predicted"], limits)
        figures["mae_ci95"] = bootstrap_mae_interval(rows["true"], rows["predicted"], resamples, seed)
        result[level] = figures
    result["mae_per_age_bin"] = grouped_mae(ages["true"], ages["predicted"], age_bins(ages["true"], bin_width))
    if ages["sex"].notna().any():
        result["mae_per_sex"] = grouped_mae(ages["true"], ages["predicted"], ages["sex"].fillna("unknown"))
    return result


def calibration_figures(
    true: pd.Series, before: pd.Series, after: pd.Series, line: Mapping[str, float], bin_width: float
) -> dict[str, Any]:
    """The fitted line, and MAE and bias per age bin before and after it."""
    per_bin = {}
    for name, index in true.groupby(age_bins(true, bin_width), observed=True).groups.items():
        was, now = before[index] - true[index], after[index] - true[index]
        per_bin[name] = {
            "n": len(index), "mae_before": float(was.abs().mean()), "mae_after": float(now.abs().mean()),
            "bias_before": float(was.mean()), "bias_after": float(now.mean()),
        }  # fmt: skip
    return {"method": "linear", "slope": line["slope"], "intercept": line["intercept"], "per_age_bin": per_bin}


def compare_with_chronological(
    rows: pd.DataFrame,
    predicted: str,
    levels: Sequence[float],
    prefix: str = "",
    chronological: str = "chronological_age",
) -> None:
    """Adds the difference (`predicted` minus column `chronological`) and, per interval level
    whose <prefix>lower_/upper_ columns are there, <prefix>development_<level>: advanced, delayed
    or within (empty where the chronological age is unknown)."""
    chronological = pd.to_numeric(rows[chronological], errors="coerce")
    rows[f"{prefix}{DIFFERENCE}"] = rows[predicted] - chronological
    for level in levels:
        name = f"{round(100 * level)}"
        development = np.select(
            [chronological < rows[f"{prefix}lower_{name}"], chronological > rows[f"{prefix}upper_{name}"]],
            ["advanced", "delayed"],
            "within",
        )
        rows[f"{prefix}development_{name}"] = pd.Series(development, index=rows.index).where(
            chronological.notna(), None
        )


def chronological_figures(rows: pd.DataFrame, levels: Sequence[float], prefix: str = "") -> dict[str, Any] | None:
    """The difference's distribution, and how many are advanced or delayed at each level; None
    where no image has a chronological age."""
    difference = rows[f"{prefix}{DIFFERENCE}"].dropna()
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
        counts = rows[f"{prefix}development_{round(100 * level)}"].value_counts()
        figures[f"{round(100 * level)}%"] = {
            kind: int(counts.get(kind, 0)) for kind in ("advanced", "within", "delayed")
        }
    return figures


def clinical_lines(figures: Mapping[str, Any], unit: str, level: int) -> list[str]:
    """report.md's sections of an age head's figures."""
    image, subject = figures["image"], figures["subject"]
    lines = ["", "| figure | per image | per subject (mean of its images) |", "|---|---|---|"]
    within = [key for key in image if key.startswith("within_")]
    for key, label in (*FIGURES, *((key, f"share within {key.removeprefix('within_')} {unit}") for key in within)):
        lines.append(f"| {label} | {fmt(image[key])} | {fmt(subject[key])} |")
    for title, key in (("MAE per age bin", "mae_per_age_bin"), ("MAE per sex", "mae_per_sex")):
        if key in figures:
            lines += [*heading(level, title), "| group | MAE | images |", "|---|---|---|"]
            lines += [f"| {group} | {fmt(v['mae'])} | {v['n']} |" for group, v in figures[key].items()]
    if "members" in figures:
        compared = {"ensemble": image, **figures["members"]}
        lines += comparison_lines("Ensemble against its members (same images)", "model", compared, level)
    lines += interval_lines(figures.get("intervals", {}), unit, level)
    if "calibration" in figures:
        lines += _calibration_lines(figures["calibration"], level)
    if figures.get("chronological"):
        lines += _chronological_lines(figures["chronological"], unit, level)
    return lines


def _calibration_lines(calibration: Mapping[str, Any], level: int) -> list[str]:
    line = f"corrected = {calibration['slope']:.3f} x predicted + {calibration['intercept']:.3f}"
    lines = heading(level, f"Linear calibration ({line}, fitted on the validation subjects)")
    lines += ["| age bin | images | MAE before | MAE after | bias before | bias after |", "|---|---|---|---|---|---|"]
    for name, v in calibration["per_age_bin"].items():
        values = " | ".join(fmt(v[key]) for key in ("mae_before", "mae_after", "bias_before", "bias_after"))
        lines.append(f"| {name} | {v['n']} | {values} |")
    return lines


def _chronological_lines(figures: Mapping[str, Any], unit: str, level: int) -> list[str]:
    """The section on bone age minus chronological age."""
    lines = [
        *heading(level, "Bone age minus chronological age"),
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
