"""How loader worker processes start: from a fork server, not by forking the training process.

A DataLoader forks its workers from the training process by default. Once that process
runs threads (the gloo/NCCL threads of DDP, PyTorch's intra-op pool, TensorBoard's
writer), a fork can copy a lock that another thread holds, and the child waits on it
forever: the DDP sweep that hung in `trainer.test`. Inside a joblib (loky) worker, the
parallel launcher's, a forked DataLoader worker does not start at all. A fork server is a
single-threaded process started once, from which workers are forked: safe in both cases,
and, with the modules a worker needs preloaded there, nearly as quick as a plain fork.

A worker forked from the server is the server's child, not the training process's, so
PyTorch's check that a worker's parent is still alive cannot see the training process die,
and the server stays up while its workers do: after a `kill -9` both would linger, holding
memory. `worker_setup` ends each worker as soon as the training process is gone.

A scheduler stops a job by sending SIGTERM to every process in it, loader workers included, and
warns it of its time limit with SIGUSR2 (submitit's `--signal`) the same way: a worker that died
of either first would turn the training process's orderly stop (record `interrupted`, keep a
checkpoint, be requeued) into "DataLoader worker exited unexpectedly". Workers and their fork
server ignore both; the training process stops them, or they end with it.
"""

from __future__ import annotations

import atexit
import functools
import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing import forkserver, resource_tracker
from multiprocessing.context import BaseContext

from omegaconf import DictConfig

from boneage.config.errors import ConfigError
from boneage.runtime.lifetime import exit_with
from boneage.runtime.stacks import dump_stacks_on_request, remove_worker_stack_files

# torch, albumentations, numpy imported once, not per worker; and the server's own stance on signals
PRELOADED = ["boneage.datamodules.fork_server"]


def worker_context(method: str | None) -> BaseContext | None:
    """The multiprocessing context loader workers start from (None: the platform default)."""
    start_resource_tracker_deaf_to_time_limits()
    atexit.unregister(kill_workers_left_at_exit)  # registered once, and after multiprocessing's own
    atexit.register(kill_workers_left_at_exit)
    if method is None:
        return None
    if method not in multiprocessing.get_all_start_methods():
        raise ConfigError(
            f"data.worker_start={method!r} is not available here; choose one of "
            f"{multiprocessing.get_all_start_methods()} (forkserver where it exists)."
        )
    if method == "forkserver":
        start_fork_server()
    return multiprocessing.get_context(method)


def kill_workers_left_at_exit() -> None:
    """At exit multiprocessing ends the daemonic processes still running (loader workers) with
    SIGTERM, which workers ignore, and then waits for them: a script still holding a loader hung
    at exit. Workers keep nothing worth an orderly end, so they are killed first."""
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


def start_fork_server_for(data: DictConfig) -> None:
    """Set up now what the loaders of this data config will start their workers from (the fork
    server, by default), as the data module will: the server's imports (two seconds) then overlap
    with the training process's own start-up rather than delay the first batch. Loaders without
    workers start nothing."""
    if data.get("num_workers"):
        worker_context(data.get("worker_start"))


def start_fork_server() -> None:
    """Start the workers' fork server (if not started), its modules preloaded."""
    start_resource_tracker_deaf_to_time_limits()  # the server starts one otherwise, listening
    forkserver.set_forkserver_preload(PRELOADED)
    forkserver.ensure_running()


def start_resource_tracker_deaf_to_time_limits() -> None:
    """Start multiprocessing's resource tracker (it tracks the loader queues' semaphores) with
    SIGUSR2 blocked. It ignores SIGTERM by itself but died of a time limit's SIGUSR2; the one
    started in its place then printed a KeyError for every semaphore it had never seen."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
    try:
        resource_tracker.ensure_running()  # a started tracker keeps the mask it was started with
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def worker_setup() -> Callable[[int], None]:
    """A loader `worker_init_fn`: the worker ignores the scheduler's signals, ends once this (the
    training) process is gone, and writes its stacks when a stalled run asks (boneage.runtime.stacks).
    This process removes the workers' stack files when it exits: loaders outside a trainer's stages
    (the inference timing, evaluate, predict) left a folder in the temporary directory per run."""
    atexit.unregister(remove_worker_stack_files)  # registered once per process
    atexit.register(remove_worker_stack_files, os.getpid())
    return functools.partial(_set_up_worker, os.getpid())


def ignore_scheduler_signals() -> None:
    """SIGTERM (stop) and SIGUSR2 (time limit near) are for the training process, not its workers."""
    for scheduler_signal in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(scheduler_signal, signal.SIG_IGN)


def _set_up_worker(trainer_pid: int, worker_id: int) -> None:
    ignore_scheduler_signals()
    exit_with(trainer_pid)
    dump_stacks_on_request(trainer_pid)
