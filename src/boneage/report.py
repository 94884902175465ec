"""`python -m boneage.report PATH...`: one ranked table of every run under the given folders,
ranked by the runs' task metric (val MAE for age runs; accuracy, SRCC... for the others).

Reads only the run records (`run.json`, see boneage/runs/table.py), so it works on finished,
failed, running and half-written runs alike, and on runs from any machine.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import pandas as pd

from boneage.runs.pareto import pareto_front, plot_pareto
from boneage.runs.plots import save_figure
from boneage.runs.table import PARAMETERS, Ranking, build_table

log = logging.getLogger(__name__)

LOG_SCALE = ("lr", "weight_decay")


def compare_with_baseline(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Adds each run's change in the val and test metric against the baseline run."""
    matches = table[table["run"].str.endswith(baseline.rstrip("/"))]
    if len(matches) != 1:
        raise SystemExit(f"--baseline {baseline!r} matches {len(matches)} runs; give a longer part of its path.")
    reference = matches.iloc[0]
    table = table.copy()
    ranking = table.attrs["ranking"]
    for metric in (ranking.val, ranking.test):
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
    ranking = table.attrs["ranking"]
    summary = grouped[[ranking.val, ranking.test]].agg(["mean", "std"])
    summary.columns = [f"{metric}_{statistic}" for metric, statistic in summary.columns]
    return summary.assign(folds=grouped.size()).reset_index()


def swept_parameters(table: pd.DataFrame) -> list[str]:
    """The parameters that differ between the finished runs."""
    finished = table[table["status"] == "finished"]
    return [name for name in PARAMETERS if finished[name].astype(str).nunique() > 1]


def plot_sweeps(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """The val/test metric against each swept parameter, and an architecture comparison."""
    finished = table[table["status"] == "finished"]
    ranking = table.attrs["ranking"]
    swept = swept_parameters(table)
    written = []
    for name in swept:
        figure, axis = plt.subplots(figsize=(6, 4))
        numeric = pd.api.types.is_numeric_dtype(finished[name]) and name != "clahe"
        by_value = finished.groupby(finished[name] if numeric else finished[name].astype(str))
        means = by_value[[ranking.val, ranking.test]].mean().sort_index()
        if numeric:
            for metric in (ranking.val, ranking.test):
                axis.plot(means.index, means[metric], marker="o", label=metric.replace("_", " "))
            if name in LOG_SCALE:
                axis.set_xscale("log")
        else:
            means.plot.bar(ax=axis, rot=30)
        axis.set_xlabel(name)
        axis.set_ylabel(_metric_name(ranking))
        axis.grid(alpha=0.3)
        axis.legend()
        written.append(save_figure(figure, out_dir / f"{ranking.val.split('_', 1)[1]}_vs_{name}.png"))
    if "model" in swept:
        written.append(_plot_architectures(finished, ranking, out_dir / "architectures.png"))
    return written


def _metric_name(ranking: Ranking) -> str:
    name = ranking.val.split("_", 1)[1]
    return "MAE" if name == "mae" else name


def _plot_architectures(finished: pd.DataFrame, ranking: Ranking, path: Path) -> Path:
    by_model = finished.groupby("model")[[ranking.val, "parameters", "inference_ms"]].mean()
    by_model = by_model.sort_values(ranking.val, ascending=ranking.ascending)
    by_model["parameters"] = by_model["parameters"] / 1e6
    titles = {ranking.val: f"val {_metric_name(ranking)}", "parameters": "parameters (M)",
              "inference_ms": "inference ms / image"}  # fmt: skip
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for axis, (column, title) in zip(axes, titles.items(), strict=True):
        by_model[column].plot.bar(ax=axis, rot=30)
        axis.set_title(title)
        axis.grid(alpha=0.3, axis="y")
    return save_figure(figure, path)


class ListedApart(NamedTuple):
    """What a report shows besides the ranking: trials the search pruned, runs that did not finish,
    and a multi-objective search's Pareto front (None for one objective)."""

    pruned: pd.DataFrame
    unfinished: pd.DataFrame
    front: pd.DataFrame | None


def listed_apart(table: pd.DataFrame) -> ListedApart:
    objectives = table.attrs.get("objectives")
    return ListedApart(
        pruned=table[table["status"] == "pruned"],
        unfinished=table[~table["status"].isin(["finished", "pruned"])],
        front=pareto_front(table, objectives) if objectives else None,
    )


def write_report(table: pd.DataFrame, folds: pd.DataFrame, apart: ListedApart, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = table.drop(columns="error")
    shown.to_csv(out_dir / "report.csv")
    lines = [f"# Runs ranked by val {_metric_name(table.attrs['ranking'])}", "", shown.to_markdown(floatfmt=".4g"), ""]
    if len(apart.pruned):
        lines += [
            "## Trials the search pruned",
            "",
            *(f"- `{row.run}`: {_pruned(row)}" for row in apart.pruned.itertuples()),
            "",
        ]
    if len(apart.unfinished):
        lines += ["## Runs that did not finish", ""]
        lines += [f"- `{row.run}`: {_failure(row)}" for row in apart.unfinished.itertuples()]
    written = [out_dir / "report.csv", out_dir / "report.md"]
    if apart.front is not None:
        objectives = table.attrs["objectives"]
        lines += [
            "## Pareto front",
            "",
            f"Finished trials no other beats on every objective ({_goals(objectives)}).",
            "",
        ]
        columns = ["run", *objectives, *swept_parameters(table)]
        lines += [apart.front[columns].to_markdown(index=False, floatfmt=".4g"), ""]
        written.append(plot_pareto(table, apart.front, objectives, out_dir / "pareto_front.png"))
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
    apart = listed_apart(table)
    written = write_report(table, folds, apart, args.out or args.paths[0])
    with pd.option_context("display.width", 200, "display.max_columns", None):
        print(table.drop(columns="error").to_string(float_format=lambda v: f"{v:.4g}"))
    if not folds.empty:
        print("cross-validation (mean and std over folds):\n" + folds.to_string(index=False))
    for row in apart.pruned.itertuples():
        print(f"pruned: {row.run}: {_pruned(row)}")
    for row in apart.unfinished.itertuples():
        print(f"not finished: {row.run}: {_failure(row)}")
    if apart.front is not None:
        objectives = table.attrs["objectives"]
        print(f"Pareto front ({_goals(objectives)}):\n" + apart.front[["run", *objectives]].to_string(index=False))
    print("wrote " + ", ".join(str(path) for path in written))


def _pruned(row: Any) -> str:
    return f"pruned at epoch {row.pruned_epoch:g} by the search's pruner"


def _goals(objectives: dict[str, str]) -> str:
    return ", ".join(f"{direction} {name}" for name, direction in objectives.items())


def _failure(row: Any) -> str:
    return f"{row.status}: {row.error or 'no error recorded'}"


if __name__ == "__main__":
    main()
