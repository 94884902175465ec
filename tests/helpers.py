"""What the tests share beside fixtures: the tiny run settings, composing configs, running boneage's
commands as a user does, and a run directory to serve or explain."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from filelock import FileLock
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from boneage.config.build import build_data_and_module
from boneage.config.cli import register_search_sweeper
from boneage.config.resolvers import register_resolvers
from boneage.tasks import AgeHead

register_resolvers()  # as boneage.train does before composing
register_search_sweeper()

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
AGE_HEADS = {"age": AgeHead()}  # what a label source reads for the bone-age task

# Small enough for seconds on a 2-core CPU: a few dozen demo subjects, a tiny timm model.
TINY = [
    "experiment=demo",
    "model.name=test_resnet",
    # the demo network's (ImageNet's) input statistics, which the suite's learning thresholds are set
    # with; test_resnet's own are 0.5 (tests/test_normalisation.py checks each backbone gets its own)
    "model.pixel_stats={mean:[0.485,0.456,0.406],std:[0.229,0.224,0.225]}",
    "model.image_size=32",
    "model.batch_size=16",
    "data.source.n_subjects=60",
    "data.source.image_size=64",
    "data.split.stratum_width=4",
    "trainer.max_epochs=1",
    "callbacks.early_stopping.patience=100",  # the tests' long runs (20-50 epochs) are stopped by the test, not by it
    "callbacks.progress_bar.refresh_rate=0",
]


def group_options(group: str) -> list[str]:
    """The selectable options of a config group (`base.yaml` only holds keys the others share)."""
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml") if path.stem != "base")


def compose_app(config_name: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The config of another boneage command (evaluate, predict) as its CLI composes it;
    `with_hydra`: with Hydra's own node too (launcher, sweeper)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name, overrides=overrides, return_hydra_config=with_hydra)


def run_cli(
    args: list[str], cwd: Path, data_dir: Path, timeout: int = 600, app: str = "boneage.train", **env: str
) -> subprocess.CompletedProcess:
    """`python -m boneage.train ARGS` (or another boneage command) in a fresh process, as a user runs it
    (with the repository on PYTHONPATH, so that configs can name test-only classes in tests/), `env` added."""
    return subprocess.run(
        [sys.executable, "-m", app, *args],
        cwd=cwd, env=cli_environment(data_dir) | env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


MAKE_TRAIN = "python -m boneage.train experiment=demo"  # what `make train` runs, as run.json records it


def demo_model(shared: Path, data_dir: Path) -> Path:
    """The demo model of `make train` (8 epochs): the newest finished run of it in this checkout
    whose test images are still there (the README's first command: CI runs it before the tests),
    only read; else one trained exactly so into `shared`/demo_run, once for all the test processes
    that share that folder: the first trains it under a lock, the others wait for it (three
    trainings at once on 2 cores outlast the command's timeout)."""
    for record in sorted((ROOT / "outputs" / "demo").glob("*/run.json"), reverse=True):
        if record_of(record.parent)["command"] == MAKE_TRAIN and finished_with_its_images(record.parent):
            return record.parent
    run = shared / "demo_run"
    with FileLock(shared / "demo_run.lock"):
        if not finished_with_its_images(run):
            args = ["experiment=demo", f"hydra.run.dir={run}", "callbacks.progress_bar.refresh_rate=0"]
            # with a thread per core, as `make train` runs: the same model (the tests' thresholds are set on it)
            result = run_cli(args, shared, data_dir, OMP_NUM_THREADS=str(os.cpu_count()))
            assert result.returncode == 0, result.stderr[-2000:]
    return run


def finished_with_its_images(run: Path) -> bool:
    """Whether `run` finished and its test images are still there."""
    if not (run / "run.json").is_file() or record_of(run)["status"] != "finished":
        return False
    splits = pd.read_csv(run / "splits.csv")
    return Path(splits.loc[splits["set"] == "test", "image"].iloc[0]).is_file()


def start_cli(args: list[str], cwd: Path, data_dir: Path, app: str = "boneage.train") -> subprocess.Popen:
    """`python -m boneage.train ARGS` started in the background (stderr kept for a failure's message),
    hearing Ctrl-C as from a terminal even where the test run itself ignores it (a background job)."""
    return subprocess.Popen(
        [sys.executable, "-m", app, *args],
        cwd=cwd, env=cli_environment(data_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip


def processes_started_in(folder: Path) -> list[int]:
    """Processes whose command line names `folder` (a run's loader workers and fork server carry it in sys.path)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder) in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:  # ended meanwhile
            continue
    return found


def wait_until_gone(folder: Path, seconds: float = 15) -> list[int]:
    """Wait for the processes started in `folder` to end; returns those still there after `seconds`."""
    deadline = time.monotonic() + seconds
    while processes_started_in(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    return processes_started_in(folder)


def record_of(run_dir: Path) -> dict:
    """A run's record (run.json) as written."""
    return json.loads((run_dir / "run.json").read_text())


def ran_at_once(first: dict, second: dict) -> bool:
    """Whether two runs' records overlap in time: each started before the other ended."""
    return first["started_at"] < second["ended_at"] and second["started_at"] < first["ended_at"]


def cli_environment(data_dir: Path) -> dict[str, str]:
    return os.environ | {"BONEAGE_DATA_DIR": str(data_dir), "HYDRA_FULL_ERROR": "0", "PYTHONPATH": str(ROOT)}


def write_run(folder: Path, overrides: list[str] = ()) -> Path:
    """A run directory as training leaves it (config, split, checkpoint with the task's classes)
    with an untrained network: for tests of what is done with a run (serving, heat maps,
    ensembles), not of how well it predicts."""
    cfg = compose_app("train", [*TINY, *overrides, f"paths.output_dir={folder}", f"paths.root_dir={folder}"])
    _, module = build_data_and_module(cfg)
    (folder / ".hydra").mkdir(parents=True)
    (folder / "checkpoints").mkdir()
    OmegaConf.save(cfg, folder / ".hydra" / "config.yaml")
    state = {"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}
    torch.save(state, folder / "checkpoints" / "last.ckpt")
    return folder
