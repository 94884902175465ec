"""report.md: the evaluation's figures in one page that reads on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from boneage.evaluation.chronological import chronological_lines

FIGURES = (
    ("mae", "MAE"), ("mae_ci95", "MAE 95% CI"), ("rmse", "RMSE"), ("median_ae", "median absolute error"),
    ("bias", "mean signed error (bias)"), ("pearson_r", "Pearson r"), ("spearman_rho", "Spearman rho"), ("r2", "R²"),
)  # fmt: skip


def write_markdown(metrics: Mapping[str, Any], plots: Sequence[Path], path: Path) -> None:
    unit = metrics["unit"]
    lines = [
        "# Evaluation",
        "",
        f"Runs: {', '.join(f'`{run}`' for run in metrics['runs'])}; test-time augmentation: {metrics['tta']}; "
        f"{metrics['image']['n']} images of {metrics['subject']['n']} subjects ({metrics['evaluated_on']}). "
        f"Errors in {unit}.",
        "",
        "| figure | per image | per subject (mean of its images) |",
        "|---|---|---|",
    ]
    within = [key for key in metrics["image"] if key.startswith("within_")]
    for key, label in (*FIGURES, *((key, f"share within {key.removeprefix('within_')} {unit}") for key in within)):
        lines.append(f"| {label} | {_fmt(metrics['image'][key])} | {_fmt(metrics['subject'][key])} |")
    for title, key in (("MAE per age bin", "mae_per_age_bin"), ("MAE per sex", "mae_per_sex")):
        if key in metrics:
            lines += ["", f"## {title}", "", "| group | MAE | images |", "|---|---|---|"]
            lines += [f"| {group} | {_fmt(v['mae'])} | {v['n']} |" for group, v in metrics[key].items()]
    if "members" in metrics:
        lines += ["", "## Ensemble against its members (same images)", "", "| model | MAE | RMSE | Pearson r |"]
        lines += ["|---|---|---|---|", _member_row("ensemble", metrics["image"])]
        lines += [_member_row(name, figures) for name, figures in metrics["members"].items()]
    lines += _interval_lines(metrics["intervals"], unit)
    if "calibration" in metrics:
        lines += _calibration_lines(metrics["calibration"])
    if metrics.get("chronological"):
        lines += chronological_lines(metrics["chronological"], unit)
    if ood := metrics.get("out_of_distribution"):
        rest = f"MAE {_fmt(ood['mae_flagged'])} against {_fmt(ood['mae_rest'])} for the rest" if ood["flagged"] else ""
        lines += ["", "## Out-of-distribution flags", "",
                  f"{ood['flagged']} of {metrics['image']['n']} images flagged (feature distance above the validation "
                  f"images' {ood['quantile']:g} quantile, {_fmt(ood['threshold'])}). {rest}"]  # fmt: skip
    if "tta_against_none" in metrics:
        lines += ["", f"## Test-time augmentation ({metrics['tta']}) against none (same images)", ""]
        lines += ["| predictions | MAE | RMSE | Pearson r |", "|---|---|---|---|"]
        lines += [_member_row(name, figures) for name, figures in metrics["tta_against_none"].items()]
    lines += ["", "## Figures", ""] + [f"![{plot.stem}]({plot.name})" for plot in plots]
    path.write_text("\n".join(lines) + "\n")


def _interval_lines(intervals: Mapping[str, Any], unit: str) -> list[str]:
    levels = [key for key in intervals if key.endswith("%")]
    if not levels:
        return []
    grouped = f", one table per {intervals['by']}" if intervals["by"] else ""
    lines = ["", f"## Prediction intervals (split-conformal, calibrated on {intervals['calibrated_on']}{grouped})", ""]
    lines += [f"| level | coverage | mean width ({unit}) |", "|---|---|---|"]
    for level in levels:
        lines.append(f"| {level} | {_fmt(intervals[level]['coverage'])} | {_fmt(intervals[level]['mean_width'])} |")
    for group in ("per_age_bin", "per_sex"):
        rows = {name: figures for level in levels for name, figures in intervals[level].get(group, {}).items()}
        if rows:
            lines += ["", f"Coverage {group.replace('_', ' ')}: " + "; ".join(
                f"{level} " + ", ".join(f"{name} {_fmt(f['coverage'])}" for name, f in intervals[level][group].items())
                for level in levels
            )]  # fmt: skip
    return lines


def _calibration_lines(calibration: Mapping[str, Any]) -> list[str]:
    line = f"corrected = {calibration['slope']:.3f} x predicted + {calibration['intercept']:.3f}"
    lines = ["", f"## Linear calibration ({line}, fitted on the validation subjects)", ""]
    lines += ["| age bin | images | MAE before | MAE after | bias before | bias after |", "|---|---|---|---|---|---|"]
    for name, v in calibration["per_age_bin"].items():
        figures = " | ".join(_fmt(v[key]) for key in ("mae_before", "mae_after", "bias_before", "bias_after"))
        lines.append(f"| {name} | {v['n']} | {figures} |")
    return lines


def _member_row(name: str, figures: Mapping[str, float]) -> str:
    return f"| {name} | {_fmt(figures['mae'])} | {_fmt(figures['rmse'])} | {_fmt(figures['pearson_r'])} |"


def _fmt(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "–".join(_fmt(v) for v in value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)
