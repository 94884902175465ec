"""A run's processes end when they should, however the run is stopped.

- `exit_with(pid)`: a helper process (a loader worker, a DDP rank started by rank 0) ends
  as soon as the process it serves is gone, even after `kill -9`, instead of lingering.
- `PromptStop`: SIGTERM (a scheduler's stop, `timeout`) and Ctrl-C reach Python
  only between bytecodes; a main thread stuck in a collective or a loader's queue never
  gets there, and the run would sleep on. A watcher thread hears the signal the moment it
  arrives (`signal.set_wakeup_fd`), gives the usual graceful stop `grace_s` seconds, and
  then marks the run record and ends the process itself.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_with(pid: int) -> None:
    """End this process (exit status 0, from a daemon thread) once process `pid` has ended."""
    if pid in _watched:
        return
    _watched.add(pid)
    threading.Thread(target=_exit_when_gone, args=(pid,), daemon=True, name=f"exit-with-{pid}").start()


_watched: set[int] = set()


def _exit_when_gone(pid: int) -> None:
    try:
        process = os.pidfd_open(pid)  # Linux: becomes readable once the process has ended
    except (AttributeError, OSError):  # no pidfd here, or already gone: poll
        while alive(pid):
            time.sleep(1)
    else:
        select.select([process], [], [])
    os._exit(0)


def alive(pid: int) -> bool:
    """Whether process `pid` exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process of that number: alive
        pass
    return True


class PromptStop:
    """SIGINT/SIGTERM end this process within `grace_s` seconds of arriving.

    `install()` (main thread, once per process) starts the watcher. While a run is inside
    `guarding(grace_s, on_stuck)`, a stop signal that the graceful path has not turned into
    an exit after `grace_s` seconds calls `on_stuck(signal name)` (to mark the run record)
    and ends the process with 128 + the signal number; outside a run it ends it at once.
    """

    def __init__(self) -> None:
        self.grace_s = 0.0
        self.on_stuck: Callable[[str], None] | None = None
        self._installed = False

    def __reduce__(self) -> str:
        """Pickled as the name of the module's one instance: a sweep job's task, which cloudpickle
        sends by value to a SLURM job, must install the watcher that `train` then arms. A copy
        would watch unarmed and end a requeued run at once, its record left `running`."""
        return "PROMPT_STOP"

    def install(self) -> None:
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        for number in STOP_SIGNALS:  # a Python-level handler is what feeds the wakeup fd
            if signal.getsignal(number) in (signal.SIG_DFL, None):
                signal.signal(number, signal.default_int_handler if number == signal.SIGINT else _raise_system_exit)
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)
        signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read_end,), daemon=True, name="prompt-stop").start()
        self._installed = True

    @contextmanager
    def guarding(self, grace_s: float, on_stuck: Callable[[str], None]) -> Iterator[None]:
        self.grace_s, self.on_stuck = grace_s, on_stuck
        try:
            yield
        finally:
            self.on_stuck = None

    def _watch(self, read_end: int) -> None:
        while not (received := [number for number in os.read(read_end, 64) if number in STOP_SIGNALS]):
            pass
        on_stuck = self.on_stuck
        time.sleep(self.grace_s if on_stuck else 0)  # the graceful stop ends the process meanwhile, unless stuck
        try:
            if self.on_stuck:
                self.on_stuck(signal.Signals(received[0]).name)
        finally:
            os._exit(128 + received[0])


def _raise_system_exit(number: int, frame: object) -> None:
    raise SystemExit(128 + number)


PROMPT_STOP = PromptStop()  # one per process: signal handling is per process
