"""Where a study lives: a journal file (one machine, or a cluster's shared file system) or a
database URL (several searches writing at once). Every process of a search opens the same one."""

from __future__ import annotations

from optuna.storages import BaseStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage

from boneage.config.resolvers import study_storage


def open_storage(spec: str) -> BaseStorage:
    """The storage `spec` names: `sqlite:///...`, `postgresql://...` (Optuna's RDB storage), or the
    path of a journal file, which many processes append to under a file lock."""
    if "://" in spec:
        return RDBStorage(spec)
    return JournalStorage(JournalFileBackend(study_storage(spec)))
