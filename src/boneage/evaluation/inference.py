"""Trained runs as predictors: each with its own network and its own preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from boneage.checks import check_checkpoint
from boneage.datamodules.dataset import AgeImageDataset
from boneage.datamodules.inputs import encode_inputs
from boneage.datamodules.transforms import build_pipeline, preprocessing
from boneage.errors import ConfigError
from boneage.evaluation.tta import Views, tta_views
from boneage.modules import AgeRegressor
from boneage.records import RunRecord


@dataclass
class TrainedRun:
    """A run's best network with the preprocessing it was trained with."""

    run_dir: Path
    checkpoint: Path
    config: DictConfig
    module: AgeRegressor

    @property
    def name(self) -> str:
        return f"{self.run_dir.parent.name}/{self.run_dir.name}"

    @property
    def unit(self) -> str:
        data = RunRecord(self.run_dir).read_if_readable().get("data") or {}
        return data.get("age_unit") or str(self.config.data.source.get("age_unit", "years"))

    @property
    def test_rows(self) -> pd.DataFrame:
        """The run's own held-out test subjects, as its split recorded them."""
        splits = pd.read_csv(self.run_dir / "splits.csv")
        return splits[splits["set"] == "test"].reset_index(drop=True)

    @property
    def preprocess(self) -> list[A.BasicTransform]:
        """The deterministic preprocessing the run was trained with (size, CLAHE)."""
        data = self.config.data
        return preprocessing(data.image_size, data.clahe, data.clahe_clip_limit, data.clahe_tile_grid)

    @property
    def pipeline(self) -> A.Compose:
        """The preprocessing, as tensors."""
        return build_pipeline(self.preprocess)

    def predict(self, rows: pd.DataFrame, tta: Sequence[str] | str = "none", batch_size: int = 32) -> np.ndarray:
        """Predicted ages for the images of `rows` (column `image`), averaged over TTA views."""
        table = rows.assign(age=rows.get("age", np.nan))
        inputs = encode_inputs(
            table,
            self.module.hparams.extra_inputs,
            f"the images for {self.name} (trained with table inputs: give a table)",
        )
        views = tta_views(tta, OmegaConf.to_container(self.config.data.get("augment") or {}))
        pipelines = Views([build_pipeline(self.preprocess, view) for view in views.values()])
        loader = DataLoader(AgeImageDataset(table, pipelines, inputs=inputs), batch_size=batch_size)
        predictions = []
        with torch.inference_mode():
            for batch in loader:
                inputs = batch.get("inputs")
                per_view = [self.module(images, inputs) for images in batch["image"].unbind(1)]
                predictions.append(torch.stack(per_view).mean(0))
        return torch.cat(predictions).numpy()


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
    module = instantiate(config.module, pretrained=False, weights=None, compile=False)  # the trained network's shape
    module.load_state_dict(check_checkpoint(str(checkpoint), module, config.model.name))
    return TrainedRun(run_dir, checkpoint, config, module.eval())


def _best_checkpoint(run_dir: Path) -> Path:
    best = RunRecord(run_dir).read_if_readable().get("best_checkpoint")
    candidates = [Path(best)] if best else []
    candidates += [*sorted((run_dir / "checkpoints").glob("epoch*.ckpt")), run_dir / "checkpoints" / "last.ckpt"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"run={run_dir}: it has no checkpoint (did it finish an epoch?).")
