"""Lightning callbacks of boneage's own (the rest come from Lightning, set in conf/callbacks)."""

from boneage.callbacks.epoch_seeding import SeedEveryEpoch
from boneage.callbacks.interrupt import CheckpointOnInterrupt
from boneage.callbacks.run_record import RunRecordCallback

__all__ = ["CheckpointOnInterrupt", "RunRecordCallback", "SeedEveryEpoch"]
