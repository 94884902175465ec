"""boneage as an installed package: configs inside it, a console script per command, a user's
own config folder, errors as messages."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
from setuptools import build_meta

from tests.helpers import CONF_DIR, ROOT, TINY, cli_environment, run_cli

COMMANDS = (
    "train",
    "evaluate",
    "predict",
    "report",
    "resume",
    "tune",
    "bench",
    "gpu-check",
    "serve",
    "export",
    "calibrate",
    "pacs",
)
CONFIG_FILES = sorted(str(path.relative_to(CONF_DIR)) for path in CONF_DIR.rglob("*.yaml"))

# The user's own folder: a data config and an experiment, composed with boneage's groups.
USER_DATA = """\
defaults:
  - synthetic
  - _self_
source:
  n_subjects: 60
  image_size: 64
split:
  stratum_width: 4
  val_fraction: 0.25
"""
USER_EXPERIMENT = """\
# @package _global_
defaults:
  - override /data: mydata
  - override /model: tiny
tags: [my-experiment]
model:
  name: test_resnet
  image_size: 32
  batch_size: 8
"""


def packaged_configs(names: list[str]) -> list[str]:
    prefix = "boneage/conf/"
    return sorted(name.split(prefix, 1)[1] for name in names if prefix in name and name.endswith(".yaml"))


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """The checkout's files as a clone holds them (tracked, and new ones not ignored), copied: a
    build in the checkout itself leaves build/ and src/boneage.egg-info there, and a build/ from
    an earlier tree put modules since deleted into the next wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
        capture_output=True, check=True, text=True,
    ).stdout  # fmt: skip
    copy = tmp_path_factory.mktemp("source")
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # a tracked file deleted in the working tree is not there
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, copy / name)
    return copy


@pytest.fixture(scope="module")
def wheel(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(source)]
    subprocess.run([sys.executable, "-m", "pip", *build], check=True, capture_output=True, cwd=out)
    return next(out.glob("boneage-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment outside the repository with the wheel installed; the
    dependencies come from this environment (the folder only: its editable boneage stays out)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site_packages = Path(sysconfig.get_path("purelib", vars={"base": str(venv)}))
    (site_packages / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run([*pip, "install", "--quiet", "--no-deps", str(wheel)], check=True, capture_output=True)
    return venv


@pytest.mark.slow
def test_the_wheel_and_the_sdist_carry_every_config_group(source, wheel, tmp_path):
    assert packaged_configs(zipfile.ZipFile(wheel).namelist()) == CONFIG_FILES
    sdist = tmp_path / build_meta_in(source, build_meta.build_sdist, tmp_path)
    with tarfile.open(sdist) as archive:
        in_sdist = sorted(
            name.split("/conf/", 1)[1] for name in archive.getnames() if "/conf/" in name and name.endswith(".yaml")
        )
    assert in_sdist == CONFIG_FILES


def build_meta_in(source: Path, hook, out: Path) -> str:
    """Run a PEP 517 build hook as pip would: from the source tree's root."""
    here = Path.cwd()
    os.chdir(source)
    try:
        return hook(str(out))
    finally:
        os.chdir(here)


@pytest.mark.slow
def test_installed_wheel_runs_every_command_from_an_empty_folder_with_a_users_configs(installed, tmp_path, data_dir):
    bin_dir = installed / "bin"
    env = cli_environment(data_dir) | {"PYTHONPATH": ""}  # nothing of the checkout
    where = subprocess.run(
        [bin_dir / "python", "-c", "import boneage; print(boneage.__file__)"], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.startswith(str(installed))  # the wheel's copy, not the checkout
    for command in COMMANDS:
        assert (bin_dir / f"boneage-{command}").is_file(), command

    shown = subprocess.run(
        [bin_dir / "boneage-train", "--cfg", "job"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "model:" in shown.stdout and "name: resnet10t" not in shown.stdout  # the default model is resnet50
    assert "name: resnet50" in shown.stdout

    demo = subprocess.run(
        [bin_dir / "boneage-train", *TINY, "debug=fdr"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "MAE" in demo.stdout

    mine = tmp_path / "myconfigs"
    (mine / "data").mkdir(parents=True)
    (mine / "experiment").mkdir()
    (mine / "data" / "mydata.yaml").write_text(USER_DATA)
    (mine / "experiment" / "myexp.yaml").write_text(USER_EXPERIMENT)
    run = subprocess.run(
        [bin_dir / "boneage-train", "--config-dir", "myconfigs", "experiment=myexp", "debug=fdr", "hydra.run.dir=mine"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    record = json.loads((tmp_path / "mine" / "run.json").read_text())
    assert record["tags"] == ["my-experiment"]  # the user's experiment file
    assert record["config"]["model"]["name"] == "test_resnet"
    assert record["config"]["data"]["split"]["val_fraction"] == 0.25  # the user's data file


@pytest.mark.slow
def test_a_boneage_error_prints_as_its_message_and_hydra_full_error_shows_the_trace(tmp_path, data_dir):
    result = run_cli([*TINY, "model.name=not_a_timm_model"], tmp_path, data_dir)
    assert result.returncode == 1
    assert "model.name='not_a_timm_model' is not a timm model" in result.stderr
    assert "Traceback" not in result.stderr

    env = cli_environment(data_dir) | {"HYDRA_FULL_ERROR": "1"}
    traced = subprocess.run(
        [sys.executable, "-m", "boneage.train", *TINY, "model.name=not_a_timm_model", "hydra.run.dir=traced"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert traced.returncode == 1
    assert "Traceback" in traced.stderr and "ConfigError: model.name='not_a_timm_model'" in traced.stderr
