"""Faults lose nothing: bad configs stop before training, checkpoints survive a full disk,
NaN and OOM explain themselves, interrupted and killed runs resume exactly."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections import namedtuple
from pathlib import Path

import pytest
import torch

from boneage.config.errors import ConfigError, DiskFullError, TrainingError
from boneage.config.resolvers import unique_dir
from boneage.modules.model import ImageModel
from boneage.report import build_table
from boneage.runs.records import RunRecord
from boneage.train import train
from tests.helpers import TINY, record_of, run_cli, start_cli, wait_until_gone

DETERMINISTIC = [*TINY, "trainer.deterministic=true", "trainer.max_epochs=3"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optimizer.lr=-0.001", "optimizer.lr must be a positive number, not -0.001"),
        ("model.image_size=0", "data.image_size must be a positive integer, not 0"),
        ("model.batch_size=0", "data.batch_size must be a positive integer, not 0"),
        ("model.dropout=1.5", "model.dropout must be in [0, 1), not 1.5"),
        ("data.split.test_fraction=1.2", "data.split.test_fraction must be in [0, 1)"),
        ("data.split.val_fraction=0.9", "data.split.test_fraction + data.split.val_fraction must leave"),
        ("model.name=resnet5O", "model.name='resnet5O' is not a timm model. Did you mean: resnet50"),
        ("scheduler=none +scheduler.scheduler.warmup_epochs=1", "scheduler.scheduler sets ['warmup_epochs'] but names"),
        (
            "+optimizer.fused=true trainer.precision=bf16-mixed",
            "optimizer.fused=true cannot train with trainer.gradient_clip_val=1.0 at trainer.precision=bf16-mixed",
        ),
    ],
)
def test_bad_config_values_stop_before_training_and_name_the_key(compose_train, tmp_path, override, message):
    with pytest.raises(ConfigError) as caught:
        train(compose_train([*TINY, *override.split()]))
    assert message in str(caught.value)
    record = record_of(tmp_path / "run")
    assert record["status"] == "failed" and "history" not in record
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_checkpoint_of_another_model_or_corrupt_is_refused(compose_train, tmp_path):
    train(compose_train([*TINY], output_dir=tmp_path / "first"))
    other_model = tmp_path / "first" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"holds a test_resnet model .* model.name=test_efficientnet"):
        train(compose_train([*TINY, "model.name=test_efficientnet", f"ckpt_path={other_model}"], tmp_path / "b"))
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(other_model.read_bytes()[:1000])
    with pytest.raises(ConfigError, match="is not a readable boneage checkpoint"):
        train(compose_train([*TINY, f"ckpt_path={corrupt}"], tmp_path / "c"))


@pytest.mark.slow
def test_non_finite_loss_stops_at_once_with_step_lr_and_hint(compose_train, tmp_path):
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at step \d+ \(epoch 0, lr [\d.e+]+\)\. Lower"):
        train(compose_train([*TINY, "optimizer.lr=1e12", "trainer.max_epochs=5"]))
    record = record_of(tmp_path / "run")
    assert record["status"] == "failed" and record["error"].startswith("TrainingError")


@pytest.mark.slow
def test_out_of_memory_suggests_a_smaller_batch_with_the_same_effective_batch(compose_train, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(ImageModel, "training_step", out_of_memory)
    with pytest.raises(TrainingError, match=r"data.batch_size=8 trainer.accumulate_grad_batches=2"):
        train(compose_train(TINY))


@pytest.mark.slow
def test_full_disk_during_a_save_keeps_earlier_checkpoints_and_records_the_path(compose_train, tmp_path, monkeypatch):
    saves, real_save = [], torch.save

    def save_until_the_disk_fills(obj, destination, *args, **kwargs):
        saves.append(destination)
        if len(saves) > 2:  # epoch 0 writes best and last; the disk fills after that
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, destination, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_until_the_disk_fills)
    with pytest.raises(DiskFullError, match=r"disk full: no space left on the device while saving .*\.ckpt"):
        train(compose_train([*TINY, "trainer.max_epochs=3"]))
    monkeypatch.setattr(torch, "save", real_save)
    checkpoints = tmp_path / "run" / "checkpoints"
    assert not list(checkpoints.glob("*.tmp"))
    for name in ("epoch000-*.ckpt", "last.ckpt"):
        (path,) = checkpoints.glob(name)
        assert torch.load(path, weights_only=True)["epoch"] == 0
    record = record_of(tmp_path / "run")
    assert record["status"] == "failed" and "disk full" in record["error"] and str(checkpoints) in record["error"]


@pytest.fixture
def small_disk(tmp_path):
    """A real 100 MB file system (tmpfs) of the test's own; skipped where mounting is not allowed."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", str(mount_point)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> None:
    """Write a file until the disk is full."""
    with open(disk / "filler", "wb") as file:
        try:
            while True:
                file.write(b"\0" * 2**20)
                file.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC


@pytest.mark.slow
def test_a_really_full_disk_ends_the_run_as_failed_with_its_record_and_checkpoints_intact(
    small_disk, tmp_path, data_dir
):
    run_dir = small_disk / "run"
    process = start_cli([*TINY, "trainer.max_epochs=20", f"hydra.run.dir={run_dir}"], tmp_path, data_dir)
    wait_for_epochs(run_dir, 1, process)
    fill(small_disk)  # the disk fills during the second epoch
    assert process.wait(timeout=120) != 0
    last_words = process.stderr.read()
    record = record_of(run_dir)
    assert record["status"] == "failed" and record["error"].startswith("DiskFullError: disk full: ")
    assert "disk full: no space left on the device" in "".join(last_words.strip().splitlines()[-3:])
    checkpoints = run_dir / "checkpoints"
    assert torch.load(checkpoints / "last.ckpt", weights_only=True)["epoch"] >= 0
    assert not [p.name for p in run_dir.rglob("*") if ".tmp" in p.name or p.name == ".space_reserve"]


def test_a_record_left_running_by_a_dead_process_reads_as_interrupted(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    run_dir = tmp_path / "run"
    RunRecord(run_dir).update(status="running", process={"pid": int(gone.stdout), "host": socket.gethostname()})
    assert build_table([tmp_path])["status"].iloc[0] == "interrupted"
    RunRecord(run_dir).update(process={"pid": os.getpid(), "host": socket.gethostname()})  # this one lives
    assert build_table([tmp_path])["status"].iloc[0] == "running"


def test_too_little_free_space_stops_before_training(compose_train, tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("shutil.disk_usage", lambda path: usage(10**9, 10**9 - 2**20, 2**20))
    with pytest.raises(DiskFullError, match=r"disk full: .* has 1 MiB free; this run needs about \d+ MiB"):
        train(compose_train(TINY))
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_a_run_directory_is_never_reused(compose_train, tmp_path):
    assert Path(unique_dir(str(tmp_path / "same"))).name == "same"
    assert Path(unique_dir(str(tmp_path / "same"))).name == "same_1"

    train(compose_train(TINY))
    before = (tmp_path / "run" / "run.json").read_text()
    with pytest.raises(ConfigError, match=r"already holds a run .* python -m boneage\.resume"):
        train(compose_train(TINY))
    assert (tmp_path / "run" / "run.json").read_text() == before


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_split_and_metrics(compose_train, tmp_path):
    first = train(compose_train(DETERMINISTIC, output_dir=tmp_path / "a"))
    second = train(compose_train(DETERMINISTIC, output_dir=tmp_path / "b"))
    assert first.metrics == second.metrics
    assert (tmp_path / "a" / "splits.csv").read_text() == (tmp_path / "b" / "splits.csv").read_text()


def wait_for_epochs(run_dir: Path, epochs: int, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until `epochs` epochs are recorded and last.ckpt exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            recorded = len(record_of(run_dir).get("history", []))
            if recorded >= epochs and (run_dir / "checkpoints" / "last.ckpt").is_file():
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.05)
    raise AssertionError("training did not get that far in time")


@pytest.mark.slow
def test_ctrl_c_records_interrupted_and_saves_a_checkpoint(tmp_path, data_dir):
    run_dir = tmp_path / "run"
    process = start_cli([*TINY, "trainer.max_epochs=50", f"hydra.run.dir={run_dir}"], tmp_path, data_dir)
    wait_for_epochs(run_dir, 1, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) != 0
    assert record_of(run_dir)["status"] == "interrupted"
    assert (run_dir / "checkpoints" / "interrupted.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


RESUMED = [*DETERMINISTIC, "trainer.max_epochs=4", "data.source.n_subjects=100"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> dict:
    """The record of the run the killed-and-resumed runs must end like."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    whole = run_cli([*RESUMED, f"hydra.run.dir={run_dir}"], run_dir.parent, data_dir)
    assert whole.returncode == 0, whole.stderr[-2000:]
    return record_of(run_dir)


A_SCRIPT_WITH_A_LOADER = """
import json, signal, time
import psutil
from torch.utils.data import DataLoader
from boneage.datamodules.workers import worker_context, worker_setup
if __name__ == "__main__":
    loader = DataLoader(list(range(64)), batch_size=8, num_workers=2, persistent_workers=True,
                        multiprocessing_context=worker_context("forkserver"), worker_init_fn=worker_setup())
    print(sum(len(batch) for batch in loader))
{then}
"""

SIGNALS_EVERY_HELPER = """
helpers = psutil.Process().children(recursive=True)  # the resource tracker, the fork server, the workers
for process in helpers:
    for scheduler_signal in (signal.SIGTERM, signal.SIGUSR2):
        process.send_signal(scheduler_signal)
time.sleep(1)
print(json.dumps({"helpers": len(helpers), "dead": [p.name() for p in helpers if p.status() == psutil.STATUS_ZOMBIE]}))
print(sum(len(batch) for batch in loader))  # the next epoch, from the same workers
"""


def run_a_script_with_a_loader(folder: Path, then: str = "") -> list[str]:
    """A fresh process that builds a loader as boneage starts one (workers from the fork server), reads an
    epoch, then runs `then`: its printed lines. Fresh, so that no process an earlier test left behind in
    this one (a resource tracker started without boneage) is counted as one of the loader's."""
    script = folder / "script.py"
    script.write_text(A_SCRIPT_WITH_A_LOADER.format(then=textwrap.indent(then, "    ")))
    finished = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr[-2000:]
    return finished.stdout.splitlines()


@pytest.mark.slow
def test_loader_workers_and_their_fork_server_outlive_the_signals_a_scheduler_sends_the_whole_job(tmp_path):
    """SLURM signals every process of a job: SIGTERM to stop it, SIGUSR2 (submitit's --signal) before
    its time limit. Only the training process acts on them; a worker that died of one turned a
    requeue into "DataLoader worker exited unexpectedly"."""
    first_epoch, signalled, next_epoch = run_a_script_with_a_loader(tmp_path, then=SIGNALS_EVERY_HELPER)
    report = json.loads(signalled)
    assert report["helpers"] >= 3 and report["dead"] == []
    assert first_epoch == next_epoch == "64"


@pytest.mark.slow
def test_a_script_still_holding_a_loader_with_workers_exits(tmp_path):
    """Workers ignore SIGTERM, which is how multiprocessing ends them at exit: the script waited forever."""
    assert run_a_script_with_a_loader(tmp_path) == ["64"]  # within the minute, not hung at exit


@pytest.mark.slow
@pytest.mark.parametrize("kill_signal", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_run_resumes_in_place_and_ends_as_if_never_stopped(tmp_path, data_dir, uninterrupted, kill_signal):
    """With the default loader (workers, persistent, prefetching); SIGTERM's run resumes as `last`."""
    overrides = RESUMED

    cwd = tmp_path / "work"
    cwd.mkdir()
    run_dir = cwd / "outputs" / "demo" / "killed"
    process = start_cli([*overrides, f"hydra.run.dir={run_dir}"], cwd, data_dir)
    wait_for_epochs(run_dir, 2, process)
    process.send_signal(kill_signal)
    assert process.wait(timeout=60) != 0
    assert record_of(run_dir)["status"] == ("running" if kill_signal == signal.SIGKILL else "interrupted")
    assert not wait_until_gone(cwd), "loader workers outlived the killed run"

    target = "last" if kill_signal == signal.SIGTERM else str(run_dir)
    resumed = run_cli([target], cwd, data_dir, app="boneage.resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record, reference = record_of(run_dir), uninterrupted
    assert record["status"] == "finished" and record["resumed_from"].endswith("last.ckpt")
    assert [row["epoch"] for row in record["history"]] == [0, 1, 2, 3]
    assert record["metrics"] == reference["metrics"]
    assert [p.name for p in (cwd / "outputs" / "demo").iterdir()] == ["killed"]  # it wrote only into its own folder
