"""The table of runs: one row per run directory, read from its record (`run.json`) alone, ranked
by the task's selection metric (val MAE for age runs, val accuracy for classifiers, ...).

Reading only the records makes it work on finished, failed, running and half-written runs
alike, and on runs from any machine.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from boneage.runs.objectives import measured
from boneage.runs.records import RECORD_NAME, process_gone
from boneage.runs.techniques import active_techniques

PARAMETERS = ("model", "dropout", "lr", "weight_decay", "loss", "batch_size", "image_size", "clahe")
DEFAULT_MONITOR = ("val/mae", "min")  # runs recorded before tasks existed were age runs


class Ranking(NamedTuple):
    """The columns runs are ranked by (the task's metric on val and test) and the direction."""

    val: str
    test: str
    ascending: bool

    @classmethod
    def of(cls, monitor: str, mode: str) -> Ranking:
        test = monitor.replace("val/", "test/", 1)
        return cls(monitor.replace("/", "_"), test.replace("/", "_"), mode == "min")


def columns(ranking: Ranking) -> list[str]:
    return [
        "run", "status", ranking.val, "best_epoch", ranking.test, *PARAMETERS,
        "techniques", "stratum_width", "fold", "parameters", "inference_ms", "duration_s",
    ]  # fmt: skip


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Run directories under `paths`: those with a run record or at least Hydra's config."""
    found = set()
    for path in paths:
        for marker in (*path.rglob(RECORD_NAME), *path.rglob(".hydra/config.yaml")):
            run = marker.parent.parent if marker.parent.name == ".hydra" else marker.parent
            found.add(run)
    return sorted(found)


def _monitor(config: dict[str, Any]) -> tuple[str, str]:
    task = config.get("task") or {}
    return task.get("monitor", DEFAULT_MONITOR[0]), task.get("mode", DEFAULT_MONITOR[1])


def run_row(run_dir: Path, root: Path) -> dict[str, Any]:
    """One table row; a missing or unreadable record gives a row that says so. `_ranking` holds
    the run's own selection metric (dropped from the shown table)."""
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
    monitor, mode = _monitor(config)
    ranking = Ranking.of(monitor, mode)
    return (
        row
        | _search_columns(record)
        | {
            "status": "interrupted" if gone else record.get("status", "unknown"),
            ranking.val: metrics.get(monitor, best.get(monitor)),
            "best_epoch": best.get("epoch"),
            ranking.test: metrics.get(monitor.replace("val/", "test/", 1)),
            "model": model.get("name"),
            "dropout": model.get("dropout"),
            "lr": optimizer.get("lr"),
            "weight_decay": optimizer.get("weight_decay"),
            "loss": str((config.get("loss") or {}).get("_target_", "")).rsplit(".", 1)[-1] or None,
            "batch_size": data.get("batch_size"),
            "image_size": data.get("image_size"),
            "clahe": data.get("clahe"),
            "techniques": ", ".join(record.get("techniques") or active_techniques(config)) or None,
            "stratum_width": _stratum_width(data.get("split") or {}),
            "fold": data.get("fold") if data.get("folds") else None,
            "parameters": (record.get("model") or {}).get("parameters"),
            "inference_ms": (record.get("speed") or {}).get("inference_ms_per_image"),
            "duration_s": record.get("duration_s"),
            "error": "its process ended without a word (killed, or the machine stopped)"
            if gone
            else record.get("error"),
            "_ranking": ranking,
        }
    )


# Measured speeds that already have a column of their own, under a shorter name.
SPEED_COLUMNS = {"inference_ms_per_image": "inference_ms"}


def _search_columns(record: dict[str, Any]) -> dict[str, Any]:
    """A search trial's extra columns: where it was pruned, and each objective of a
    multi-objective search (`_objectives`: column -> direction, for the Pareto front)."""
    search = record.get("search") or {}
    columns_: dict[str, Any] = {}
    if record.get("status") == "pruned":
        columns_["pruned_epoch"] = (record.get("pruned") or {}).get("epoch")
    objectives = search.get("objectives") or []
    if len(objectives) > 1:
        values = measured(record.get("metrics") or {}, record.get("speed"))
        slugs = [SPEED_COLUMNS.get(name, name.replace("/", "_")) for name in objectives]
        columns_ |= {slug: values.get(name) for slug, name in zip(slugs, objectives, strict=True)}
        columns_["_objectives"] = dict(zip(slugs, search["directions"], strict=True))
    return columns_


def build_table(paths: Sequence[Path]) -> pd.DataFrame:
    """Every run, ranked by the task's selection metric (runs without one last, and a search's
    pruned trials after its finished ones). Runs of different tasks are ranked by the metric most
    of them share. `table.attrs["ranking"]` says which columns and direction, and
    `table.attrs["objectives"]` a multi-objective search's columns and directions."""
    root = _common_root(paths)
    rows = [run_row(run, root) for run in find_runs(paths)]
    rankings = pd.Series([row["_ranking"] for row in rows if "_ranking" in row], dtype=object)
    ranking = rankings.mode().iloc[0] if len(rankings) else Ranking.of(*DEFAULT_MONITOR)
    objectives = next((row["_objectives"] for row in rows if "_objectives" in row), {})
    shown = columns(ranking)
    extra = [key for row in rows for key in row if key not in shown and key not in ("error", "_ranking", "_objectives")]
    table = pd.DataFrame(rows, columns=[*shown, *dict.fromkeys(extra), "error"])
    table = table.assign(_pruned=table["status"] == "pruned")
    table = table.sort_values(["_pruned", ranking.val], ascending=[True, ranking.ascending], na_position="last")
    table = table.drop(columns="_pruned").reset_index(drop=True)
    table.index = table.index + 1
    table.index.name = "rank"
    table.attrs["ranking"] = ranking
    table.attrs["objectives"] = objectives
    return table


def top_runs(table: pd.DataFrame, count: int) -> list[str]:
    """The `count` best finished runs of `table` (as its `run` column names them)."""
    finished = table[(table["status"] == "finished") & table[table.attrs["ranking"].val].notna()]
    return finished["run"].head(count).tolist()


def _common_root(paths: Sequence[Path]) -> Path:
    """Run names are shown relative to the folder above the given paths' common folder."""
    return Path(os.path.commonpath([path.resolve() for path in paths])).parent


def _relative(run_dir: Path, root: Path) -> str:
    try:
        return str(run_dir.resolve().relative_to(root)) or "."
    except ValueError:
        return str(run_dir)


def _stratum_width(split: dict[str, Any]) -> float | None:
    """The split's stratum width (records of earlier versions name it age_bin_width)."""
    return split.get("stratum_width", split.get("age_bin_width"))
