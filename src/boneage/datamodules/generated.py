"""Generated data sets written once: into a staging folder, then renamed into place."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def generate_once(folder: Path, generate: Callable[[Path], None], name: str) -> None:
    """`generate` (which writes `labels.csv` and images into the folder it is given) run once for
    `folder`: several processes may start it at once and each sees a complete data set."""
    if (folder / "labels.csv").is_file():
        return
    log.info("Generating %s into %s (once)", name, folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        generate(staging)
        os.rename(staging, folder)
    except OSError:
        if not (folder / "labels.csv").is_file():
            raise
        # another process finished first; its copy is identical
    finally:
        shutil.rmtree(staging, ignore_errors=True)
