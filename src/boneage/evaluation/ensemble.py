"""Which trained runs to use, and their (weighted) average prediction."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from boneage.config.errors import ConfigError
from boneage.evaluation.exported import ExportedMember, is_export, load_export
from boneage.evaluation.inference import TrainedRun, load_run
from boneage.runs.table import build_table, top_runs

TOP_PREFIX = "top"


def load_members(
    run: str | None, ensemble: Sequence[str] | str | None, sweep: str | None
) -> list[TrainedRun] | list[ExportedMember]:
    """`run=X` alone (a run, a checkpoint or an export folder), `ensemble=[A,B,...]`, or
    `ensemble=topN` with `sweep=` (best N by val MAE)."""
    if (run is None) == (ensemble is None):
        raise ConfigError("Name either run=<run dir or checkpoint> or ensemble=[run, run, ...] (or topN).")
    if run is not None:
        return load_export(run) if is_export(run) else [load_run(run)]
    if isinstance(ensemble, str):
        return [load_run(path) for path in best_runs(ensemble, sweep)]
    if len(ensemble) < 2:
        raise ConfigError("An ensemble needs at least two runs; use run=<run> for one.")
    return [load_run(path) for path in ensemble]


def best_runs(selector: str, sweep: str | None) -> list[Path]:
    """The N best finished runs under `sweep` by their task's metric (selector 'topN')."""
    count = selector.removeprefix(TOP_PREFIX)
    if not selector.startswith(TOP_PREFIX) or not count.isdigit() or int(count) < 2:
        raise ConfigError(f"ensemble={selector!r}: use a list of runs or topN with N >= 2 (e.g. top3).")
    if not sweep or not Path(sweep).is_dir():
        raise ConfigError(f"ensemble={selector} needs sweep=<folder of runs> to choose from (got {sweep!r}).")
    chosen = top_runs(build_table([Path(sweep)]), int(count))
    if len(chosen) < int(count):
        raise ConfigError(f"ensemble={selector}: only {len(chosen)} finished run(s) under {sweep}.")
    return [Path(sweep).resolve().parent / run for run in chosen]


def plain(value: Any) -> Any:
    """A command-line option as plain Python (lists arrive as OmegaConf ListConfig)."""
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


class MemberPredictions(NamedTuple):
    combined: np.ndarray  # the weighted mean age per image
    per_member: dict[str, np.ndarray]  # each member's age per image (the mean of its views)
    views: dict[str, np.ndarray]  # each member's age per TTA view and image: (views, images)
    features: np.ndarray | None  # the first member's pooled features of each plain image, for self-validation


def predict_members(
    members: Sequence[TrainedRun], rows: pd.DataFrame, tta: Sequence[str] | str, weights: Sequence[float] | None = None
) -> MemberPredictions:
    """Each member's predictions (with its own preprocessing) and their weighted mean (an exported
    ensemble brings its own weights); the per-view ages are kept for the spreads of intervals, and
    the first member's features, from the same pass, for self-validation."""
    if weights is None and all(isinstance(member, ExportedMember) for member in members):
        weights = [member.weight for member in members]
    if weights is not None and len(weights) != len(members):
        raise ConfigError(f"weights has {len(weights)} values for {len(members)} ensemble members.")
    answered = {member.name: member.views_and_features(rows, tta) for member in members}
    views = {name: member_views for name, (member_views, _) in answered.items()}
    per_member = {name: ages.mean(0) for name, ages in views.items()}
    combined = np.average(np.stack(list(per_member.values())), axis=0, weights=weights)
    return MemberPredictions(combined, per_member, views, answered[members[0].name][1])


def shared_test_rows(members: Sequence[TrainedRun]) -> pd.DataFrame:
    return shared_rows(members, "test")


def shared_rows(members: Sequence[TrainedRun], subset: str) -> pd.DataFrame:
    """The subjects of `subset` (val, test) in every member's split; members trained on other
    splits cannot be compared."""
    rows = members[0].rows_of(subset)
    for member in members[1:]:
        if set(member.rows_of(subset)["image"]) != set(rows["image"]):
            raise ConfigError(
                f"{member.name} has other {subset} images than {members[0].name}: ensemble runs must share "
                "the data and split (data.split.seed), or evaluate them on a table with data=table ..."
            )
    return rows
