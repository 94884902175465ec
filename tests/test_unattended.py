"""Unattended nights: stuck runs fail or stop within seconds with their record marked, DDP
sweeps finish, collectives time out with a named rank."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, TINY, run_cli


def record_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def block(rank: int | None = None, once: Path | None = None) -> str:
    """An augmentation that never returns (tests/blocking.py): a loader stuck like a dead network share."""
    options = [f"rank:{rank}"] if rank is not None else []
    options += [f"once:'{once}'"] if once else []
    return "+data.augment.block={" + ",".join(["_target_:tests.blocking.BlockForever", *options]) + "}"


@pytest.mark.slow
def test_a_stalled_run_fails_within_the_configured_time_with_the_stacks_written(tmp_path, data_dir):
    run_dir = tmp_path / "stalled"
    started = time.monotonic()
    args = [*TINY, block(), "callbacks.stall_watchdog.minutes=0.1", f"hydra.run.dir={run_dir}"]
    result = run_cli(args, tmp_path, data_dir, timeout=180)
    assert result.returncode != 0
    assert time.monotonic() - started < 90  # start-up, then 6 s without a batch, not a night
    record = record_of(run_dir)
    assert record["status"] == "stalled" and "no batch finished for 0.1 min" in record["error"]
    stacks = {path.name: path.read_text() for path in (run_dir / "stalled_stacks").iterdir()}
    main = next(text for name, text in stacks.items() if "loader-worker" not in name)
    assert "Thread" in main and "dataloader" in main  # the training process waits for its loader...
    workers = [text for name, text in stacks.items() if "loader-worker" in name]
    assert any("blocking.py" in text for text in workers)  # ...whose train workers are stuck here
    assert "stalled" in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stuck_run_ends_within_seconds_of_sigterm_or_ctrl_c_with_its_checkpoint_intact(tmp_path, data_dir, stop):
    run_dir, trigger = tmp_path / "stuck", tmp_path / "block-now"
    args = [*TINY, "trainer.max_epochs=50", block(once=trigger), "stop_grace_s=3", f"hydra.run.dir={run_dir}"]
    env = os.environ | {"BONEAGE_DATA_DIR": str(data_dir), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "boneage.train", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.2)
    trigger.touch()  # from now on the loader never delivers another batch
    time.sleep(5)
    sent = time.monotonic()
    process.send_signal(stop)
    assert process.wait(timeout=30) != 0
    assert time.monotonic() - sent < 15
    record = record_of(run_dir)
    assert record["status"] == "interrupted"
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] >= 0


@pytest.mark.slow
def test_a_rank_that_stops_answering_fails_the_job_naming_the_rank_and_stage(tmp_path, data_dir):
    run_dir = tmp_path / "ddp"
    args = [*TINY, "trainer=ddp_sim", "trainer.strategy.timeout_min=0.1", block(rank=1), f"hydra.run.dir={run_dir}"]
    result = run_cli(args, tmp_path, data_dir, timeout=180)
    assert result.returncode != 0
    record = record_of(run_dir)
    assert record["status"] == "failed"
    assert "rank 0 of 2 waited more than 0.1 min for the other ranks in a collective during fit" in record["error"]


@pytest.mark.slow
def test_a_three_job_ddp_sweep_with_loader_workers_finishes_every_job(tmp_path, data_dir):
    """The sweep that hung in trainer.test: DDP ranks forking loader workers from a threaded process."""
    sweep = tmp_path / "sweep"
    args = [
        "-m", *TINY, "trainer=ddp_sim", "trainer.max_epochs=2", "optimizer.lr=0.005,0.01,0.02",
        f"hydra.sweep.dir={sweep}",
    ]  # fmt: skip
    result = run_cli(args, tmp_path, data_dir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [record_of(sweep / str(job)) for job in range(3)]
    assert [r["status"] for r in records] == ["finished"] * 3
    assert [r["config"]["optimizer"]["lr"] for r in records] == [0.005, 0.01, 0.02]
