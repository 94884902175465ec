"""`python -m boneage.predict run=<run> input=<folder or table>`: ages for images never seen.

A table's other columns (subject, sex, ...) are copied to the output next to each prediction.
A folder is read as a PACS exports it (DICOM by its marker, nested, DICOMDIR skipped); each DICOM
header's sex and chronological age fill in what a table would give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from boneage.runtime.startup import collector_paused

with collector_paused():  # torch and its libraries: a fifth quicker to start
    import pandas as pd
    from omegaconf import DictConfig

    from boneage.config.cli import hydra_command
    from boneage.config.errors import ConfigError, DataError
    from boneage.datamodules.dicom_header import HEADER_COLUMNS, patient_fields
    from boneage.datamodules.images import IMAGE_SUFFIXES, ImageLimits
    from boneage.datamodules.intake import images_in_folder, set_aside_unreadable
    from boneage.evaluation.answers import answers_for
    from boneage.evaluation.heatmaps import write_heat_maps
    from boneage.evaluation.inference import TrainedRun
    from boneage.selfcheck.header import header_refusal
    from boneage.tasks.base import Task
    from boneage.tasks.clinical import DIFFERENCE, chronological_figures


def images_to_predict(
    source: str, image_column: str = "image", image_dir: str | None = None, chronological_age_column: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per image (every image file under a folder, with what each DICOM header says of
    the patient; or the rows of a table), and the files skipped with the reason."""
    path = Path(source).expanduser()
    if path.is_dir():
        files, skipped = images_in_folder(path)
        if not files:
            raise DataError(f"input={source}: no image files ({', '.join(IMAGE_SUFFIXES)} or DICOM) in this folder.")
        header = [patient_fields(file) for file in files]  # a PNG's or JPEG's says nothing: all None
        said = pd.DataFrame(header, columns=list(HEADER_COLUMNS)).dropna(axis=1, how="all")  # what some header gave
        return said.assign(image=[str(file) for file in files])[["image", *said.columns]], skipped
    if not path.is_file():
        raise DataError(f"input={source}: no such folder or table.")
    table = pd.read_excel(path) if path.suffix.lower() in (".xlsx", ".xls") else pd.read_csv(path)
    for role, column in (("image_column", image_column), ("chronological_age_column", chronological_age_column)):
        if column is not None and column not in table:
            raise DataError(f"input={source} has no column {column!r} ({role}); it has {list(table.columns)}.")
    if chronological_age_column:
        table["chronological_age"] = pd.to_numeric(table[chronological_age_column], errors="coerce")
    root = Path(image_dir).expanduser() if image_dir else path.parent
    rows = table.assign(image=[str(root / str(name)) for name in table[image_column]])
    return rows, pd.DataFrame(columns=["image", "reason"])


def predict(cfg: DictConfig) -> Path:
    """Predicts chunk by chunk, appending to the output as it goes: an interruption keeps what
    was done. Unreadable images and skipped files are listed in `<output>_unreadable.csv`, not
    fatal. Each age comes with its conformal intervals (and the linear calibration if asked),
    fitted on the run's validation subjects, and, where the chronological age is known, the
    difference and whether it lies outside each interval."""
    found, skipped = images_to_predict(cfg.input, cfg.image_column, cfg.image_dir, cfg.chronological_age_column)
    levels = list(cfg.intervals)
    answers = answers_for(cfg, intervals=bool(levels))
    members, gate = answers.members, answers.gate
    found, refused = _refused_by_header(found, list(cfg.accepted_modalities) if gate else None)
    limits = ImageLimits(cfg.max_pixels, cfg.multi_frame)
    rows, unreadable = set_aside_unreadable(found, limits, cfg.on_unreadable == "stop", answers.inputs)
    unreadable = pd.concat([skipped, unreadable], ignore_index=True)
    if cfg.explain and not isinstance(members[0], TrainedRun):
        raise ConfigError("explain=true needs a trained run (its PyTorch network for Grad-CAM), not an export.")
    output = Path(cfg.output)
    listed = output.with_name(f"{output.stem}_unreadable.csv")
    listed.unlink(missing_ok=True)
    if len(unreadable):
        unreadable.to_csv(listed, index=False)
    output.unlink(missing_ok=True)
    columns = None
    for start in range(0, len(rows), cfg.chunk_size):
        chunk = rows.iloc[start : start + cfg.chunk_size]
        written = answers.table(chunk, levels)
        if cfg.explain:
            write_heat_maps(members[0], chunk, output.with_name(f"{output.stem}_heatmaps"))
        written.to_csv(output, mode="a", header=start == 0, index=False)
        columns = written.columns
    if len(refused):  # rows of their own, with no answer: their pixels were never decoded
        refused.reindex(columns=columns if columns is not None else refused.columns).to_csv(
            output, mode="a", header=columns is None, index=False
        )
    units = ", ".join(f"{name} in {head.unit}" if len(answers.task.heads) > 1 else head.unit
                      for name, head in answers.task.heads.items() if head.unit)  # fmt: skip
    print(f"{len(rows)} predictions{f' ({units})' if units else ''} written to {output}")
    if gate is not None and output.exists():
        not_assessed = int((~pd.read_csv(output)["assessed"].astype(bool)).sum())
        print(f"{not_assessed} image(s) not assessed by self-validation ({len(refused)} by their DICOM header); "
              "see the columns assessed and not_assessed")  # fmt: skip
    if levels:
        _print_development(output, answers.task, levels)
    if len(unreadable):
        print(f"{len(unreadable)} file(s) not predicted, listed with the reason in {listed}:")
        for row in unreadable.head(20).itertuples():
            print(f"  {row.image}: {row.reason}")
        if len(unreadable) > 20:
            print(f"  ... and {len(unreadable) - 20} more")
    return output


def _refused_by_header(found: pd.DataFrame, modalities: list[str] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows whose DICOM header allows a hand radiograph, and the others (assessed false, with
    the reason); with no gate, every row."""
    if modalities is None:
        return found, found.iloc[:0]
    reasons = found["image"].map(lambda image: header_refusal(image, modalities))
    refused = found[reasons.notna()].assign(assessed=False, not_assessed=reasons[reasons.notna()])
    return found[reasons.isna()], refused


def _print_development(output: Path, task: Task, levels: list[float]) -> None:
    """The summary of bone age against chronological age, where any image had one."""
    written = pd.read_csv(output)
    for name in task.names:
        prefix = task.column_prefix(name)
        if f"{prefix}{DIFFERENCE}" in written and (figures := chronological_figures(written, levels, prefix)):
            _print_difference(("" if prefix == "" else f"{name}: "), figures, levels)


def _print_difference(head: str, figures: dict[str, Any], levels: list[float]) -> None:
    level = f"{round(100 * levels[0])}%"
    counts = figures[level]
    print(
        f"{head}bone age minus chronological age on {figures['n']} images: mean {figures['mean']:.2f}, "
        f"SD {figures['sd']:.2f}; outside the {level} interval: {counts['advanced']} advanced, "
        f"{counts['delayed']} delayed"
    )


@hydra_command("predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
