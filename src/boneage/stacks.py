"""Stacks of a run's processes, written into its folder when it stalls.

The training process dumps its own threads with faulthandler. Loader workers are other
processes: each registers a faulthandler for SIGUSR1 on a file of its own under
`<run>/.worker_stacks/`, so that the stalled run can ask them for their stacks too.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import time
from pathlib import Path

STACKS = "stalled_stacks"
WORKER_STACKS = ".worker_stacks"  # loader workers' stack files, filled only when asked (SIGUSR1)


def write_stacks(run_dir: Path, rank: int) -> tuple[Path, list[int]]:
    """Every thread's stack of this process, and of its loader workers, into run_dir/stalled_stacks;
    returns that folder and the workers' process ids."""
    folder = run_dir / STACKS
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"rank{rank}-pid{os.getpid()}.txt", "w") as file:
        faulthandler.dump_traceback(file, all_threads=True)
    workers = {}
    for stacks in (run_dir / WORKER_STACKS).glob("*.txt"):
        try:
            os.kill(int(stacks.stem), signal.SIGUSR1)
        except (ValueError, ProcessLookupError):
            continue
        workers[int(stacks.stem)] = stacks
    time.sleep(1)  # the workers write their stacks
    for stacks in workers.values():
        if stacks.is_file() and stacks.stat().st_size:
            stacks.replace(folder / f"rank{rank}-loader-worker-pid{stacks.name}")
    remove_unused_worker_files(run_dir)
    return folder, list(workers)


def remove_unused_worker_files(run_dir: Path) -> None:
    """The workers' stack files that were never asked for (empty), and their folder if it empties."""
    folder = run_dir / WORKER_STACKS
    for stacks in folder.glob("*.txt"):
        if not stacks.stat().st_size:
            stacks.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def dump_stacks_on_request(run_dir: str | None) -> None:
    """In a loader worker: write this process's stacks to run_dir/.worker_stacks/<pid>.txt on SIGUSR1."""
    if not run_dir:
        return
    folder = Path(run_dir) / WORKER_STACKS
    folder.mkdir(parents=True, exist_ok=True)
    file = open(folder / f"{os.getpid()}.txt", "w")  # noqa: SIM115 - faulthandler keeps it for the worker's life
    faulthandler.register(signal.SIGUSR1, file=file, all_threads=True)
