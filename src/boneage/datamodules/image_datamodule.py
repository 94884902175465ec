"""LightningDataModule: label table -> subject-level split -> datasets -> loaders, for any task."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import albumentations as A
import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from boneage.config.errors import ConfigError, DataError
from boneage.datamodules.cache import CachedImages, cached_images
from boneage.datamodules.dataset import ImageDataset
from boneage.datamodules.images import ImageLimits, unreadable_images
from boneage.datamodules.inputs import encode_inputs
from boneage.datamodules.samplers import EpochLoader, EpochSampler, ShardSampler
from boneage.datamodules.splits import SubjectSplit, split_summary
from boneage.datamodules.transforms import build_pipeline, preprocessing
from boneage.datamodules.validation import describe
from boneage.datamodules.workers import worker_context, worker_setup
from boneage.runs.records import write_atomically
from boneage.tasks.base import Task
from boneage.tasks.protocol import Head

log = logging.getLogger(__name__)


class LabelSource(Protocol):
    """Anything that can put a label table on disk and read it (a user's table, the demo)."""

    path: str

    def prepare(self) -> None: ...

    def load(self, heads: Mapping[str, Any] | None = None) -> pd.DataFrame: ...


class ImageDataModule(pl.LightningDataModule):
    """Loads the table once, splits it by subject, fits the task's heads to the training rows
    (scales, classes, class counts) and serves train/val/test loaders.

    The split is written to `output_dir/splits.csv` so that every run can be audited and
    its test subjects evaluated again later. With `folds`, validation is fold `fold` of a
    k-fold split of the non-test subjects (cross-validation). `extra_inputs` are table
    columns served beside each image; `balance` re-balances rare ages or classes (see balance.py).
    Every image is decoded once before training (into the cache, or only to check it): one that
    does not read within `max_pixels`/`multi_frame` is a bad row, as a missing file is.
    Loaders shard their sets over DDP ranks themselves (see samplers.py), and loader
    workers start through `worker_start` (see workers.py).
    """

    def __init__(
        self,
        source: LabelSource,
        split: SubjectSplit,
        image_size: int,
        batch_size: int,
        *,
        task: Task,
        num_workers: int = 4,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        prefetch_factor: int | None = 2,
        worker_start: str | None = "forkserver",
        cache: bool = False,
        cache_dir: str | None = None,
        clahe: bool = False,
        clahe_clip_limit: float = 2.0,
        clahe_tile_grid: int = 8,
        augment: Mapping[str, A.BasicTransform] | None = None,
        on_bad_rows: str = "raise",
        max_pixels: int | None = None,
        multi_frame: str = "first",
        extra_inputs: Sequence[str] = (),
        balance: Mapping[str, Any] | None = None,
        folds: int | None = None,
        fold: int = 0,
        seed: int = 0,
        output_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.task = task
        if on_bad_rows not in ("raise", "drop"):
            raise ConfigError(f"data.on_bad_rows must be 'raise' or 'drop', not {on_bad_rows!r}.")
        self.source = source
        self.split = replace(split, folds=folds, fold=fold) if folds is not None else split
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.loader_options = {
            "pin_memory": torch.cuda.is_available() if pin_memory is None else pin_memory,
            "persistent_workers": persistent_workers and num_workers > 0,
            "prefetch_factor": prefetch_factor if num_workers > 0 else None,
            "multiprocessing_context": worker_context(worker_start) if num_workers > 0 else None,
            "worker_init_fn": worker_setup() if num_workers > 0 else None,
        }
        if cache and not cache_dir:
            raise ConfigError("data.cache=true needs data.cache_dir (a folder for preprocessed images).")
        self.cache_dir = cache_dir if cache else None
        self.cache: CachedImages | None = None
        self.on_bad_rows = on_bad_rows
        self.limits = ImageLimits(max_pixels, multi_frame)
        self.extra_inputs = list(extra_inputs)
        self.balance = dict(balance or {"method": None})
        self.seed = seed
        self.output_dir = output_dir
        self.dropped_rows = 0
        # The loaders' own generator for worker seeds: drawing from the global one would shift
        # the dropout stream by whenever Lightning happens to create an iterator.
        self._worker_seeds = torch.Generator().manual_seed(seed)
        self.preprocessing_settings = {
            "image_size": image_size,
            "clahe": clahe,
            "clahe_clip_limit": clahe_clip_limit,
            "clahe_tile_grid": clahe_tile_grid,
        }
        self.preprocess = A.Compose(preprocessing(**self.preprocessing_settings))
        per_epoch = [] if self.cache_dir else self.preprocess.transforms  # cached images are preprocessed already
        self.train_pipeline = build_pipeline(per_epoch, (augment or {}).values())
        self.eval_pipeline = build_pipeline(per_epoch)
        self.table: pd.DataFrame | None = None

    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        if self.table is not None:
            return
        table = self._without_bad_rows(self._with_unreadable_images(self.source.load(self.task.heads)))
        table["set"] = self.split.assign(table, self.stratified_by)
        for name, head in self.task.heads.items():
            if hasattr(head, "check_sets"):
                head.check_sets(table[name], table["set"])
        encode_inputs(table, self.extra_inputs, str(self.source.path))  # every input present, before training
        self.table = table
        self.task.fit(self.rows("train"), self.source)
        for name, sizes in split_summary(table, self.stratified_by.name).items():
            log.info("%-5s %6d images  %5d subjects", name, sizes["images"], sizes["subjects"])
        if self.output_dir and self._is_global_zero():
            write_atomically(Path(self.output_dir) / "splits.csv", table.to_csv(index=False))

    def _with_unreadable_images(self, table: pd.DataFrame) -> pd.DataFrame:
        """Decode every image of the rows without a problem yet, building the cache as it goes
        (or only checking, without one); each image that does not read becomes its row's problem."""
        candidates = table.index[table["problem"].isna()]
        images = table.loc[candidates, "image"].tolist()
        workers = max(1, self.num_workers)
        if self.cache_dir:
            settings, preprocess = self.preprocessing_settings, self._preprocessed
            self.cache = cached_images(self.cache_dir, images, settings, preprocess, workers, self.limits)
            unreadable = self.cache.unreadable
        else:
            unreadable = unreadable_images(images, self.limits, workers)
        table.loc[candidates, "problem"] = table.loc[candidates, "image"].map(unreadable)
        return table

    def _preprocessed(self, image: np.ndarray) -> np.ndarray:
        return self.preprocess(image=image)["image"]

    def _without_bad_rows(self, table: pd.DataFrame) -> pd.DataFrame:
        """Apply data.on_bad_rows: stop with every bad row named, or drop and list them."""
        bad = table["problem"].notna()
        if not bad.any():
            return table.drop(columns="problem")
        if self.on_bad_rows == "raise" or bad.all():
            raise DataError(describe(table[bad], self.source.path))
        self.dropped_rows = int(bad.sum())
        log.warning("Dropped %d bad row(s) of %s (data.on_bad_rows=drop)", self.dropped_rows, self.source.path)
        if self.output_dir and self._is_global_zero():
            write_atomically(Path(self.output_dir) / "dropped_rows.csv", table[bad].to_csv(index=False))
        return table[~bad].drop(columns="problem")

    def _is_global_zero(self) -> bool:
        return self.trainer is None or self.trainer.is_global_zero

    def rows(self, name: str) -> pd.DataFrame:
        """The rows of one set ('train', 'val' or 'test')."""
        if self.table is None:
            self.setup()
        return self.table[self.table["set"] == name]

    @property
    def stratified_by(self) -> Head:
        """The head whose target the split is stratified by, and data.balance balances."""
        return self.task.heads[self.task.stratify]

    @property
    def train_input_stats(self) -> tuple[list[float], list[float]]:
        """Mean and standard deviation of each table input over the training rows."""
        inputs = self._inputs("train")
        return inputs.mean(0).tolist(), [float(std) or 1.0 for std in inputs.std(0)]

    def _inputs(self, name: str) -> np.ndarray:
        return encode_inputs(self.rows(name), self.extra_inputs, str(self.source.path))

    def summary(self) -> dict[str, Any]:
        """Data set statistics and split sizes for the run record, with what the trivial
        predictor scores (the training mean, the majority class) on val and test."""
        if self.table is None:
            self.setup()
        table = self.table
        train = self.rows("train")
        sex_counts = table["sex"].value_counts(dropna=False) if table["sex"].notna().any() else None
        trivial = {
            name: {stage: head.trivial(train[name], self.rows(stage)[name]) for stage in ("val", "test")
                   if len(self.rows(stage))}
            for name, head in self.task.heads.items()
        }  # fmt: skip
        summary = {
            "table": str(self.source.path),
            "units": {name: head.unit for name, head in self.task.heads.items() if head.unit},
            "images": len(table),
            "subjects": int(table["subject"].nunique()),
            **{name: head.describe(table[name]) for name, head in self.task.heads.items()},
            "sex": {str(k): int(v) for k, v in sex_counts.items()} if sex_counts is not None else None,
            "dropped_rows": self.dropped_rows,
            "extra_inputs": self.extra_inputs,
            "preprocessing_cache": str(self.cache.path) if self.cache else None,
            "balance": self.balance,
            "split_method": "by_subject",
            "split": vars(self.split) | {"stratified_by": self.task.stratify} | {
                "sets": split_summary(table, self.task.stratify)},
            "trivial_predictor": trivial,
        }  # fmt: skip
        first = next(iter(trivial.values()))
        if all("mean_predictor_mae" in figures for figures in first.values()):  # one number per set: the summary's
            summary["mean_predictor_mae"] = {stage: figures["mean_predictor_mae"] for stage, figures in first.items()}
        return summary

    def train_dataloader(self) -> EpochLoader:
        rows = self.rows("train")
        method = self.balance.get("method")
        weights = self.stratified_by.balance_weights(rows[self.task.stratify], self.balance)
        dataset = ImageDataset(
            rows,
            self.train_pipeline,
            targets=self._targets(rows),
            augmentation_seed=self.seed,
            inputs=self._inputs("train"),
            weights=weights if method == "lds" else None,
            cache=self.cache,
        )
        sampler = EpochSampler(len(rows), self.seed, weights if method == "sampler" else None, *self._shard())
        return self._loader(dataset, sampler, drop_last=len(sampler) > self.batch_size)

    def _targets(self, rows: pd.DataFrame) -> dict[str, np.ndarray]:
        return {name: head.targets(rows[name]) for name, head in self.task.heads.items()}

    def val_dataloader(self) -> EpochLoader:
        return self._evaluation_loader("val")

    def test_dataloader(self) -> EpochLoader:
        return self._evaluation_loader("test")

    def _evaluation_loader(self, name: str) -> EpochLoader:
        rows = self.rows(name)
        dataset = ImageDataset(
            rows, self.eval_pipeline, targets=self._targets(rows), inputs=self._inputs(name), cache=self.cache
        )
        return self._loader(dataset, ShardSampler(len(rows), *self._shard()))

    def _shard(self) -> tuple[int, int]:
        """This process's rank and the world size (0 and 1 outside DDP)."""
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    def _loader(self, dataset: ImageDataset, sampler, drop_last: bool = False) -> EpochLoader:
        return EpochLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            generator=self._worker_seeds,
            drop_last=drop_last,
            num_workers=self.num_workers,
            **self.loader_options,
        )
