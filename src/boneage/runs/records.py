"""The run record: one JSON file per run directory that tools comparing runs read.

It holds what is needed to reproduce, compare and audit a run: the resolved config,
software and hardware, data set and split statistics, the training setup, per-epoch
history, final metrics and the run's status (running, finished, failed, interrupted).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import socket
import subprocess
import threading
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from boneage.runtime.lifetime import alive

RECORD_NAME = "run.json"
RESERVE_NAME = ".space_reserve"  # released when the disk fills, so the record can still be written
RESERVE_BYTES = 2 * 2**20
PACKAGES = (
    "boneage", "torch", "torchvision", "pytorch-lightning", "timm", "albumentations",
    "hydra-core", "omegaconf", "torchmetrics", "numpy", "pandas",
)  # fmt: skip


_UPDATING = threading.RLock()  # one record update at a time in this process (re-entrant: never a deadlock)


class RunRecord:
    """Reads and updates `run.json`; every update rewrites the file atomically.

    A run keeps a small reserve of disk space beside its record (`reserve_space`): when the
    disk is full, the reserve is given up so that the record can still say why the run
    failed, instead of being left at "running".
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / RECORD_NAME
        self.reserve = Path(run_dir) / RESERVE_NAME

    def reserve_space(self) -> None:
        """Set aside RESERVE_BYTES for the last words of a run that fills the disk."""
        self.reserve.parent.mkdir(parents=True, exist_ok=True)
        with open(self.reserve, "wb") as file:
            file.write(b"\0" * RESERVE_BYTES)  # written out, not sparse: the blocks are really taken

    def release_space(self) -> None:
        self.reserve.unlink(missing_ok=True)

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def read_if_readable(self) -> dict[str, Any]:
        """The record, or {} when it is missing or unreadable (a run killed mid-write of another file)."""
        try:
            return self.read()
        except (OSError, json.JSONDecodeError):
            return {}

    def update(self, **sections: Any) -> None:
        # Read, merge, write as one step: the stall watchdog's thread marks the record while the
        # training thread may be adding to it, and neither may undo the other's change.
        with _UPDATING:
            write_atomically(self.path, json.dumps(self.read() | sections, indent=2, default=str))

    def finish(self, **sections: Any) -> None:
        """The run's last update (its status), written even on a full disk: the reserve is given up
        for it. The reserve is gone afterwards either way."""
        try:
            self.update(**sections)
        except OSError as error:
            if error.errno != errno.ENOSPC or not self.reserve.exists():
                raise
            self.release_space()
            self.update(**sections)
        finally:
            self.release_space()


def write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside `path`, then rename it over `path`: readers never see half a
    file, and a failed write (a full disk) leaves the old file and no temporary one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(text)
        os.replace(staging, path)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise


def process_gone(record: dict[str, Any]) -> bool:
    """A record left "running" by a process of this machine that no longer exists (killed, machine
    restarted): the run is interrupted, not running."""
    return record.get("status") == "running" and _process_alive(record) is False


def still_running(record: dict[str, Any]) -> bool:
    """A record saying "running" whose process on this machine is alive."""
    return record.get("status") == "running" and _process_alive(record) is True


def _process_alive(record: dict[str, Any]) -> bool | None:
    """Whether the record's process lives; None where this machine cannot tell (another host)."""
    process = record.get("process") or {}
    if process.get("host") != socket.gethostname() or "pid" not in process:
        return None
    return alive(int(process["pid"]))


def now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="milliseconds")


def environment() -> dict[str, Any]:
    """Software versions and hardware of this machine."""
    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "packages": {name: _version(name) for name in PACKAGES},
        "boneage_git_commit": _git_commit(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else [],
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    """The commit of the boneage checkout in use, with '+dirty' for uncommitted changes."""
    here = Path(__file__).parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode != 0:
        return None
    return commit.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
