"""The run record: one JSON file per run directory that tools comparing runs read.

It holds what is needed to reproduce, compare and audit a run: the resolved config,
software and hardware, data set and split statistics, the training setup, per-epoch
history, final metrics and the run's status (running, finished, failed, interrupted).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

RECORD_NAME = "run.json"
PACKAGES = (
    "boneage", "torch", "torchvision", "pytorch-lightning", "timm", "albumentations",
    "hydra-core", "omegaconf", "torchmetrics", "numpy", "pandas",
)  # fmt: skip


class RunRecord:
    """Reads and updates `run.json`; every update rewrites the file atomically."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / RECORD_NAME

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def read_if_readable(self) -> dict[str, Any]:
        """The record, or {} when it is missing or unreadable (a run killed mid-write of another file)."""
        try:
            return self.read()
        except (OSError, json.JSONDecodeError):
            return {}

    def update(self, **sections: Any) -> None:
        write_atomically(self.path, json.dumps(self.read() | sections, indent=2, default=str))


def write_atomically(path: Path, text: str) -> None:
    """Write a temporary file beside `path`, then rename it over `path`: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    staging.write_text(text)
    os.replace(staging, path)


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
