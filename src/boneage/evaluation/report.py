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
    if ood := metrics.get("out_of_distribution"):
        lines += _ood_lines(ood, metrics["images"])
    for name, figures in per_head.items():
        if "tta_against_none" in figures:
            title = f"Test-time augmentation ({metrics['tta']}) against none (same images)"
            lines += comparison_lines(title if single else f"{name}: {title}", "predictions",
                                      figures["tta_against_none"], 2)  # fmt: skip
    lines += ["", "## Figures", ""] + [f"![{plot.stem}]({plot.name})" for plot in plots]
    path.write_text("\n".join(lines) + "\n")


def _ood_lines(ood: Mapping[str, Any], images: int) -> list[str]:
    of = f" of {ood['mae_of']}" if "mae_of" in ood else ""
    compared = (f"MAE{of} {fmt(ood['mae_flagged'])} against {fmt(ood['mae_rest'])} for the rest"
                if ood["flagged"] and "mae_rest" in ood else "")  # fmt: skip
    return [*heading(2, "Out-of-distribution flags"),
            f"{ood['flagged']} of {images} images flagged (feature distance above the validation images' "
            f"{ood['quantile']:g} quantile, {fmt(ood['threshold'])}). {compared}"]  # fmt: skip
