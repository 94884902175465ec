"""The config tree: every option composes, overrides work, typos fail, the CLI explains itself."""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from boneage.config.checks import check_config
from boneage.config.cli import with_current_key_names
from boneage.config.errors import ConfigError
from boneage.modules.backbones import feature_width
from tests.helpers import CONF_DIR, TINY, compose_app, group_options, run_cli

OTHER_GROUPS = ("trainer", "callbacks", "logger", "debug", "experiment", "launcher", "hparams_search", "training")


@pytest.mark.parametrize("override", [f"{group}={option}" for group in OTHER_GROUPS for option in group_options(group)])
def test_every_other_group_option_composes_and_resolves(compose_train, override):
    cfg = compose_train([override])
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation points somewhere real
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_table_data_composes_once_its_files_are_named(compose_train):
    cfg = compose_train(["data=table", "data.source.path=labels.csv", "data.source.image_dir=images"])
    assert cfg.data.source._target_ == "boneage.datamodules.TableSource"
    assert cfg.data.split.stratum_width == 10  # the default: bins of 10 units


COMBINED_GROUPS = ("scheduler", "optimizer", "loss", "averaging", "model")
PACKAGE = {"averaging": "callbacks.averaging"}  # where a group's option lands in the composed config


@pytest.fixture(scope="module")
def compose_plain():
    """compose_plain(overrides) -> the composed train config, without a Hydra run around it (fast)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        yield lambda overrides: compose("train", overrides=list(overrides))
    GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def option_keys(compose_plain):
    """option_keys(group, option) -> the dotted keys that option has on its own (composed once)."""
    return functools.cache(
        lambda group, option: dotted_keys(
            OmegaConf.to_container(OmegaConf.select(compose_plain([f"{group}={option}"]), PACKAGE.get(group, group)))
        )
    )


def dotted_keys(node, prefix: str = "") -> set[str]:
    if not isinstance(node, dict) or not node:
        return {prefix}
    return {key for name, value in node.items() for key in dotted_keys(value, f"{prefix}.{name}".lstrip("."))}


def build_group(cfg, group: str) -> None:
    """Instantiate what the group configures, as training would (no training)."""
    if group == "averaging":
        instantiate(cfg.callbacks.averaging)
        return
    task = instantiate(cfg.task)
    task.restore({name: {"classes": ["a", "b"]} for name in task.names})  # as a checkpoint's classes would
    module = instantiate(cfg.module, task=task)
    if group in ("optimizer", "scheduler"):
        module.trainer = SimpleNamespace(estimated_stepping_batches=100, max_epochs=10)  # the schedule's length
        module.configure_optimizers()


def sets_combined_groups(experiment: str) -> bool:
    """Whether the experiment's own file sets a combined group or its keys, or the task (which decides
    the losses and heads). One that does not (a sweep of its parent's keys) composes there as its parent."""
    own = OmegaConf.load(CONF_DIR / "experiment" / f"{experiment}.yaml")
    defaults = OmegaConf.to_container(own).get("defaults", [])
    chosen = {name.removeprefix("override /") for entry in defaults if isinstance(entry, dict) for name in entry}
    packages = {PACKAGE.get(group, group) for group in COMBINED_GROUPS}
    return bool(chosen & {*COMBINED_GROUPS, "task"}) or any(
        OmegaConf.select(own, package) is not None for package in packages
    )


def crossed_options(group: str, option_keys) -> list[str]:
    """The options each experiment is composed with: every one, but of the models one per key set.
    Model options differ in values (name, size, batch), and networks are not built here: an
    experiment's model keys leak into every option of a key set, or into none of them."""
    if group != "model":
        return group_options(group)
    return list({frozenset(option_keys(group, option)): option for option in group_options(group)}.values())


@pytest.mark.parametrize(
    "experiment",
    # Each experiment alone composes in the fast tier (test_every_other_group_option_composes_and_resolves);
    # its product with every option of every group is a few seconds each, so it runs with the full suite.
    [
        "none",
        *(
            pytest.param(name, marks=pytest.mark.slow)
            for name in group_options("experiment")
            if sets_combined_groups(name)
        ),
    ],
)
def test_every_experiment_composes_with_every_option_or_model_key_set_and_keeps_other_options_keys_out(
    compose_plain, option_keys, experiment
):
    chosen = [] if experiment == "none" else [f"experiment={experiment}"]
    broken = []
    for group in COMBINED_GROUPS:
        package = PACKAGE.get(group, group)
        for option in crossed_options(group, option_keys):
            try:
                cfg = compose_plain([*chosen, f"{group}={option}", "model.pretrained=false"])
                composed = OmegaConf.to_container(OmegaConf.select(cfg, package), resolve=True)
                leaked = dotted_keys(composed) - option_keys(group, option)
                assert not leaked, f"keys that {option} does not have: {sorted(leaked)}"
                if group != "model":  # networks are built once per model config below
                    OmegaConf.update(cfg, "model.name", "test_resnet")
                    OmegaConf.update(cfg, "model.kwargs", {}, merge=False)
                    build_group(cfg, group)
            except Exception as error:
                if group == "loss" and "ConfigError" in str(error) and "loss must be a" in str(error):
                    continue  # a loss of the other kind than the task's heads: refused, by name
                broken.append(f"experiment={experiment} {group}={option}: {type(error).__name__}: {error}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("option", group_options("model"))
def test_each_model_config_builds_its_network_for_its_native_size(compose_plain, option):
    """Built on the meta device: shapes and widths are checked without computing 200M-parameter nets."""
    cfg = compose_plain([f"model={option}", "model.pretrained=false"])
    size = cfg.model.image_size
    assert size > 0 and cfg.model.batch_size > 0
    with torch.device("meta"):
        module = instantiate(cfg.module, task=instantiate(cfg.task))
        predicted = module(torch.empty(2, 1, size, size, dtype=torch.uint8))
    assert module.backbone.default_cfg["architecture"] == cfg.model.name.split(".")[0]
    assert module.head[1].in_features == feature_width(module.backbone)  # the head reads the pooled width
    assert predicted.shape == (2,)  # one age per image at the config's own size


def test_data_follows_the_model_size_unless_overridden(compose_train):
    cfg = compose_train(["model=efficientnet_b2"])
    assert (cfg.data.image_size, cfg.data.batch_size) == (260, 64)
    assert compose_train(["model=efficientnet_b2", "data.image_size=300"]).data.image_size == 300


def test_mistyped_key_fails_instead_of_adding_a_key(compose_train):
    with pytest.raises(ConfigCompositionException, match=r"model\.dropuot"):
        compose_train(["model.dropuot=0.3"])


@pytest.mark.slow
def test_cli_help_lists_the_config_groups(tmp_path, data_dir):
    result = run_cli(["--help"], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr
    for line in (
        "convnext_tiny, efficientnet_b0",
        "loss: class_weighted, cross_entropy, cross_entropy_smooth, focal, focal_effective, huber, logit_adjusted, mae",
        "task: age, classify, multitask, ordinal, score",
        "trainer: cpu, ddp",
        "averaging: ema, swa, swa_late",
    ):
        assert line in result.stdout


@pytest.mark.slow
def test_cli_cfg_job_prints_the_composed_config_with_overrides(tmp_path, data_dir):
    result = run_cli(["model=efficientnet_b1", "loss=huber", "--cfg", "job"], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr
    printed = OmegaConf.create(result.stdout)
    assert printed.model.name == "efficientnet_b1"
    assert printed.loss._target_ == "torch.nn.HuberLoss"


@pytest.mark.slow
def test_cli_mistyped_key_exits_with_hydras_message(tmp_path, data_dir):
    result = run_cli([*TINY, "optimizer.lrr=1e-3"], tmp_path, data_dir)
    assert result.returncode != 0
    assert "Could not override 'optimizer.lrr'" in result.stderr
    assert not (Path(tmp_path) / "outputs").exists()  # nothing started


@pytest.mark.parametrize(
    ("overrides", "tasks"),
    [
        (["hydra.launcher.gpus_per_node=0"], 1),  # a CPU partition: sbatch refused --ntasks-per-node=0
        (["hydra.launcher.gpus_per_node=0", "trainer=ddp_sim"], 2),  # two CPU ranks, started by srun
        (["hydra.launcher.gpus_per_node=4", "trainer=ddp"], 4),  # devices=-1: one per GPU
        (["hydra.launcher.gpus_per_node=4", "trainer=ddp", "trainer.devices=[0,1]"], 2),
        (["hydra.launcher.gpus_per_node=2", "trainer=gpu"], 1),  # one process, whatever the GPUs
    ],
)
def test_slurm_tasks_per_node_follow_what_the_job_runs_and_are_never_zero(overrides, tasks):
    cfg = compose_app("train", ["launcher=slurm", *overrides], with_hydra=True)
    assert cfg.hydra.launcher.tasks_per_node == tasks


def test_an_experiment_made_for_a_table_says_so_when_composed_with_the_demo_data(compose_train):
    cfg = compose_train(["experiment=tongue_multitask", "data=synthetic", "debug=fdr"])
    with pytest.raises(ConfigError, match=r"data.source \(SyntheticHands\) takes no key\(s\) columns.*data=table"):
        check_config(cfg)


def test_a_split_key_of_its_earlier_name_is_taken_on_the_command_line_and_named_in_a_config_file(compose_train):
    assert with_current_key_names(["data.split.age_bin_width=24", "seed=1"]) == [
        "data.split.stratum_width=24",
        "seed=1",
    ]
    cfg = compose_train(["debug=fdr", "+data.split.age_bin_width=24"])  # as a user's own data file would set it
    with pytest.raises(ConfigError, match=r"data.split.age_bin_width is now called data.split.stratum_width"):
        check_config(cfg)
