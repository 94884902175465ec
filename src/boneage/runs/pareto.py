"""The Pareto front of a multi-objective search: the finished trials no other trial beats on
every objective at once (val MAE and inference time, say), as a table and a plot."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from boneage.runs.plots import save_figure


def pareto_front(table: pd.DataFrame, objectives: dict[str, str]) -> pd.DataFrame:
    """The finished runs of `table` on the front of `objectives` (column -> minimize | maximize),
    ordered by the first objective."""
    columns = list(objectives)
    finished = table[(table["status"] == "finished") & table[columns].notna().all(axis=1)]
    signs = np.array([1.0 if direction == "minimize" else -1.0 for direction in objectives.values()])
    costs = finished[columns].to_numpy(dtype=float) * signs  # every objective as one to minimise
    on_front = [not any((other <= cost).all() and (other < cost).any() for other in costs) for cost in costs]
    return finished[on_front].sort_values(columns[0], ascending=signs[0] > 0)


def plot_pareto(table: pd.DataFrame, front: pd.DataFrame, objectives: dict[str, str], path: Path) -> Path:
    """Every finished trial on the first two objectives, the front's trials joined by a line."""
    x, y = list(objectives)[:2]
    finished = table[table["status"] == "finished"]
    figure, axis = plt.subplots(figsize=(6, 4.5))
    axis.scatter(finished[x], finished[y], color="0.7", label="trials")
    axis.plot(front[x], front[y], marker="o", color="tab:red", label="Pareto front")
    for row in front.itertuples():
        axis.annotate(row.run.rsplit("/", 1)[-1], (getattr(row, x), getattr(row, y)), fontsize=8,
                      xytext=(4, 4), textcoords="offset points")  # fmt: skip
    axis.set_xlabel(f"{x} ({objectives[x]})")
    axis.set_ylabel(f"{y} ({objectives[y]})")
    axis.grid(alpha=0.3)
    axis.legend()
    return save_figure(figure, path)
