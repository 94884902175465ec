"""The lines printed at the end of a run: per head, its metrics beside the trivial predictor's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from boneage.tasks.base import SummaryTable

STAGES = ("val", "test")


def format_summary(
    metrics: Mapping[str, float], tables: Sequence[SummaryTable], best_checkpoint: str | None, run_dir: str
) -> str:
    """One table per head (untitled when the task has one): its figures on val and test beside
    what the trivial predictor (the training mean, the majority class) scores, then its notes."""
    lines = []
    for table in tables:
        lines += ["", *([table.title] if table.title else []), *_table(metrics, table), *table.notes]
    lines += [
        f"best checkpoint: {best_checkpoint or 'none saved (current weights evaluated)'}",
        f"run directory:   {run_dir}",
    ]
    return "\n".join(lines)


def _table(metrics: Mapping[str, float], table: SummaryTable) -> list[str]:
    columns, trivial = table.columns, table.trivial
    widths = [max(9, len(title) + 2) for title, _ in columns] + [len(title) + 3 for title, _ in trivial]
    titles = [title for title, _ in (*columns, *trivial)]
    lines = [f"{'':6}" + "".join(f"{title:>{width}}" for title, width in zip(titles, widths, strict=True))]
    for stage in STAGES:
        if f"{stage}/{table.prefix}{columns[0][1]}" not in metrics:
            continue
        values = [metrics.get(f"{stage}/{table.prefix}{key}", float("nan")) for _, key in columns]
        values += [by_stage.get(stage, float("nan")) for _, by_stage in trivial]
        lines.append(f"{stage:6}" + "".join(_cell(value, width) for value, width in zip(values, widths, strict=True)))
    return lines


def _cell(value: float | None, width: int) -> str:
    """A count as itself (classes present), any other figure to three decimals."""
    if value is None:
        return f"{'–':>{width}}"
    return f"{value:{width}d}" if isinstance(value, int) and not isinstance(value, bool) else f"{value:{width}.3f}"
