"""Lightning callbacks of boneage's own (the rest come from Lightning, set in conf/callbacks)."""

from boneage.callbacks.epoch_seeding import SeedEveryEpoch
from boneage.callbacks.run_record import RunRecordCallback

__all__ = ["RunRecordCallback", "SeedEveryEpoch"]
