"""Shared fixtures: real configs composed with overrides, and one demo-data cache per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from tests.helpers import CONF_DIR

# The longest files first (measured with --durations): the test processes take whole files in
# collection order, and the SLURM and unattended files, collected last by name, made the suite end
# with one process busy and the others idle.
LONGEST_FIRST = ("test_sweep_recovery.py", "test_slurm.py", "test_tasks.py", "test_sweeps.py", "test_bench.py",
                 "test_faults.py", "test_unattended.py", "test_configs.py", "test_techniques.py", "test_training.py",
                 "test_evaluation.py", "test_multinode.py", "test_package.py", "test_schedulers.py",
                 "test_serve_hostile.py", "test_serve.py", "test_hospital_data.py")  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    """Each of the N test processes (pytest-xdist's -n) gets cores / N CPU threads, for itself and
    the processes its tests start, as the parallel launcher gives each of its jobs. Left at one
    thread per core, two tests' processes oversubscribe the cores and their OpenMP threads spin
    while they wait (three concurrent demo runs: 56 CPU-s, 31 with one thread each). Set in the
    controller too: its workers inherit its environment. A count set by the caller is kept."""
    workers = getattr(config.option, "numprocesses", None) or 1  # 0 or absent: this process alone
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files in LONGEST_FIRST order, then the rest; each file's tests keep their order."""
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo-data cache for the whole session (generated data sets are reused)."""
    path = tmp_path_factory.mktemp("data")
    os.environ["BONEAGE_DATA_DIR"] = str(path)
    return path


@pytest.fixture
def compose_train(data_dir: Path, tmp_path: Path):
    """compose_train(overrides) -> the job config as `python -m boneage.train` would see it."""

    def compose_with(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
        run_dir = output_dir or tmp_path / "run"
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(run_dir)
            cfg.hydra.runtime.cwd = str(tmp_path)
            cfg.hydra.job.num = 0
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # as Hydra hands the job its config; HydraConfig.get() holds the rest
        run_dir.mkdir(parents=True, exist_ok=True)
        return cfg

    yield compose_with
    GlobalHydra.instance().clear()
