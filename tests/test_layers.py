"""The package's layers: each part imports only from its own layer or those below, so that a
task, a network or a data module can be used (and tested) without the commands above it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "boneage"
COMMANDS = {
    "train",
    "evaluate",
    "predict",
    "export",
    "calibrate",
    "pacs",
    "serve",
    "report",
    "resume",
    "tune",
    "bench",
    "gpu_check",
}
LAYERS = [  # lowest first
    {"", "config.errors"},  # the version and the errors every layer raises
    {"tasks"},  # what a model predicts: heads, losses, metrics
    {"runtime"},
    {"runs"},
    {"modules", "datamodules"},
    {"config"},  # composing a run from its config: above what it builds
    {"search"},  # the Optuna search: its sweeper, space and storage, the trial a job reports to
    {"evaluation", "selfcheck"},  # answers and their self-validation, one layer: each uses the other
    {"callbacks"},
    {"serving"},
    COMMANDS,
]


def part_of(module: str) -> str:
    """The layer key of a module path inside the package: 'config.errors', else its first part."""
    parts = [part for part in module.split(".")[1:] if part != "__init__"]
    if parts[:2] == ["config", "errors"]:
        return "config.errors"
    return parts[0] if parts else ""


def layer_of(part: str) -> int:
    for index, parts in enumerate(LAYERS):
        if part in parts:
            return index
    raise AssertionError(f"boneage.{part} is in no layer: add it to LAYERS (a new command to COMMANDS)")


def imports_of(file: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("boneage"):
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("boneage")]
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    files = list(PACKAGE.rglob("*.py"))
    assert len(files) > 50, f"only {len(files)} modules under {PACKAGE}: the check would pass on nothing"
    upward = []
    for file in files:
        here = part_of(".".join(("boneage", *file.relative_to(PACKAGE).with_suffix("").parts)))
        for imported in imports_of(file):
            if layer_of(part_of(imported)) > layer_of(here):
                upward.append(f"{file.relative_to(PACKAGE)} imports {imported}")
    assert not upward, "\n".join(upward)


def test_the_layer_check_sees_an_upward_import(tmp_path):
    """The check above would catch a task that reached up into the evaluation (as tasks once did)."""
    file = tmp_path / "head.py"
    file.write_text("from boneage.evaluation.plots import confusion_matrix_figure\n")
    assert layer_of(part_of(imports_of(file)[0])) > layer_of(part_of("boneage.tasks.classification"))


def test_a_part_in_no_layer_is_named():
    with pytest.raises(AssertionError, match=r"boneage.newcommand is in no layer: add it to LAYERS"):
        layer_of(part_of("boneage.newcommand"))
