"""The few lines printed at the end of a run."""

from __future__ import annotations

from collections.abc import Mapping


def format_summary(
    metrics: Mapping[str, float],
    mean_predictor_mae: Mapping[str, float],
    unit: str,
    best_checkpoint: str | None,
    run_dir: str,
) -> str:
    lines = ["", f"{'':6}{'MAE':>9}{'RMSE':>9}{'Pearson r':>11}{'mean-predictor MAE':>21}"]
    for stage in ("val", "test"):
        if f"{stage}/mae" not in metrics:
            continue
        lines.append(
            f"{stage:6}{metrics[f'{stage}/mae']:9.3f}{metrics[f'{stage}/rmse']:9.3f}"
            f"{metrics[f'{stage}/pearson']:11.3f}{mean_predictor_mae.get(stage, float('nan')):21.3f}"
        )
    lines += [
        f"(errors in {unit}; the mean predictor always answers the training set's mean age)",
        f"best checkpoint: {best_checkpoint or 'none saved (current weights evaluated)'}",
        f"run directory:   {run_dir}",
    ]
    return "\n".join(lines)
