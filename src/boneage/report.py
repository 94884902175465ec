"""`python -m boneage.report PATH...`: one ranked table of every run under the given folders.

Reads only the run records (`run.json`), so it works on finished, failed, running and
half-written runs alike, and on runs from any machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from boneage.plots import save_figure
from boneage.records import RECORD_NAME, process_gone
from boneage.techniques import active_techniques

log = logging.getLogger(__name__)

PARAMETERS = ("model", "dropout", "lr", "weight_decay", "loss", "batch_size", "image_size", "clahe")
LOG_SCALE = ("lr", "weight_decay")
COLUMNS = (
    "run", "status", "val_mae", "best_epoch", "test_mae", *PARAMETERS,
    "techniques", "age_bin_width", "fold", "parameters", "inference_ms", "duration_s",
)  # fmt: skip


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Run directories under `paths`: those with a run record or at least Hydra's config."""
    found = set()
    for path in paths:
        for marker in (*path.rglob(RECORD_NAME), *path.rglob(".hydra/config.yaml")):
            run = marker.parent.parent if marker.parent.name == ".hydra" else marker.parent
            found.add(run)
    return sorted(found)


def run_row(run_dir: Path, root: Path) -> dict[str, Any]:
    """One table row; a missing or unreadable record gives a row that says so."""
    row: dict[str, Any] = {"run": _relative(run_dir, root)}
    try:
        record = json.loads((run_dir / RECORD_NAME).read_text())
    except FileNotFoundError:
        return row | {"status": "no record", "error": "the run stopped before writing run.json"}
    except (OSError, json.JSONDecodeError) as error:
        return row | {"status": "unreadable", "error": f"{RECORD_NAME}: {error}"}
    config = record.get("config") or {}
    model, optimizer, data = (config.get(key) or {} for key in ("model", "optimizer", "data"))
    metrics = record.get("metrics") or {}
    best = record.get("best") or {}
    gone = process_gone(record)
    return row | {
        "status": "interrupted" if gone else record.get("status", "unknown"),
        "val_mae": metrics.get("val/mae", best.get("val/mae")),
        "best_epoch": best.get("epoch"),
        "test_mae": metrics.get("test/mae"),
        "model": model.get("name"),
        "dropout": model.get("dropout"),
        "lr": optimizer.get("lr"),
        "weight_decay": optimizer.get("weight_decay"),
        "loss": str((config.get("loss") or {}).get("_target_", "")).rsplit(".", 1)[-1] or None,
        "batch_size": data.get("batch_size"),
        "image_size": data.get("image_size"),
        "clahe": data.get("clahe"),
        "techniques": ", ".join(record.get("techniques") or active_techniques(config)) or None,
        "age_bin_width": (data.get("split") or {}).get("age_bin_width"),
        "fold": data.get("fold") if data.get("folds") else None,
        "parameters": (record.get("model") or {}).get("parameters"),
        "inference_ms": (record.get("speed") or {}).get("inference_ms_per_image"),
        "duration_s": record.get("duration_s"),
        "error": "its process ended without a word (killed, or the machine stopped)" if gone else record.get("error"),
    }


def build_table(paths: Sequence[Path]) -> pd.DataFrame:
    """Every run, ranked by val MAE (runs without one last)."""
    root = _common_root(paths)
    rows = [run_row(run, root) for run in find_runs(paths)]
    table = pd.DataFrame(rows, columns=[*COLUMNS, "error"])
    table = table.sort_values("val_mae", na_position="last", kind="stable").reset_index(drop=True)
    table.index = table.index + 1
    table.index.name = "rank"
    return table


def compare_with_baseline(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Adds each run's change in val and test MAE against the baseline run (negative: better)."""
    matches = table[table["run"].str.endswith(baseline.rstrip("/"))]
    if len(matches) != 1:
        raise SystemExit(f"--baseline {baseline!r} matches {len(matches)} runs; give a longer part of its path.")
    reference = matches.iloc[0]
    table = table.copy()
    for metric in ("val_mae", "test_mae"):
        table[f"{metric}_change"] = table[metric] - reference[metric]
        table[f"{metric}_change_pct"] = 100 * table[f"{metric}_change"] / reference[metric]
    return table


def aggregate_folds(table: pd.DataFrame) -> pd.DataFrame:
    """Cross-validation: mean and standard deviation of each metric over the folds of a setting."""
    finished = table[(table["status"] == "finished") & table["fold"].notna()]
    if finished.empty:
        return pd.DataFrame()
    setting = [name for name in PARAMETERS if finished[name].notna().any()]
    grouped = finished.groupby([finished[name].astype(str) for name in setting])
    summary = grouped[["val_mae", "test_mae"]].agg(["mean", "std"])
    summary.columns = [f"{metric}_{statistic}" for metric, statistic in summary.columns]
    return summary.assign(folds=grouped.size()).reset_index()


def swept_parameters(table: pd.DataFrame) -> list[str]:
    """The parameters that differ between the finished runs."""
    finished = table[table["status"] == "finished"]
    return [name for name in PARAMETERS if finished[name].astype(str).nunique() > 1]


def plot_sweeps(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Val/test MAE against each swept parameter, and an architecture comparison."""
    finished = table[table["status"] == "finished"]
    swept = swept_parameters(table)
    written = []
    for name in swept:
        figure, axis = plt.subplots(figsize=(6, 4))
        numeric = pd.api.types.is_numeric_dtype(finished[name]) and name != "clahe"
        by_value = finished.groupby(finished[name] if numeric else finished[name].astype(str))
        means = by_value[["val_mae", "test_mae"]].mean().sort_index()
        if numeric:
            for metric in ("val_mae", "test_mae"):
                axis.plot(means.index, means[metric], marker="o", label=metric.replace("_", " "))
            if name in LOG_SCALE:
                axis.set_xscale("log")
        else:
            means.plot.bar(ax=axis, rot=30)
        axis.set_xlabel(name)
        axis.set_ylabel("MAE")
        axis.grid(alpha=0.3)
        axis.legend()
        written.append(save_figure(figure, out_dir / f"mae_vs_{name}.png"))
    if "model" in swept:
        written.append(_plot_architectures(finished, out_dir / "architectures.png"))
    return written


def _plot_architectures(finished: pd.DataFrame, path: Path) -> Path:
    by_model = finished.groupby("model")[["val_mae", "parameters", "inference_ms"]].mean().sort_values("val_mae")
    by_model["parameters"] = by_model["parameters"] / 1e6
    titles = {"val_mae": "val MAE", "parameters": "parameters (M)", "inference_ms": "inference ms / image"}
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, (column, title) in zip(axes, titles.items(), strict=True):
        by_model[column].plot.bar(ax=axis, rot=30)
        axis.set_title(title)
        axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


def write_report(table: pd.DataFrame, folds: pd.DataFrame, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = table.drop(columns="error")
    shown.to_csv(out_dir / "report.csv")
    failed = table[table["status"] != "finished"]
    lines = ["# Runs ranked by val MAE", "", shown.to_markdown(floatfmt=".4g"), ""]
    if len(failed):
        lines += ["## Runs that did not finish", ""]
        lines += [f"- `{row.run}`: {_failure(row)}" for row in failed.itertuples()]
    written = [out_dir / "report.csv", out_dir / "report.md"]
    if not folds.empty:
        folds.to_csv(out_dir / "report_folds.csv", index=False)
        lines += ["## Cross-validation (mean and std over folds)", "", folds.to_markdown(index=False), ""]
        written.append(out_dir / "report_folds.csv")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    return [*written, *plot_sweeps(table, out_dir)]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m boneage.report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="run, sweep or output folders (searched recursively)")
    parser.add_argument("--out", type=Path, help="where to write report.csv/.md and plots (default: the first PATH)")
    parser.add_argument("--baseline", help="a run (its path or the end of it) to compare every run against")
    args = parser.parse_args(argv)
    missing = [str(path) for path in args.paths if not path.is_dir()]
    if missing:
        parser.error(f"not a folder: {', '.join(missing)}")
    table = build_table(args.paths)
    if table.empty:
        parser.error(f"no runs under {', '.join(map(str, args.paths))}")
    if args.baseline:
        table = compare_with_baseline(table, args.baseline)
    folds = aggregate_folds(table)
    written = write_report(table, folds, args.out or args.paths[0])
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.drop(columns="error").to_string(float_format=lambda v: f"{v:.4g}"))
    if not folds.empty:
        print("cross-validation (mean and std over folds):\n" + folds.to_string(index=False))
    failed = table[table["status"] != "finished"]
    for row in failed.itertuples():
        print(f"not finished: {row.run}: {_failure(row)}")
    print("wrote " + ", ".join(str(path) for path in written))


def _failure(row: Any) -> str:
    return f"{row.status}: {row.error or 'no error recorded'}"


def _common_root(paths: Sequence[Path]) -> Path:
    """Run names are shown relative to the folder above the given paths' common folder."""
    return Path(os.path.commonpath([path.resolve() for path in paths])).parent


def _relative(run_dir: Path, root: Path) -> str:
    try:
        return str(run_dir.resolve().relative_to(root)) or "."
    except ValueError:
        return str(run_dir)


if __name__ == "__main__":
    main()
