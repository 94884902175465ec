"""Exported runs as predictors: ONNX (run by ONNX Runtime) or TorchScript files, with the sidecar
that says how each reads an image, what it needs and where it came from."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pandas as pd
import torch
from hydra.utils import instantiate

from boneage.config.errors import ConfigError
from boneage.evaluation.inference import views_and_features
from boneage.modules.pixels import INPUT_FORMAT
from boneage.selfcheck.gate import Gate
from boneage.tasks.base import Task

SIDECAR = "boneage_export.json"
FEATURES_OUTPUT = "features"  # the networks' second output: their pooled features, for self-validation


def is_export(target: str | Path) -> bool:
    path = Path(target).expanduser()
    return path.name == SIDECAR or (path / SIDECAR).is_file()


def load_export(target: str | Path) -> list[ExportedMember]:
    """The members of an export folder (or its sidecar), each with its network file loaded."""
    path = Path(target).expanduser().resolve()
    sidecar = path if path.name == SIDECAR else path / SIDECAR
    try:
        described = json.loads(sidecar.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"run={target}: {sidecar} is not a readable boneage export ({error}).") from error
    gate = Gate.load(sidecar.parent, described["gate"]) if "gate" in described else None  # none before self-validation
    return [ExportedMember(sidecar.parent / entry["file"], entry, described["trust"], gate)
            for entry in described["members"]]  # fmt: skip


@dataclass
class ExportedMember:
    """One exported network; predicts exactly as its run did (same preprocessing and TTA views)."""

    file: Path
    entry: dict[str, Any]
    trust: dict[str, Any]  # the export's calibration and interval or set tables (TaskTrust.as_dict)
    gate: Gate | None = None  # the export's self-validation, fitted on its runs' validation images

    def __post_init__(self) -> None:
        if not self.file.is_file():
            raise ConfigError(f"{self.file} is missing from its export folder.")
        if self.entry.get("image_input") != INPUT_FORMAT or "task" not in self.entry:
            raise ConfigError(
                f"{self.file} is an export of an earlier boneage (float RGB input, no task in its sidecar); "
                f"networks now take {INPUT_FORMAT}. Export its run again: "
                f"python -m boneage.export run={self.entry['source']['run_dir']}"
            )
        if self.file.suffix == ".onnx":
            self._session = onnxruntime.InferenceSession(str(self.file), providers=["CPUExecutionProvider"])
        else:
            self._scripted = torch.jit.load(str(self.file), map_location="cpu").eval()

    @property
    def name(self) -> str:
        return self.entry["name"]

    @property
    def unit(self) -> str | None:
        return self.entry["unit"]

    @cached_property
    def task(self) -> Task:
        """What the network answers: its run's task, as the sidecar describes it (its config, and
        the classes its heads learnt); built once, not for every batch served."""
        task = instantiate(self.entry["task"]["config"])
        recorded = self.entry["task"]["state"]  # an earlier version's holds no unit: its member entry says it
        task.restore({name: {"unit": self.entry.get("unit")} | recorded.get(name, {}) for name in task.names})
        return task

    @property
    def inputs(self) -> list[str]:
        return list(self.entry["settings"]["inputs"])

    @property
    def metrics(self) -> dict[str, float] | None:
        return self.entry.get("metrics")

    @property
    def weight(self) -> float:
        """Its weight in the exported ensemble."""
        return self.entry["weight"]

    def identity(self) -> dict[str, str]:
        return {"run": self.name, "checkpoint": self.file.name, "config_hash": self.entry["config_hash"]}

    def predict(self, rows: pd.DataFrame, tta: Sequence[str] | str = "none", batch_size: int = 32) -> np.ndarray:
        return self.predict_views(rows, tta, batch_size).mean(0)

    def predict_views(self, rows: pd.DataFrame, tta: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        return self.views_and_features(rows, tta, batch_size)[0]

    def views_and_features(
        self, rows: pd.DataFrame, tta: Sequence[str] | str, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The answers of each TTA view of each image and, from the same pass, the network's
        pooled features of each plain image (its second output; None in an earlier export)."""
        return views_and_features(rows, self.entry["settings"], self._answers_and_features, self.name, tta, batch_size)

    def _answers_and_features(
        self, images: torch.Tensor, inputs: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        answers, *features = self._outputs(images, inputs)
        return answers, features[0] if features else None

    def _outputs(self, images: torch.Tensor, inputs: torch.Tensor | None) -> list[torch.Tensor]:
        """Every output of the network: its answers, then (exports with self-validation) its features."""
        arguments = [images] if inputs is None else [images, inputs]
        if self.file.suffix != ".onnx":
            outputs = self._scripted(*arguments)
            return list(outputs) if isinstance(outputs, tuple) else [outputs]
        feeds = {feed.name: value.numpy() for feed, value in zip(self._session.get_inputs(), arguments, strict=True)}
        return [torch.from_numpy(output) for output in self._session.run(None, feeds)]
