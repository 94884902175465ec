"""report.md: the evaluation's figures in one page that reads on its own, one section per head
(each head writes its own through the head protocol), then what concerns the whole model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from boneage.tasks.base import Task
from boneage.tasks.markdown import comparison_lines, fmt, heading


def write_report(
    task: Task, metrics: Mapping[str, Any], per_head: Mapping[str, Mapping[str, Any]], plots: Sequence[Path],
    subjects: int | None, path: Path,
) -> None:  # fmt: skip
    """`metrics`: the whole model's figures (runs, TTA, images, OOD); `per_head`: each head's."""
    single = len(task.heads) == 1
    unit = f" Errors in {task.unit}." if task.unit else ""
    of_subjects = f" of {subjects} subjects" if subjects else ""
    lines = [
        "# Evaluation",
        "",
        f"Runs: {', '.join(f'`{run}`' for run in metrics['runs'])}; test-time augmentation: {metrics['tta']}; "
        f"{metrics['images']} images{of_subjects} ({metrics['evaluated_on']}).{unit}",
    ]
    for name, head in task.heads.items():
        section = head.report_lines(per_head[name], 2 if single else 3)
        lines += section if single else ["", f"## {name}", *section]
    if checked := metrics.get("self_validation"):
        lines += _self_validation_lines(checked, metrics["images"])
    for name, figures in per_head.items():
        if "tta_against_none" in figures:
            title = f"Test-time augmentation ({metrics['tta']}) against none (same images)"
            lines += comparison_lines(title if single else f"{name}: {title}", "predictions",
                                      figures["tta_against_none"], 2)  # fmt: skip
    lines += ["", "## Figures", ""] + [f"![{plot.stem}]({plot.name})" for plot in plots]
    path.write_text("\n".join(lines) + "\n")


def _self_validation_lines(checked: Mapping[str, Any], images: int) -> list[str]:
    """How many evaluated images the gate refuses, and each method measured on the
    out-of-distribution set."""
    of = f" of {checked['mae_of']}" if "mae_of" in checked else ""
    compared = (f" MAE{of} {fmt(checked['mae_refused'])} on those, against {fmt(checked['mae_rest'])} for the rest."
                if checked["refused"] and "mae_rest" in checked else "")  # fmt: skip
    ood = checked["ood_set"]
    kinds = ", ".join(f"{count} {kind.replace('_', ' ')}" for kind, count in ood["kinds"].items())
    header = f", {ood['header_refused']} of them refused by their DICOM header" if ood["header_refused"] else ""
    lines = [
        *heading(2, "Self-validation"),
        f"{checked['refused']} of {images} images not assessed ({checked['method']} score above the validation "
        f"images' {checked['quantile']:g} quantile, {fmt(checked['threshold'])}).{compared}",
        "",
        f"Out-of-distribution set ({ood['source']}): {ood['images']} images ({kinds}){header}; "
        f"{100 * ood['refused']:.1f}% not assessed.",
        "",
        "| method | hands refused | foreign refused | AUROC | FPR at 95% TPR |",
        "|---|---|---|---|---|",
    ]
    for name, row in checked["methods"].items():
        chosen = " (used)" if name == checked["method"] else ""
        lines.append(f"| {name}{chosen} | {100 * row['false_refusal']:.2f}% | {100 * row['refused']:.1f}% | "
                     f"{row['auroc']:.4f} | {100 * row['fpr_at_95_tpr']:.2f}% |")  # fmt: skip
    return lines
