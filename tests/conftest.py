"""Shared fixtures: real configs composed with overrides, and one demo-data cache per session."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from tests.helpers import CONF_DIR, demo_model

# Before any run has measured them, a file is reckoned to take this long per test marked slow.
SLOW_TEST_SECONDS = 20.0
_seconds_per_file: Counter[str] = Counter()


def pytest_configure(config: pytest.Config) -> None:
    """Each of the N test processes (pytest-xdist's -n) gets cores / N CPU threads, for itself and
    the processes its tests start, as the parallel launcher gives each of its jobs. Left at one
    thread per core, two tests' processes oversubscribe the cores and their OpenMP threads spin
    while they wait (three concurrent demo runs: 56 CPU-s, 31 with one thread each). Set in the
    controller too: its workers inherit its environment. A count set by the caller is kept."""
    workers = getattr(config.option, "numprocesses", None) or 1  # 0 or absent: this process alone
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest files first: the test processes take whole files in collection order, and a
    long file collected last leaves one process busy while the others idle. A file's length is
    what it took in the last run of the same selection (pytest's cache), or, before one, its
    slow tests' reckoned seconds (`slow(seconds=...)` where one is known to take far longer);
    each file's tests keep their order."""
    measured = config.cache.get(_cache_key(config), {}) if config.cache else {}
    reckoned: Counter[str] = Counter()
    for item in items:
        if marker := item.get_closest_marker("slow"):
            reckoned[item.path.name] += marker.kwargs.get("seconds", SLOW_TEST_SECONDS)
    items.sort(key=lambda item: -measured.get(item.path.name, reckoned[item.path.name]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each file's seconds (setup, call and teardown of its tests), as the reports arrive."""
    _seconds_per_file[Path(report.fspath).name] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The files' measured seconds into pytest's cache, by the process that saw every report."""
    config = session.config
    if hasattr(config, "workerinput") or not config.cache or not _seconds_per_file:
        return
    measured = config.cache.get(_cache_key(config), {})
    config.cache.set(_cache_key(config), measured | {name: round(s, 1) for name, s in _seconds_per_file.items()})


def _cache_key(config: pytest.Config) -> str:
    """One measurement per selection: a file's fast tests alone take less than all of them."""
    return f"boneage/seconds_per_file/{config.option.markexpr or 'all'}"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo-data cache for the whole session (generated data sets are reused)."""
    path = tmp_path_factory.mktemp("data")
    os.environ["BONEAGE_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def make_train_run(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """The demo model of `make train` (tests/helpers.py: demo_model), trained at most once for the
    session's test processes: in the parent of their temporary folders (pytest-xdist's workers
    share it), or in this process's own."""
    base = tmp_path_factory.getbasetemp()
    return demo_model(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base, data_dir)


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
