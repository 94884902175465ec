"""Lightning callbacks of boneage's own (the rest come from Lightning, set in conf/callbacks)."""

from boneage.callbacks.averaging import EMA, SWA
from boneage.callbacks.epoch_seeding import SeedEveryEpoch
from boneage.callbacks.freeze import FreezeBackbone
from boneage.callbacks.interrupt import CheckpointOnInterrupt
from boneage.callbacks.run_record import RunRecordCallback
from boneage.callbacks.stall import StallWatchdog
from boneage.callbacks.tensorboard_images import TensorBoardImages
from boneage.callbacks.trial_pruning import TrialPruning

__all__ = [
    "EMA",
    "SWA",
    "CheckpointOnInterrupt",
    "FreezeBackbone",
    "RunRecordCallback",
    "SeedEveryEpoch",
    "StallWatchdog",
    "TensorBoardImages",
    "TrialPruning",
]
