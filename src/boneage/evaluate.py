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
    from boneage.datamodules.intake import set_aside_unreadable
    from boneage.datamodules.validation import describe
    from boneage.evaluation.chronological import chronological_figures, compare_with_chronological
    from boneage.evaluation.ensemble import load_members, plain, predict_members, shared_test_rows
    from boneage.evaluation.heads_trust import heads_trust_for
    from boneage.evaluation.heatmaps import heat_map_grid
    from boneage.evaluation.inference import TrainedRun
    from boneage.evaluation.markdown import write_markdown
    from boneage.evaluation.metrics import age_bins, evaluation_metrics
    from boneage.evaluation.ood import FeatureDistance, ood_of
    from boneage.evaluation.plots import plot_evaluation
    from boneage.evaluation.targets import calibration_report, evaluate_targets, write_targets_markdown
    from boneage.evaluation.temperature import calibration_sentence
    from boneage.evaluation.trust import Trust, interval_figures, spreads_of, trust_for
    from boneage.evaluation.tta import uses_tta
    from boneage.runs.records import now
    from boneage.tasks.base import Task
    from boneage.tasks.metrics import regression_metrics


def evaluate(cfg: DictConfig) -> Path:
    """Evaluates the run or ensemble of `cfg`; returns the folder the results went to. An age
    run gets the clinical evaluation (intervals, calibration, age bins, OOD flags, heat maps);
    any other task its heads' figures (evaluation/targets.py)."""
    members = load_members(cfg.run, plain(cfg.ensemble), cfg.sweep)
    task = members[0].task
    rows, evaluated_on = _rows(cfg, members, task)
    out = Path(cfg.output_dir or unique_dir(str(members[0].run_dir / "evaluation" / now()[:19].replace(":", "-"))))
    out.mkdir(parents=True, exist_ok=True)
    rows, unreadable = set_aside_unreadable(rows, ImageLimits(cfg.max_pixels, cfg.multi_frame))
    if len(unreadable):  # files changed or gone since training: the others are evaluated, these listed
        unreadable.to_csv(out / "unreadable.csv", index=False)
        print(f"{len(unreadable)} image(s) left out, unreadable; listed with the reason in {out / 'unreadable.csv'}")
    return EVALUATIONS[task.family](cfg, members, rows, evaluated_on, out)


def _evaluate_heads(
    cfg: DictConfig, members: list[TrainedRun], rows: pd.DataFrame, evaluated_on: str, out: Path
) -> Path:
    task = members[0].task
    tta, weights, levels = plain(cfg.tta), plain(cfg.weights), list(cfg.intervals)
    raw = predict_members(members, rows, tta, weights).combined
    trust = heads_trust_for(members, cfg, tta, weights, bool(levels))
    train = members[0].rows_of("train")
    predictions, metrics, plots = evaluate_targets(task, rows, raw, train, out, trust, levels)
    if (temperatures := trust.temperature_scaling) is not None:
        figures, reliability = calibration_report(task, rows, raw, temperatures, out)
        for name, head_figures in figures.items():
            metrics["heads"][name]["calibration"] = head_figures
            print(f"{name}: {calibration_sentence(head_figures)}")
        plots += reliability
    metrics |= {"runs": [member.name for member in members], "tta": tta, "images": len(rows),
                "evaluated_on": evaluated_on, "monitor": task.monitor}  # fmt: skip
    predictions.to_csv(out / "predictions.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    write_targets_markdown(metrics, plots, out / "report.md")
    for name, figures in metrics["heads"].items():
        shown = ", ".join(f"{key} {value:.3f}" for key, value in figures.items()
                          if isinstance(value, float) and key != "n")  # fmt: skip
        print(f"{name}: {shown} on {figures['n']} images")
    print(f"results in {out}")
    return out


def _evaluate_age(cfg: DictConfig, members: list[TrainedRun], rows: pd.DataFrame, evaluated_on: str, out: Path) -> Path:
    tta, weights = plain(cfg.tta), plain(cfg.weights)
    predicted = predict_members(members, rows, tta, weights)
    raw, per_member = predicted.combined, predicted.per_member
    trust = trust_for(members, cfg, tta, weights)
    combined = trust.calibrated(raw)
    predictions = rows[["image", "subject", "sex", "age"]].assign(predicted=combined, error=combined - rows["age"])
    if cfg.chronological_age_column:
        predictions["chronological_age"] = _chronological_ages(rows, cfg.chronological_age_column)
    metrics = evaluation_metrics(predictions, cfg.limits, cfg.age_bin_width, cfg.bootstrap, cfg.seed)
    metrics |= {"runs": list(per_member), "tta": tta, "unit": members[0].unit, "evaluated_on": evaluated_on}
    if len(members) > 1:
        metrics["members"] = {name: regression_metrics(rows["age"], values) for name, values in per_member.items()}
        for index, values in enumerate(per_member.values()):
            predictions[f"predicted_member{index}"] = values
    if uses_tta(tta):  # the same images without TTA: does it help on this run?
        without = predict_members(members, rows, "none", weights).combined
        predictions["predicted_without_tta"] = trust.calibrated(without)
        metrics["tta_against_none"] = {
            "with TTA": regression_metrics(rows["age"], combined),
            "without": regression_metrics(rows["age"], predictions["predicted_without_tta"]),
        }
    if cfg.calibrate != "none":
        predictions["predicted_uncalibrated"] = raw
        metrics["calibration"] = calibration_figures(predictions, trust, cfg.age_bin_width)
    metrics["intervals"] = _intervals(predictions, trust, spreads_of(members, rows, predicted, trust.scale), cfg)
    if cfg.chronological_age_column:
        compare_with_chronological(predictions, "predicted", list(cfg.intervals))
        metrics["chronological"] = chronological_figures(predictions, list(cfg.intervals))
    if (ood := ood_of(members, cfg.ood_quantile)) is not None:
        predictions["ood_score"], predictions["ood_flag"] = ood.flags(members[0].features(rows))
        metrics["out_of_distribution"] = ood_figures(predictions, ood)

    predictions.to_csv(out / "predictions.csv", index=False)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    plots = plot_evaluation(predictions, metrics["mae_per_age_bin"], members[0].unit, out)
    if cfg.heatmaps and isinstance(members[0], TrainedRun):
        plots.append(heat_map_grid(members[0], predictions, cfg.age_bin_width, out / "heatmaps.png"))
    write_markdown(metrics, plots, out / "report.md")
    image = metrics["image"]
    print(f"MAE {image['mae']:.3f} {members[0].unit} (95% CI {image['mae_ci95'][0]:.3f}-{image['mae_ci95'][1]:.3f}), "
          f"RMSE {image['rmse']:.3f}, r {image['pearson_r']:.3f} on {image['n']} images; results in {out}")  # fmt: skip
    return out


def ood_figures(predictions: pd.DataFrame, ood: FeatureDistance) -> dict[str, Any]:
    """How many images are flagged, and their MAE against the rest's."""
    flagged = predictions["ood_flag"].astype(bool)
    error = predictions["error"].abs()
    return {
        "threshold": ood.threshold,
        "quantile": ood.quantile,
        "flagged": int(flagged.sum()),
        "share": float(flagged.mean()),
        "mae_flagged": float(error[flagged].mean()) if flagged.any() else None,
        "mae_rest": float(error[~flagged].mean()),
    }


def calibration_figures(predictions: pd.DataFrame, trust: Trust, bin_width: float) -> dict[str, Any]:
    """The fitted line, and MAE and bias per age bin before and after it."""
    per_bin = {}
    for name, group in predictions.groupby(age_bins(predictions["age"], bin_width), observed=True):
        before = group["predicted_uncalibrated"] - group["age"]
        after = group["predicted"] - group["age"]
        per_bin[name] = {
            "n": len(group), "mae_before": float(before.abs().mean()), "mae_after": float(after.abs().mean()),
            "bias_before": float(before.mean()), "bias_after": float(after.mean()),
        }  # fmt: skip
    return {"method": "linear", "slope": trust.slope, "intercept": trust.intercept, "per_age_bin": per_bin}


def _intervals(predictions: pd.DataFrame, trust: Trust, spreads: np.ndarray | None, cfg: DictConfig) -> dict[str, Any]:
    """Each level's bounds (added to `predictions`) and their coverage and width on these images."""
    groups = {"age_bin": age_bins(predictions["age"], cfg.age_bin_width), "sex": predictions["sex"]}
    figures: dict[str, Any] = {
        "calibrated_on": f"{len(trust.residuals)} validation images",
        "by": trust.by,
        "scaled_by": trust.scale,
    }
    for level in cfg.intervals:
        name = f"{round(100 * level)}"
        lower, upper = trust.bounds(predictions["predicted"].to_numpy(), predictions, level, spreads)
        predictions[f"lower_{name}"], predictions[f"upper_{name}"] = lower, upper
        figures[f"{name}%"] = interval_figures(predictions["age"].to_numpy(), lower, upper, groups)
    return figures


def _chronological_ages(rows: pd.DataFrame, column: str) -> pd.Series:
    if column not in rows:
        raise DataError(
            f"chronological_age_column={column!r}: the evaluated rows have no such column "
            f"(they have {', '.join(map(str, rows.columns))}); it rides along from the training table."
        )
    return pd.to_numeric(rows[column], errors="coerce")


def _rows(cfg: DictConfig, members: list[TrainedRun], task: Task) -> tuple[pd.DataFrame, str]:
    if cfg.get("data") is None:
        return shared_test_rows(members), "the runs' own test subjects"
    table = instantiate(cfg.data.source).load(task.heads)
    bad = table["problem"].notna()
    if bad.any():
        raise DataError(describe(table[bad], cfg.data.source.path))
    return table, f"all of {cfg.data.source.path}"


# What evaluate gives each task family (Task.family).
EVALUATIONS = {"age": _evaluate_age, "heads": _evaluate_heads}


@hydra_command("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
