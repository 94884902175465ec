"""`python -m boneage.predict run=<run> input=<folder or table>`: ages for images never seen.

A table's other columns (subject, sex, ...) are copied to the output next to each prediction.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from boneage.config.cli import hydra_command
from boneage.config.errors import ConfigError, DataError
from boneage.datamodules.images import IMAGE_SUFFIXES, unreadable_reason
from boneage.evaluation.ensemble import load_members, plain, predict_members
from boneage.evaluation.heatmaps import write_heat_maps
from boneage.evaluation.inference import TrainedRun
from boneage.evaluation.ood import ood_of
from boneage.evaluation.targets import add_prediction_sets, fit_prediction_sets
from boneage.evaluation.trust import spreads_of, trust_for
from boneage.tasks import AgeTask


def images_to_predict(source: str, image_column: str = "image", image_dir: str | None = None) -> pd.DataFrame:
    """One row per image: every image file under a folder, or the rows of a table."""
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"input={source}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder.")
        return pd.DataFrame({"image": [str(p) for p in files]})
    if not path.is_file():
        raise DataError(f"input={source}: no such folder or table.")
    table = pd.read_excel(path) if path.suffix.lower() in (".xlsx", ".xls") else pd.read_csv(path)
    if image_column not in table:
        raise DataError(f"input={source} has no column {image_column!r} (image_column); it has {list(table.columns)}.")
    root = Path(image_dir).expanduser() if image_dir else path.parent
    return table.assign(image=[str(root / str(name)) for name in table[image_column]])


def set_aside_unreadable(rows: pd.DataFrame, stop_at_first: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows whose image decodes, and the others with the reason (image, reason)."""
    reasons = rows["image"].map(unreadable_reason)
    bad = reasons.notna()
    if bad.any() and stop_at_first:
        first = rows.index[bad][0]
        raise DataError(
            f"{rows.at[first, 'image']}: {reasons[first]} ({int(bad.sum())} unreadable image(s) in all). "
            "on_unreadable=skip predicts the others and lists these."
        )
    return rows[~bad], pd.DataFrame({"image": rows.loc[bad, "image"], "reason": reasons[bad]})


def predict(cfg: DictConfig) -> Path:
    """Predicts chunk by chunk, appending to the output as it goes: an interruption keeps what
    was done. Unreadable images are listed in `<output>_unreadable.csv`, not fatal. Each age
    comes with its conformal intervals (and the linear calibration if asked), fitted on the
    run's validation subjects."""
    members = load_members(cfg.run, plain(cfg.ensemble), cfg.sweep)
    rows, unreadable = set_aside_unreadable(
        images_to_predict(cfg.input, cfg.image_column, cfg.image_dir), cfg.on_unreadable == "stop"
    )
    if cfg.explain and not isinstance(members[0], TrainedRun):
        raise ConfigError("explain=true needs a trained run (its PyTorch network for Grad-CAM), not an export.")
    output = Path(cfg.output)
    listed = output.with_name(f"{output.stem}_unreadable.csv")
    listed.unlink(missing_ok=True)
    if len(unreadable):
        unreadable.to_csv(listed, index=False)
    output.unlink(missing_ok=True)
    tta, weights = plain(cfg.tta), plain(cfg.weights)
    task = members[0].task
    answer = _ages(members, cfg, tta, weights) if isinstance(task, AgeTask) else _answers(members, cfg, tta, weights)
    ood = ood_of(members, cfg.ood_quantile)
    for start in range(0, len(rows), cfg.chunk_size):
        chunk = rows.iloc[start : start + cfg.chunk_size]
        written = answer(chunk)
        if ood is not None:
            written["ood_score"], written["ood_flag"] = ood.flags(members[0].features(chunk))
        if cfg.explain:
            write_heat_maps(members[0], chunk, output.with_name(f"{output.stem}_heatmaps"))
        written.to_csv(output, mode="a", header=start == 0, index=False)
    unit = f" ({members[0].unit})" if isinstance(task, AgeTask) else ""
    print(f"{len(rows)} predictions{unit} written to {output}")
    if len(unreadable):
        print(f"{len(unreadable)} unreadable image(s), listed with the reason in {listed}:")
        for row in unreadable.head(20).itertuples():
            print(f"  {row.image}: {row.reason}")
        if len(unreadable) > 20:
            print(f"  ... and {len(unreadable) - 20} more")
    return output


def _ages(members: list[Any], cfg: DictConfig, tta: Any, weights: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """An age run's answer: the (calibrated) age, its unit and its conformal intervals."""
    trust = trust_for(members, cfg, tta, weights, bool(cfg.intervals))

    def answer(chunk: pd.DataFrame) -> pd.DataFrame:
        predicted = predict_members(members, chunk, tta, weights)
        ages = trust.calibrated(predicted.combined)
        written = chunk.assign(predicted_age=ages, unit=members[0].unit)
        spreads = spreads_of(members, chunk, predicted, trust.scale)
        for level in cfg.intervals:
            bounds = trust.bounds(ages, chunk, level, spreads)
            written[f"lower_{round(100 * level)}"], written[f"upper_{round(100 * level)}"] = bounds
        return written

    return answer


def _answers(members: list[Any], cfg: DictConfig, tta: Any, weights: Any) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Any other task's answer: per head its value, or its class, that class's probability, every
    class's probability and the conformal prediction set at each of `intervals`."""
    task = members[0].task
    sets = fit_prediction_sets(task, members, tta, weights, list(cfg.intervals))

    def answer(chunk: pd.DataFrame) -> pd.DataFrame:
        decoded = predict_members(members, chunk, tta, weights).combined
        written = pd.concat([chunk.reset_index(drop=True), task.prediction_columns(decoded)], axis=1)
        add_prediction_sets(written, task, decoded, sets, list(cfg.intervals))
        return written.set_axis(chunk.index)

    return answer


@hydra_command("predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
