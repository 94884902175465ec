"""Errors a user can fix: each message names the file, row or config key, and what to do."""

from hydra.errors import CompactHydraException


class BoneageError(CompactHydraException):
    """Base class: bad input or configuration.

    Hydra prints a CompactHydraException as its message alone and exits non-zero;
    HYDRA_FULL_ERROR=1 still shows the traceback.
    """


class DataError(BoneageError, ValueError):
    """The label table or the images cannot be used as they are."""


class ConfigError(BoneageError, ValueError):
    """A configuration value is invalid; the message names the key."""


class DiskFullError(BoneageError, OSError):
    """No room for the run's files; the message names the path."""


class TrainingError(BoneageError, RuntimeError):
    """Training cannot go on (non-finite loss, out of memory); the message says what to change."""


class ExportError(BoneageError, RuntimeError):
    """An exported model does not reproduce its run; the message says by how much."""
