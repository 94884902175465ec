"""Stacks of a run's processes, written into its folder when it stalls.

The training process dumps its own threads with faulthandler. Loader workers are other
processes: each registers a faulthandler for SIGUSR1 on a file of its own, in a folder of
its training process's (`worker_stacks_dir`, outside the run folder, which DDP ranks
share), so that a stalled run can ask its workers for their stacks too.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

STACKS = "stalled_stacks"


def worker_stacks_dir(trainer_pid: int) -> Path:
    """Where the loader workers of the training process `trainer_pid` keep their stack files."""
    return Path(tempfile.gettempdir()) / "boneage-worker-stacks" / str(trainer_pid)


def write_stacks(run_dir: Path, rank: int) -> tuple[Path, list[int]]:
    """Every thread's stack of this process, and of its loader workers, into run_dir/stalled_stacks;
    returns that folder and the workers' process ids."""
    folder = run_dir / STACKS
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"rank{rank}-pid{os.getpid()}.txt", "w") as file:
        faulthandler.dump_traceback(file, all_threads=True)
    workers = {}
    for stacks in worker_stacks_dir(os.getpid()).glob("*.txt"):
        try:
            os.kill(int(stacks.stem), signal.SIGUSR1)
        except (ValueError, ProcessLookupError):
            continue
        workers[int(stacks.stem)] = stacks
    time.sleep(1)  # the workers write their stacks
    for stacks in workers.values():
        if stacks.is_file() and stacks.stat().st_size:
            shutil.move(stacks, folder / f"rank{rank}-loader-worker-pid{stacks.name}")
    return folder, list(workers)


def remove_worker_stack_files(trainer_pid: int) -> None:
    """The workers' stack files of a finished stage (empty unless a stall asked for them)."""
    shutil.rmtree(worker_stacks_dir(trainer_pid), ignore_errors=True)


def dump_stacks_on_request(trainer_pid: int) -> None:
    """In a loader worker: write this process's stacks to its file on SIGUSR1."""
    folder = worker_stacks_dir(trainer_pid)
    folder.mkdir(parents=True, exist_ok=True)
    file = open(folder / f"{os.getpid()}.txt", "w")  # noqa: SIM115 - faulthandler keeps it for the worker's life
    faulthandler.register(signal.SIGUSR1, file=file, all_threads=True)
