"""Trained runs as predictors: each with its own network and its own preprocessing.

A predictor is a trained run (its checkpoint, in PyTorch) or an exported one (ONNX, with
its sidecar); both read images the way the run was trained and average TTA views the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from boneage.config.build import build_trained_module
from boneage.config.checks import check_checkpoint, read_checkpoint
from boneage.config.errors import ConfigError
from boneage.datamodules.dataset import ImageDataset
from boneage.datamodules.inputs import encode_inputs
from boneage.datamodules.transforms import build_pipeline, preprocessing
from boneage.evaluation.tta import Views, tta_views
from boneage.modules.model import ImageModel
from boneage.runs.records import RunRecord
from boneage.tasks.base import Task

PREPROCESSING = ("image_size", "clahe", "clahe_clip_limit", "clahe_tile_grid")  # preprocessing()'s arguments
Forward = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]  # images, table inputs -> ages
# images, table inputs -> (answers, pooled features or None)
ForwardWithFeatures = Callable[[torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor | None]]


def predict_views(
    rows: pd.DataFrame, settings: Mapping[str, Any], forward: Forward, name: str, tta: Sequence[str] | str,
    batch_size: int = 32,
) -> np.ndarray:  # fmt: skip
    """`forward`'s answer (an age, a spread) for each TTA view of each image of `rows` (column
    `image`), read with a run's preprocessing `settings` (image_size, clahe..., augment, inputs):
    an array (views, images, ...)."""
    both = lambda images, inputs: (forward(images, inputs), None)  # noqa: E731
    return views_and_features(rows, settings, both, name, tta, batch_size)[0]


def views_and_features(
    rows: pd.DataFrame, settings: Mapping[str, Any], forward: ForwardWithFeatures, name: str,
    tta: Sequence[str] | str, batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """As predict_views, with the plain view's pooled features from the same pass (the evidence
    of self-validation), or None from a network that does not give them."""
    inputs = encode_inputs(rows, settings["inputs"], f"the images for {name} (trained with table inputs: give a table)")
    steps = preprocessing(*(settings[key] for key in PREPROCESSING))
    views = Views([build_pipeline(steps, view) for view in tta_views(tta, settings["augment"]).values()])
    loader = DataLoader(ImageDataset(rows, views, inputs=inputs), batch_size=batch_size)
    answers, features = [], []
    with torch.inference_mode():
        for batch in loader:
            per_view = [forward(images, batch.get("inputs")) for images in batch["image"].unbind(1)]
            answers.append(torch.stack([answer for answer, _ in per_view]))
            features.append(per_view[0][1])  # the plain view is the first
    given = features and features[0] is not None
    return torch.cat(answers, dim=1).numpy(), torch.cat(features).numpy() if given else None


@dataclass
class TrainedRun:
    """A run's best network with the preprocessing it was trained with."""

    run_dir: Path
    checkpoint: Path
    config: DictConfig
    module: ImageModel

    @property
    def name(self) -> str:
        return f"{self.run_dir.parent.name}/{self.run_dir.name}"

    @property
    def unit(self) -> str | None:
        """The unit of a one-head task's answers (an age run's: its table's)."""
        return self.task.unit

    @cached_property
    def record(self) -> dict[str, Any]:
        """Its run.json as it was when loaded, as its network is (read once: serving asks per request)."""
        return RunRecord(self.run_dir).read_if_readable()

    @property
    def task(self) -> Task:
        """What the network predicts (its heads, their classes)."""
        return self.module.task

    @property
    def inputs(self) -> list[str]:
        """Table columns the network takes beside the image (data.extra_inputs)."""
        return list(self.module.hparams.extra_inputs)

    @property
    def metrics(self) -> dict[str, float] | None:
        return self.record.get("metrics")

    def identity(self) -> dict[str, str]:
        """Which run and checkpoint, and a hash of the run's config (a changed file shows)."""
        config = (self.run_dir / ".hydra" / "config.yaml").read_bytes()
        return {
            "run": self.name,
            "checkpoint": self.checkpoint.name,
            "config_hash": hashlib.sha256(config).hexdigest()[:12],
        }

    @property
    def test_rows(self) -> pd.DataFrame:
        """The run's own held-out test subjects, as its split recorded them."""
        return self.rows_of("test")

    def rows_of(self, subset: str) -> pd.DataFrame:
        """The images of one set of the run's split (train, val, test), as splits.csv recorded them."""
        splits = pd.read_csv(self.run_dir / "splits.csv")
        return splits[splits["set"] == subset].reset_index(drop=True)

    @property
    def settings(self) -> dict[str, Any]:
        """How the run reads an image (size, CLAHE), its training augmentation (for TTA) and inputs."""
        data = self.config.data
        return {
            "image_size": data.image_size, "clahe": data.clahe, "clahe_clip_limit": data.clahe_clip_limit,
            "clahe_tile_grid": data.clahe_tile_grid, "augment": OmegaConf.to_container(data.get("augment") or {}),
            "inputs": self.inputs,
        }  # fmt: skip

    @property
    def preprocess(self) -> list[A.BasicTransform]:
        """The deterministic preprocessing the run was trained with (size, CLAHE)."""
        return preprocessing(*(self.settings[key] for key in PREPROCESSING))

    @property
    def pipeline(self) -> A.Compose:
        """The preprocessing, as tensors."""
        return build_pipeline(self.preprocess)

    def predict(self, rows: pd.DataFrame, tta: Sequence[str] | str = "none", batch_size: int = 32) -> np.ndarray:
        """Predicted ages for the images of `rows` (column `image`), averaged over TTA views."""
        return self.predict_views(rows, tta, batch_size).mean(0)

    def predict_views(self, rows: pd.DataFrame, tta: Sequence[str] | str, batch_size: int = 32) -> np.ndarray:
        """The age of each TTA view of each image: (views, images)."""
        return self.views_and_features(rows, tta, batch_size)[0]

    def views_and_features(
        self, rows: pd.DataFrame, tta: Sequence[str] | str, batch_size: int = 32
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The answers of each TTA view of each image, and the backbone's pooled features of each
        plain image (what self-validation compares), from one pass."""
        forward = self.module.answers_and_features
        return views_and_features(rows, self.settings, forward, self.name, tta, batch_size)

    def spread(self, rows: pd.DataFrame, head: str, batch_size: int = 32) -> np.ndarray:
        """The spread of value head `head`'s own distribution per image (mean_variance loss)."""
        spread = self.module.spread
        return predict_views(rows, self.settings, lambda images, inputs: spread(images, inputs, head), self.name,
                             "none", batch_size)[0]  # fmt: skip


def load_run(target: str | Path) -> TrainedRun:
    """A run directory (its best checkpoint) or a checkpoint inside a run directory."""
    path = Path(target).expanduser().resolve()
    if path.is_dir():
        run_dir, checkpoint = path, _best_checkpoint(path)
    elif path.is_file():
        run_dir, checkpoint = path.parent.parent, path
    else:
        raise ConfigError(f"run={target}: no such run directory or checkpoint.")
    config_file = run_dir / ".hydra" / "config.yaml"
    if not config_file.is_file():
        raise ConfigError(f"run={target}: {config_file} is missing; it holds the run's preprocessing settings.")
    config = OmegaConf.load(config_file)
    saved = read_checkpoint(str(checkpoint))
    module = build_trained_module(config, saved, pretrained=False, weights=None, compile=False)
    module.load_state_dict(check_checkpoint(str(checkpoint), module, config.model.name, saved))
    return TrainedRun(run_dir, checkpoint, config, module.eval())


def _best_checkpoint(run_dir: Path) -> Path:
    best = RunRecord(run_dir).read_if_readable().get("best_checkpoint")
    candidates = [Path(best)] if best else []
    candidates += [*sorted((run_dir / "checkpoints").glob("epoch*.ckpt")), run_dir / "checkpoints" / "last.ckpt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"run={run_dir}: it has no checkpoint (did it finish an epoch?).")
