"""The config tree: every option composes, overrides work, typos fail, the CLI explains itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from tests.conftest import TINY, group_options, run_cli

SELECTABLE_GROUPS = (
    "model", "loss", "optimizer", "scheduler", "trainer", "callbacks", "logger",
    "debug", "experiment", "launcher", "hparams_search", "training", "averaging",
)  # fmt: skip


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group in SELECTABLE_GROUPS for option in group_options(group)]
)
def test_every_group_option_composes_and_resolves(compose_train, override):
    cfg = compose_train([override])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation points somewhere real
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_table_data_composes_once_its_files_are_named(compose_train):
    cfg = compose_train(["data=table", "data.source.path=labels.csv", "data.source.image_dir=images"])
    assert cfg.data.source._target_ == "boneage.datamodules.TableSource"
    assert cfg.data.split.age_bin_width == 10  # the default: bins of 10 units


@pytest.mark.parametrize("option", group_options("loss") + group_options("optimizer"))
def test_losses_and_optimizers_instantiate(compose_train, option):
    group = "loss" if option in group_options("loss") else "optimizer"
    cfg = compose_train([f"{group}={option}"])
    built = instantiate(cfg[group])
    if group == "optimizer":
        import torch

        built = built(params=[torch.nn.Parameter(torch.zeros(1))])
        assert built.defaults["lr"] == cfg.optimizer.lr
    assert built is not None


def test_model_options_carry_native_size_and_batch(compose_train):
    for option in group_options("model"):
        model = compose_train([f"model={option}"]).model
        assert model.image_size > 0 and model.batch_size > 0, option
    assert compose_train(["model=efficientnet_b1"]).model.image_size == 240


def test_data_follows_the_model_size_unless_overridden(compose_train):
    cfg = compose_train(["model=efficientnet_b2"])
    assert (cfg.data.image_size, cfg.data.batch_size) == (260, 64)
    assert compose_train(["model=efficientnet_b2", "data.image_size=300"]).data.image_size == 300


def test_mistyped_key_fails_instead_of_adding_a_key(compose_train):
    with pytest.raises(ConfigCompositionException, match=r"model\.dropuot"):
        compose_train(["model.dropuot=0.3"])


def test_cli_help_lists_the_config_groups(tmp_path, data_dir):
    result = run_cli(["--help"], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr
    for line in (
        "convnext_tiny, efficientnet_b0",
        "loss: huber, mae, mean_variance, mse, smooth_l1",
        "trainer: cpu, ddp",
        "averaging: ema, swa",
    ):
        assert line in result.stdout


def test_cli_cfg_job_prints_the_composed_config_with_overrides(tmp_path, data_dir):
    result = run_cli(["model=efficientnet_b1", "loss=huber", "--cfg", "job"], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr
    printed = OmegaConf.create(result.stdout)
    assert printed.model.name == "efficientnet_b1"
    assert printed.loss._target_ == "torch.nn.HuberLoss"


def test_cli_mistyped_key_exits_with_hydras_message(tmp_path, data_dir):
    result = run_cli([*TINY, "optimizer.lrr=1e-3"], tmp_path, data_dir)
    assert result.returncode != 0
    assert "Could not override 'optimizer.lrr'" in result.stderr
    assert not (Path(tmp_path) / "outputs").exists()  # nothing started
