"""`python -m boneage.evaluate run=<run>`: metrics, predictions, plots and a report of trained runs.

By default a run is evaluated on its own test subjects, read from its `splits.csv`, so the
test set is exactly the one held out in training; `data=table ...` evaluates on a table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from boneage.runtime.startup import collector_paused

with collector_paused():  # torch and its libraries: a fifth quicker to start
    import numpy as np
    import pandas as pd
    from hydra.utils import instantiate
    from omegaconf import DictConfig

    from boneage.config.cli import hydra_command
    from boneage.config.errors import DataError
    from boneage.config.resolvers import unique_dir
    from boneage.datamodules.images import ImageLimits
    from boneage.datamodules.intake import images_in_folder, set_aside_unreadable
    from boneage.datamodules.validation import describe
    from boneage.evaluation.answers import Answers
    from boneage.evaluation.ensemble import load_members, plain, predict_members, shared_test_rows
    from boneage.evaluation.heatmaps import heat_map_grid
    from boneage.evaluation.inference import TrainedRun
    from boneage.evaluation.per_head import Evaluated, identity_columns
    from boneage.evaluation.report import write_report
    from boneage.evaluation.trust import trust_for
    from boneage.evaluation.tta import uses_tta
    from boneage.runs.records import now
    from boneage.selfcheck.fitting import evidence_of, gate_of
    from boneage.selfcheck.gate import Gate, Verdicts
    from boneage.selfcheck.header import header_refusal
    from boneage.selfcheck.measure import methods_table
    from boneage.selfcheck.methods import Evidence
    from boneage.selfcheck.mistakes import generated_mistakes
    from boneage.tasks.base import Task


# The command's keys a head's evaluation reads (the age head: limits, bins, bootstrap, chronological age).
SETTINGS = ("tta", "weights", "intervals", "limits", "age_bin_width", "bootstrap", "seed", "chronological_age_column")


def evaluate(cfg: DictConfig) -> Path:
    """Evaluates the run or ensemble of `cfg` head by head (each head's figures, calibration,
    intervals or prediction sets, and what it adds: an age head its clinical report), with
    out-of-distribution flags and heat maps; returns the folder the results went to."""
    members = load_members(cfg.run, plain(cfg.ensemble), cfg.sweep)
    task = members[0].task
    rows, evaluated_on = _rows(cfg, members, task)
    out = Path(cfg.output_dir or unique_dir(str(members[0].run_dir / "evaluation" / now()[:19].replace(":", "-"))))
    out.mkdir(parents=True, exist_ok=True)
    rows, unreadable = set_aside_unreadable(rows, ImageLimits(cfg.max_pixels, cfg.multi_frame))
    if len(unreadable):  # files changed or gone since training: the others are evaluated, these listed
        unreadable.to_csv(out / "unreadable.csv", index=False)
        print(f"{len(unreadable)} image(s) left out, unreadable; listed with the reason in {out / 'unreadable.csv'}")
    rows = rows.reset_index(drop=True)
    evaluated = _evaluated(cfg, members, rows)
    predictions, per_head, plots = [identity_columns(rows)], {}, []
    for name in task.names:
        table, per_head[name], head_plots = evaluated.head(name, out)
        predictions.append(table)
        plots += head_plots
    predictions = pd.concat(predictions, axis=1)
    single = len(task.heads) == 1
    metrics = dict(per_head[task.names[0]]) if single else {"heads": per_head}
    metrics |= {"runs": list(evaluated.predicted.per_member), "tta": evaluated.settings["tta"], "images": len(rows),
                "evaluated_on": evaluated_on, "monitor": task.monitor}  # fmt: skip
    gate = gate_of(members, evaluated.settings["tta"], evaluated.settings["weights"], cfg.ood_method, cfg.ood_quantile)
    if gate is not None:
        evidence = evidence_of(members, evaluated.predicted)
        verdicts = gate.verdicts(evidence)
        predictions["assessed"], predictions["ood_score"] = ~verdicts.refused, verdicts.scores
        metrics["self_validation"] = self_validation_figures(
            cfg, members, gate, evaluated, evidence, verdicts, predictions, out
        )
    predictions.to_csv(out / "predictions.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    first, head = next(iter(task.heads.items()))
    if cfg.heatmaps and isinstance(members[0], TrainedRun) and not head.answers_classes:
        truth = predictions[first].dropna()  # the first head's strata, by each image's truth: age bins, quantiles
        strata = head.subject_strata(truth, truth.index.to_series(), cfg.age_bin_width).reindex(predictions.index)
        plots.append(heat_map_grid(members[0], predictions, first, f"{task.column_prefix(first)}predicted", strata,
                                   out / "heatmaps.png"))  # fmt: skip
    subjects = rows["subject"].nunique() if "subject" in rows else None
    write_report(task, metrics, per_head, plots, subjects, out / "report.md")
    for name, head in task.heads.items():
        print(("" if single else f"{name}: ") + head.evaluation_line(per_head[name]))
    print(f"results in {out}")
    return out


def _evaluated(cfg: DictConfig, members: list, rows: pd.DataFrame) -> Evaluated:
    """The members' answers on `rows` (with and, for comparison, without TTA), trusted as the
    command's keys ask (calibration and intervals fitted on the validation subjects)."""
    task = members[0].task
    settings = {key: plain(cfg[key]) for key in SETTINGS}
    tta, weights, levels = settings["tta"], settings["weights"], settings["intervals"]
    trust = trust_for(members, cfg, tta, weights, bool(levels))
    answers = Answers(members, trust, tta, weights)
    predicted, trusted = answers.predict(rows)
    return Evaluated(
        task, rows, members[0].rows_of("train"), predicted,
        predict_members(members, rows, "none", weights) if uses_tta(tta) else None, trust, trusted,
        answers.bounds(rows, predicted, trusted, levels), settings,
    )  # fmt: skip


def self_validation_figures(
    cfg: DictConfig, members: list, gate: Gate, evaluated: Evaluated, evidence: Evidence, verdicts: Verdicts,
    predictions: pd.DataFrame, out: Path,
) -> dict[str, Any]:  # fmt: skip
    """The gate on the evaluated images (`evidence`, `verdicts`: how many it refuses, and their
    error against the rest's), and every method measured against the out-of-distribution set:
    ood_input, or the usual mistakes generated into `out`/mistakes."""
    figures = {"method": gate.method, "quantile": gate.quantile, "threshold": verdicts.threshold,
               "refused": int(verdicts.refused.sum()), "share": float(verdicts.refused.mean())}  # fmt: skip
    task, rows = members[0].task, evaluated.rows
    values = [name for name, head in task.heads.items() if not head.answers_classes]
    if values:
        errors = predictions[f"{task.column_prefix(values[0])}error"].abs().to_numpy()
        figures["mae_of"] = values[0]
        figures["mae_refused"] = float(np.nanmean(errors[verdicts.refused])) if verdicts.refused.any() else None
        figures["mae_rest"] = float(np.nanmean(errors[~verdicts.refused]))
    foreign, header_refused, source = _foreign_rows(cfg, rows, out)
    foreign_evidence = evidence_of(members, predict_members(members, foreign, evaluated.settings["tta"],
                                                                     evaluated.settings["weights"]))  # fmt: skip
    refused = gate.verdicts(foreign_evidence).refused
    figures["ood_set"] = {
        "source": source, "images": len(foreign) + header_refused, "header_refused": header_refused,
        "kinds": foreign["kind"].value_counts().to_dict(),
        "refused": float((refused.sum() + header_refused) / (len(foreign) + header_refused)),
    }  # fmt: skip
    figures["methods"] = methods_table(gate, evidence, foreign_evidence)
    return figures


def _foreign_rows(cfg: DictConfig, rows: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, int, str]:
    """The out-of-distribution images the methods are measured on (columns image, kind, and the
    model's table inputs taken from the evaluated rows), how many of ood_input's files their
    header refused, and where they came from."""
    if cfg.ood_input is None:
        foreign, header_refused, source = generated_mistakes(rows["image"].tolist(), out / "mistakes"), 0, "generated"
    else:
        files, _ = images_in_folder(Path(cfg.ood_input).expanduser())
        modalities = list(cfg.accepted_modalities)
        kept = [str(file) for file in files if header_refusal(file, modalities) is None]
        foreign = pd.DataFrame({"image": kept, "kind": "ood_input"})
        foreign, _ = set_aside_unreadable(foreign, ImageLimits(cfg.max_pixels, cfg.multi_frame))
        header_refused, source = len(files) - len(kept), str(cfg.ood_input)
    if foreign.empty:
        raise DataError(f"ood_input={cfg.ood_input}: no readable image that its DICOM header allows to measure on.")
    inputs = [column for column in rows.columns if column not in foreign and column not in ("image",)]
    cycled = rows[inputs].iloc[np.arange(len(foreign)) % len(rows)].reset_index(drop=True)
    return pd.concat([foreign.reset_index(drop=True), cycled], axis=1), header_refused, source


def _rows(cfg: DictConfig, members: list, task: Task) -> tuple[pd.DataFrame, str]:
    if cfg.get("data") is None:
        return shared_test_rows(members), "the runs' own test subjects"
    table = instantiate(cfg.data.source).load(task.heads)
    bad = table["problem"].notna()
    if bad.any():
        raise DataError(describe(table[bad], cfg.data.source.path))
    return table, f"all of {cfg.data.source.path}"


@hydra_command("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
