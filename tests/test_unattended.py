"""Unattended nights, stuck runs: a stalled loader fails the run, SIGTERM or Ctrl-C stops it within
seconds with its record marked, a collective times out naming the rank (sweeps that survive a night:
test_sweep_recovery.py)."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import cloudpickle
import pytest
import torch

from boneage.train import command as train_command
from tests.helpers import TINY, record_of, run_cli, start_cli


def block(rank: int | None = None, once: Path | None = None) -> str:
    """An augmentation that never returns (tests/blocking.py): a loader stuck like a dead network share."""
    options = [f"rank:{rank}"] if rank is not None else []
    options += [f"once:'{once}'"] if once else []
    return "+data.augment.block={" + ",".join(["_target_:tests.blocking.BlockForever", *options]) + "}"


def test_a_sweep_job_shipped_by_value_uses_the_job_processs_own_objects_not_copies():
    """submitit sends the command's task to a SLURM job with cloudpickle, by value (the module's
    `main` is Hydra's wrapper, not the task). A global it carried as a copy would be a second one
    in the job: a second stop watcher, say, not the one `train` arms, and a requeued job ended at
    once with its record left `running`."""
    task = train_command.main.__wrapped__
    shipped = cloudpickle.loads(cloudpickle.dumps(task))
    used = [name for name in task.__code__.co_names if name in task.__globals__]
    assert used  # what it calls before the job's own module takes over
    assert [name for name in used if shipped.__globals__[name] is not task.__globals__[name]] == []


@pytest.mark.slow
def test_a_stalled_run_fails_within_the_configured_time_with_the_stacks_written(tmp_path, data_dir):
    run_dir = tmp_path / "stalled"
    started = time.monotonic()
    # 18 s: longer than any gap between batches of a healthy run on a loaded machine (two test
    # workers on 2 cores), so it is the blocked loader, not a slow start, that trips it.
    args = [*TINY, block(), "callbacks.stall_watchdog.minutes=0.3", f"hydra.run.dir={run_dir}"]
    result = run_cli(args, tmp_path, data_dir, timeout=180)
    assert result.returncode != 0
    assert time.monotonic() - started < 120  # start-up, then 18 s without a batch, not a night
    record = record_of(run_dir)
    assert record["status"] == "stalled" and re.search(r"no batch finished for 0\.[34] min", record["error"])
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
    process = start_cli(args, tmp_path, data_dir)
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():
        assert process.poll() is None, process.stderr.read()[-2000:]
        time.sleep(0.2)
    trigger.touch()  # from now on the loader never delivers another batch
    time.sleep(3)
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
