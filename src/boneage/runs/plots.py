"""Figures as PNG files (never a display): training curves, and the saving every plot shares."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt


def plot_training_curves(
    history: Sequence[dict[str, float]], path: str | Path, unit: str = "", monitor: str = "val/mae"
) -> None:
    """Writes one figure with panels for the loss, the task's metric (`monitor`, on train and
    val) and the lr; keys missing from history are skipped."""
    metric = monitor.removeprefix("val/")
    panels = (
        ("loss", ("train/loss", "val/loss")),
        ("MAE" if metric == "mae" else metric, (f"train/{metric}", monitor)),
        ("learning rate", ("lr",)),
    )
    epochs = [row["epoch"] for row in history]
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4))
    for axis, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            values = [row.get(key) for row in history]
            if any(value is not None for value in values):
                axis.plot(epochs, values, marker=".", label=key)
        axis.set_title(f"{title} ({unit})" if title == "MAE" and unit else title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend()
    if axes[-1].lines:
        axes[-1].set_yscale("log")
    save_figure(figure, path)


def save_figure(figure: plt.Figure, path: str | Path) -> Path:
    """Lay out, write as PNG and free the figure (long sweeps draw many). The PNG is written
    beside its place and renamed into it: a failed write (a full disk) leaves no half file."""
    path = Path(path)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        figure.tight_layout()
        figure.savefig(staging, dpi=100)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
        plt.close(figure)
    return path
