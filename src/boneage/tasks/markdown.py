"""The pieces of report.md that every head's section is written from: numbers, headings, the
interval table and the comparison of an ensemble with its members (or of TTA with none)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fmt(value: Any) -> str:
    """A figure as report.md shows it: floats to three decimals, a pair as a range."""
    if isinstance(value, list | tuple):
        return "–".join(fmt(v) for v in value)
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def heading(level: int, title: str) -> list[str]:
    return ["", f"{'#' * level} {title}", ""]


def interval_lines(intervals: Mapping[str, Any], unit: str | None, level: int) -> list[str]:
    """The conformal intervals' coverage and width at each level, and per group where reported."""
    levels = [key for key in intervals if key.endswith("%")]
    if not levels:
        return []
    grouped = f", one table per {intervals['by']}" if intervals.get("by") else ""
    lines = heading(
        level, f"Prediction intervals (split-conformal, calibrated on {intervals['calibrated_on']}{grouped})"
    )
    lines += [f"| level | coverage | mean width{f' ({unit})' if unit else ''} |", "|---|---|---|"]
    for name in levels:
        lines.append(f"| {name} | {fmt(intervals[name]['coverage'])} | {fmt(intervals[name]['mean_width'])} |")
    for group in ("per_age_bin", "per_sex"):
        rows = {key: figures for name in levels for key, figures in intervals[name].get(group, {}).items()}
        if rows:
            lines += ["", f"Coverage {group.replace('_', ' ')}: " + "; ".join(
                f"{name} " + ", ".join(f"{key} {fmt(f['coverage'])}" for key, f in intervals[name][group].items())
                for name in levels
            )]  # fmt: skip
    return lines


def comparison_lines(title: str, column: str, figures: Mapping[str, Mapping[str, float]], level: int) -> list[str]:
    """MAE, RMSE and Pearson r of several predictions of the same images (an ensemble and its
    members, TTA and none), one row each."""
    lines = [*heading(level, title), f"| {column} | MAE | RMSE | Pearson r |", "|---|---|---|---|"]
    return lines + [
        f"| {name} | {fmt(f['mae'])} | {fmt(f['rmse'])} | {fmt(f['pearson_r'])} |" for name, f in figures.items()
    ]


def figure_table(figures: Mapping[str, Any]) -> list[str]:
    """A head's single figures (not its tables, nor its unit) as a two-column table."""
    lines = ["", "| figure | value |", "|---|---|"]
    return lines + [f"| {key.replace('_', ' ')} | {fmt(value)} |" for key, value in figures.items()
                    if not isinstance(value, dict | list) and key != "unit"]  # fmt: skip


def figures_line(figures: Mapping[str, Any]) -> str:
    """A head's figures in one line, as evaluate prints them."""
    shown = ", ".join(f"{key} {value:.3f}" for key, value in figures.items() if isinstance(value, float))
    return f"{shown} on {figures['n']} images"
