"""Checkpoints written to a temporary file and renamed: a failed save never costs the old one."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from boneage.config.errors import DiskFullError


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to `<name>.tmp` and renames over `<name>` only once the file is complete.

    Lightning writes `last.ckpt` in place and deletes the previous best only after the new
    one is saved: with an atomic write, a full disk leaves both the previous best and the
    previous last checkpoint loadable.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        staging = path.with_name(path.name + ".tmp")
        try:
            super().save_checkpoint(checkpoint, staging, storage_options)
            os.replace(staging, path)
        except OSError as error:
            staging.unlink(missing_ok=True)
            if error.errno == errno.ENOSPC:
                raise DiskFullError(
                    f"disk full: no space left on the device while saving {path}; the checkpoints "
                    "saved before are intact. Free space and resume: python -m boneage.resume <run dir>."
                ) from error
            raise
