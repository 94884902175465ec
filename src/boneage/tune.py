"""`python -m boneage.tune find=lr|batch_size [overrides]`: Lightning's Tuner, as a suggestion.

The same config as `boneage.train` builds the data and model; the Tuner then runs its
learning-rate range test or batch-size search and the command prints what to pass on.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from boneage.runtime.startup import collector_paused

with collector_paused():  # torch and its libraries: a fifth quicker to start
    import pytorch_lightning as pl
    from omegaconf import DictConfig, OmegaConf
    from pytorch_lightning.tuner import Tuner

    from boneage.config.build import build, build_data_and_module
    from boneage.config.checks import check_config
    from boneage.config.cli import hydra_command
    from boneage.config.errors import ConfigError
    from boneage.runs.plots import save_figure

FINDERS = ("lr", "batch_size")


def tune(cfg: DictConfig) -> float | int:
    """Run the finder named by cfg.find and print its suggestion."""
    if cfg.find not in FINDERS:
        raise ConfigError(f"find must be one of {list(FINDERS)}, not {cfg.find!r}.")
    check_config(cfg)
    pl.seed_everything(cfg.seed, workers=True)
    datamodule, module = build_data_and_module(cfg)
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
    if finder is None or len(finder.results["lr"]) < 4:
        raise ConfigError("The lr range test recorded too few steps; raise lr_find.num_training.")
    suggestion = valley(finder.results["lr"], finder.results["loss"])
    figure = finder.plot()
    figure.axes[0].axvline(suggestion, color="red", linestyle="--", label=f"suggestion {suggestion:.3g}")
    figure.axes[0].legend()
    plot = Path(cfg.paths.output_dir) / "lr_finder.png"
    save_figure(figure, plot)
    print(f"Suggested learning rate: {suggestion:.3g}. Train with optimizer.lr={suggestion:.3g} (curve: {plot}).")
    return suggestion


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float:
    """The lr two-thirds of the way down the longest falling stretch of the loss curve.

    Lightning's own suggestion (the steepest slope) can land on a bump at the start of the
    curve, where noise rises and falls by chance, and suggest an lr far too small to train.
    The longest stretch of falling loss is where training really descends; fastai's
    "valley" rule suggests the point two-thirds of the way along it, short of the minimum
    where the loss is about to blow up.
    """
    # longest[i]: length of the longest decreasing subsequence of losses ending at i
    longest = [1] * len(losses)
    for i in range(1, len(losses)):
        longest[i] = 1 + max((longest[j] for j in range(i) if losses[j] > losses[i]), default=0)
    end = max(range(len(losses)), key=lambda i: (longest[i], -i))
    start = end - longest[end] + 1
    third = (end - start) / 3
    return float(lrs[start + int(third) + int(third / 2)])


@hydra_command("tune")
def main(cfg: DictConfig) -> None:
    tune(cfg)


if __name__ == "__main__":
    main()
