"""The few lines printed at the end of a run: the task's metrics beside the trivial predictor's."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

STAGES = ("val", "test")


def format_summary(
    metrics: Mapping[str, float],
    columns: Sequence[tuple[str, str]],
    trivial: Sequence[tuple[str, Mapping[str, float]]],
    note: str,
    best_checkpoint: str | None,
    run_dir: str,
) -> str:
    """`columns`: (title, metric name after the stage) of the task's figures; `trivial`: (title,
    value per stage) of what the trivial predictor (the training mean, the majority class) scores."""
    widths = [max(9, len(title) + 2) for title, _ in columns] + [len(title) + 3 for title, _ in trivial]
    titles = [title for title, _ in (*columns, *trivial)]
    lines = ["", f"{'':6}" + "".join(f"{title:>{width}}" for title, width in zip(titles, widths, strict=True))]
    for stage in STAGES:
        if f"{stage}/{columns[0][1]}" not in metrics:
            continue
        values = [metrics.get(f"{stage}/{key}", float("nan")) for _, key in columns]
        values += [by_stage.get(stage, float("nan")) for _, by_stage in trivial]
        lines.append(f"{stage:6}" + "".join(_cell(value, width) for value, width in zip(values, widths, strict=True)))
    lines += [
        note,
        f"best checkpoint: {best_checkpoint or 'none saved (current weights evaluated)'}",
        f"run directory:   {run_dir}",
    ]
    return "\n".join(lines)


def _cell(value: float, width: int) -> str:
    """A count as itself (classes present), any other figure to three decimals."""
    return f"{value:{width}d}" if isinstance(value, int) and not isinstance(value, bool) else f"{value:{width}.3f}"
