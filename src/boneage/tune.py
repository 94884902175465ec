"""`python -m boneage.tune find=lr|batch_size [overrides]`: Lightning's Tuner, as a suggestion.

The same config as `boneage.train` builds the data and model; the Tuner then runs its
learning-rate range test or batch-size search and the command prints what to pass on.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.tuner import Tuner

from boneage.build import build
from boneage.checks import check_config
from boneage.errors import ConfigError
from boneage.plots import save_figure
from boneage.resolvers import register_resolvers

FINDERS = ("lr", "batch_size")


def tune(cfg: DictConfig) -> float | int:
    """Run the finder named by cfg.find and print its suggestion."""
    if cfg.find not in FINDERS:
        raise ConfigError(f"find must be one of {list(FINDERS)}, not {cfg.find!r}.")
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module = build(cfg.data), build(cfg.module)
    # The finders set their own step limits; the epochs must not end them first.
    quiet = {"callbacks": [], "logger": False, "enable_checkpointing": False, "plugins": None}
    trainer = build(cfg.trainer, max_epochs=10_000, **quiet)
    tuner = Tuner(trainer)
    if cfg.find == "lr":
        return _find_lr(tuner, module, datamodule, cfg)
    size = tuner.scale_batch_size(module, datamodule=datamodule, **OmegaConf.to_container(cfg.batch_size_find))
    print(f"Largest batch size that fitted: {size}. Train with data.batch_size={size} (or a little less).")
    return size


def _find_lr(tuner: Tuner, module: pl.LightningModule, datamodule: pl.LightningDataModule, cfg: DictConfig) -> float:
    finder = tuner.lr_find(module, datamodule=datamodule, update_attr=False, **OmegaConf.to_container(cfg.lr_find))
    suggestion = finder.suggestion() if finder else None
    if suggestion is None:
        raise ConfigError("The lr range test found no clear descent; raise lr_find.num_training or widen the range.")
    plot = Path(cfg.paths.output_dir) / "lr_finder.png"
    save_figure(finder.plot(suggest=True), plot)
    print(f"Suggested learning rate: {suggestion:.3g}. Train with optimizer.lr={suggestion:.3g} (curve: {plot}).")
    return suggestion


register_resolvers()


@hydra.main(version_base="1.3", config_path="../../conf", config_name="tune")
def main(cfg: DictConfig) -> None:
    tune(cfg)


if __name__ == "__main__":
    main()
